"""Array-backed inputs and the checks shared by the constructors of user data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fral.pool import _item_input

__all__ = ["UInt8Images"]


class UInt8Images(Dataset):
    """uint8 images kept as they are stored, converted to float32 in ``[0, 1]`` per batch.

    A quarter of the memory of float32 inputs, and with a memory-mapped array
    (``np.load(path, mmap_mode="r")``) none at all until a batch is read: a pool of a million
    32x32 colour images costs its 3 GB on disk, not in memory. Each item and each batch is
    ``array[rows] / 255`` as float32 (exactly ``torch.from_numpy(array).float() / 255``).

    Parameters
    ----------
    array : numpy.ndarray or torch.Tensor
        uint8 of shape ``(N, ...)``, e.g. ``(N, C, H, W)``; a ``numpy.memmap`` stays on disk.

    Examples
    --------
    >>> images = UInt8Images(np.full((4, 3, 2, 2), 255, dtype=np.uint8))
    >>> images.get_batch(torch.tensor([0, 3])).shape, float(images[1].max())
    (torch.Size([2, 3, 2, 2]), 1.0)
    """

    def __init__(self, array: np.ndarray | torch.Tensor) -> None:
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        if not isinstance(array, np.ndarray):
            raise TypeError(f"array must be a numpy array or tensor, got {type(array).__name__}")
        if array.dtype != np.uint8 or array.ndim < 2:
            raise TypeError(
                f"array must be uint8 of shape (N, ...), got {array.dtype} of shape {array.shape}"
            )
        self.array = array
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.get_batch(torch.tensor([index]))[0]

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """float32 inputs in ``[0, 1]`` of shape ``(b, ...)`` for ``indices`` (int64, ``(b,)``)."""
        rows = np.asarray(indices, dtype=np.int64)
        # Sorted reads touch a memory map's pages once each, in order; then restore the order.
        order = np.argsort(rows, kind="stable")
        block = np.empty((rows.size, *self.array.shape[1:]), dtype=np.uint8)
        block[order] = self.array[rows[order]]
        return torch.from_numpy(block).float().div_(255)

    def fingerprint(self) -> str:
        """SHA-256 of the array's dtype, shape and bytes (read in chunks).

        Kept after the first call for a read-only array (e.g. a memory map opened with
        ``mmap_mode="r"``), which cannot change; recomputed each call otherwise.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        hasher = hashlib.sha256(f"uint8{tuple(self.array.shape)}".encode())
        row_bytes = max(1, int(np.prod(self.array.shape[1:])))
        step = max(1, (1 << 24) // row_bytes)
        for start in range(0, len(self), step):
            hasher.update(np.ascontiguousarray(self.array[start : start + step]))
        digest = hasher.hexdigest()
        if not self.array.flags.writeable:
            self._fingerprint = digest
        return digest


def as_int_vector(values: Any, name: str, length: int | None = None) -> torch.Tensor:
    """A 1-D int64 CPU tensor of non-negative ids from numpy, torch or a sequence of ints."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().cpu()
    else:
        array = np.asarray(values)
        if array.dtype == object:
            raise TypeError(f"{name} must hold integers, got Python objects")
        if array.size == 0:
            array = array.astype(np.int64)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        if tensor.is_floating_point() and bool((tensor == tensor.round()).all()):
            raise TypeError(
                f"{name} must hold integers, got {tensor.dtype} (whole numbers: convert them "
                "with .astype(np.int64) / .long())"
            )
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D of shape (N,), got shape {tuple(tensor.shape)}")
    if length is not None and tensor.numel() != length:
        raise ValueError(f"{name} has {tensor.numel()} entries, x has {length} samples")
    tensor = tensor.to(torch.int64)
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be non-negative ids, got {int(tensor.min())}")
    return tensor


def input_shape(inputs: torch.Tensor | Dataset) -> tuple[int, ...] | None:
    """The shape of one input: ``x.shape[1:]``, or the first item's; ``None`` when empty."""
    if isinstance(inputs, torch.Tensor):
        return tuple(inputs.shape[1:])
    if len(inputs) == 0:
        return None
    get_batch = getattr(inputs, "get_batch", None)
    if callable(get_batch):
        return tuple(get_batch(torch.tensor([0])).shape[1:])
    return tuple(_item_input(inputs[0]).shape)


def read_targets(
    dataset: Dataset, *, batch_size: int = 256, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels (and groups, for ``(x, y, group)`` items) of every item, read once, in order.

    Returns
    -------
    (labels, groups) : tuple
        int64 tensors of shape ``(N,)``; ``groups`` is ``None`` for ``(x, y)`` items.
    """
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_targets_of,
    )
    labels: list[torch.Tensor] = []
    groups: list[torch.Tensor] = []
    arity = None
    for batch_labels, batch_groups in loader:
        kind = batch_groups is not None
        if arity is not None and kind != arity:
            raise ValueError("the dataset's items mix (x, y) and (x, y, group) forms")
        arity = kind
        labels.append(batch_labels)
        if batch_groups is not None:
            groups.append(batch_groups)
    if not labels:
        raise ValueError("the dataset is empty")
    return torch.cat(labels), (torch.cat(groups) if arity else None)


def _targets_of(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    sizes = {len(item) if isinstance(item, (tuple, list)) else 1 for item in items}
    if sizes - {2, 3} or len(sizes) != 1:
        raise ValueError(
            "the dataset's items must be (x, y) or (x, y, group) tuples to read labels from, "
            f"got items of length {sorted(sizes)}; or pass labels= (and groups=) alongside"
        )
    labels = torch.tensor([int(item[1]) for item in items], dtype=torch.int64)
    groups = (
        torch.tensor([int(item[2]) for item in items], dtype=torch.int64) if sizes == {3} else None
    )
    return labels, groups
