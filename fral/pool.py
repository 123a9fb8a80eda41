"""Pools of samples with sensitive groups, and the labelled/unlabelled split.

A :class:`Pool` holds inputs (a tensor or a ``torch.utils.data.Dataset``), one int64 group id
per sample and, optionally, labels. The unlabelled candidates of an active-learning round, a
labelled set and a validation set are all pools; strategies take them as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["Pool", "Rows", "as_index_tensor", "initial_split"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _as_int64(values: ArrayLike, name: str, length: int | None = None) -> torch.Tensor:
    """A 1-D int64 CPU tensor from ``values``; a clear error for floats, bools or wrong shape."""
    tensor = torch.as_tensor(values)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}")
    if length is not None and tensor.numel() != length:
        raise ValueError(f"{name} has {tensor.numel()} entries but the pool has {length} samples")
    return tensor.to(device="cpu", dtype=torch.int64)


def as_index_tensor(indices: ArrayLike, size: int, name: str = "indices") -> torch.Tensor:
    """Validate ``indices`` into a collection of ``size`` items: 1-D, integer, in range.

    Returns
    -------
    torch.Tensor
        int64 CPU tensor of shape ``(K,)``.
    """
    tensor = _as_int64(indices, name)
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= size):
        raise IndexError(
            f"{name} must lie in [0, {size}), got range [{int(tensor.min())}, {int(tensor.max())}]"
        )
    return tensor


def _item_input(item: Any) -> torch.Tensor:
    """The input of a dataset item: the item itself, or the first entry of a tuple/list/dict."""
    if isinstance(item, (tuple, list)):
        item = item[0]
    elif isinstance(item, dict):
        item = next(iter(item.values()))
    return torch.as_tensor(item)


def _stack_inputs(items: Sequence[Any]) -> torch.Tensor:
    return torch.stack([_item_input(item) for item in items])


class Rows(Dataset):
    """The items of ``dataset`` at ``rows``, in that order: a subset that stays lazy.

    Unlike :class:`torch.utils.data.Subset`, a ``Rows`` of a ``Rows`` (or of a ``Subset``)
    keeps one index tensor into the innermost dataset, so :meth:`Pool.subset` on a pool of a
    million samples costs one tensor gather, and a dataset with a ``get_batch(rows)`` method
    (e.g. :class:`fral.datasets.UInt8Images`) is still read a batch at a time.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A sized dataset.
    rows : torch.Tensor
        int64 indices of shape ``(K,)`` into ``dataset``.
    """

    def __init__(self, dataset: Dataset, rows: torch.Tensor) -> None:
        rows = torch.as_tensor(rows, dtype=torch.int64)
        while isinstance(dataset, (Rows, Subset)):
            inner = dataset.rows if isinstance(dataset, Rows) else torch.as_tensor(dataset.indices)
            rows = inner.to(torch.int64)[rows]
            dataset = dataset.dataset
        self.dataset = dataset
        self.rows = rows

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.rows[index])]

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """The inputs at ``indices`` (int64, shape ``(b,)``), stacked: ``(b, ...)``."""
        return fetch_inputs(self.dataset, self.rows[indices])


def fetch_inputs(dataset: Dataset, indices: torch.Tensor) -> torch.Tensor:
    """The inputs of ``dataset`` at ``indices`` (1-D int64), stacked into one tensor.

    A dataset with a ``get_batch(indices)`` method returns the whole batch at once (the fast
    path of array-backed data); any other dataset is read item by item (its input is the item
    itself or the item's first entry).
    """
    get_batch = getattr(dataset, "get_batch", None)
    if callable(get_batch):
        return get_batch(indices)
    return _stack_inputs([dataset[int(i)] for i in indices])


class Pool:
    """Samples with a sensitive group each; labels optional.

    Parameters
    ----------
    inputs : torch.Tensor or torch.utils.data.Dataset
        A tensor of shape ``(N, ...)``, or a dataset of ``N`` items whose input is the item
        itself or its first entry (``(x, y, ...)`` tuples work). ``N = 0`` is allowed (an
        empty labelled set); strategies reject an empty candidate pool.
    groups : array-like of int, shape (N,)
        Group ids ``0..G-1`` (age band, gender, domain...); any ``G >= 1``.
    labels : array-like of int, shape (N,), optional
        Class labels, where known (a labelled set, a validation set).
    ids : array-like of int, shape (N,), optional
        Identifiers carried through :meth:`subset` (e.g. indices into the full training set).
        Defaults to ``0..N-1``.
    num_groups : int, optional
        ``G``, when some groups have no sample here. Defaults to ``max(groups) + 1``.
    num_workers : int, default 0
        For Dataset inputs without ``get_batch``: :meth:`batches` reads the items in this many
        DataLoader worker processes (worth it when reading an item is slow, e.g. decoding an
        image file). Order and values are the same for any count.

    Examples
    --------
    >>> pool = Pool(torch.rand(6, 1, 8, 8), groups=[0, 1, 1, 0, 2, 1])
    >>> len(pool), pool.num_groups
    (6, 3)
    >>> pool.group_indices(1).tolist()
    [1, 2, 5]
    """

    def __init__(
        self,
        inputs: torch.Tensor | Dataset,
        groups: ArrayLike,
        *,
        labels: ArrayLike | None = None,
        ids: ArrayLike | None = None,
        num_groups: int | None = None,
        num_workers: int = 0,
    ) -> None:
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() < 1:
                raise ValueError("inputs must have a leading sample dimension, got a scalar")
            if inputs.device.type == "meta":
                raise ValueError("inputs are on the meta device: they hold no values")
            length = inputs.shape[0]
        elif isinstance(inputs, Dataset) and hasattr(inputs, "__len__"):
            length = len(inputs)
        else:
            raise TypeError(
                "inputs must be a torch.Tensor of shape (N, ...) or a sized "
                f"torch.utils.data.Dataset, got {type(inputs).__name__}"
            )
        if isinstance(inputs, Subset):
            inputs = Rows(inputs, torch.arange(length))
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)):
            raise TypeError(f"num_workers must be an int, got {type(num_workers).__name__}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers = int(num_workers)
        self.inputs = inputs
        self.groups = _as_int64(groups, "groups", length)
        if length and int(self.groups.min()) < 0:
            raise ValueError(
                f"groups must be non-negative ids 0..G-1, got {int(self.groups.min())}"
            )
        observed = int(self.groups.max()) + 1 if length else 0
        if num_groups is None:
            num_groups = observed
        elif isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
            raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
        elif num_groups < max(observed, 1):
            raise ValueError(
                f"num_groups={num_groups} but groups holds ids up to {observed - 1}; "
                "num_groups must be at least 1 and above every group id"
            )
        self.num_groups = int(num_groups)
        self.labels = None if labels is None else _as_int64(labels, "labels", length)
        if self.labels is not None and length and int(self.labels.min()) < 0:
            raise ValueError("labels must be non-negative class ids")
        self.ids = torch.arange(length) if ids is None else _as_int64(ids, "ids", length)

    def __len__(self) -> int:
        return int(self.groups.numel())

    def __repr__(self) -> str:
        kind = "tensor" if isinstance(self.inputs, torch.Tensor) else type(self.inputs).__name__
        labelled = "labelled" if self.labels is not None else "unlabelled"
        return f"Pool({len(self)} samples, {self.num_groups} groups, {labelled}, {kind} inputs)"

    @property
    def has_labels(self) -> bool:
        """Whether the pool carries labels."""
        return self.labels is not None

    def group_counts(self) -> torch.Tensor:
        """Samples per group, int64 tensor of shape ``(G,)``."""
        return torch.bincount(self.groups, minlength=self.num_groups)

    def group_indices(self, group: int) -> torch.Tensor:
        """Indices (int64, ascending) of the samples of ``group``."""
        return torch.nonzero(self.groups == group).flatten()

    def subset(self, indices: ArrayLike) -> Pool:
        """A pool of the samples at ``indices`` (groups, labels and ids follow)."""
        idx = as_index_tensor(indices, len(self))
        if isinstance(self.inputs, torch.Tensor):
            inputs: torch.Tensor | Dataset = self.inputs[idx.to(self.inputs.device)]
        else:
            inputs = Rows(self.inputs, idx)
        return Pool(
            inputs,
            self.groups[idx],
            labels=None if self.labels is None else self.labels[idx],
            ids=self.ids[idx],
            num_groups=self.num_groups,
            num_workers=self.num_workers,
        )

    def get_inputs(self, indices: torch.Tensor) -> torch.Tensor:
        """Stack the inputs at ``indices`` (a 1-D int64 tensor) into one tensor."""
        if isinstance(self.inputs, torch.Tensor):
            return self.inputs[indices.to(self.inputs.device)]
        return fetch_inputs(self.inputs, indices)

    def require_labels(self, name: str = "pool") -> torch.Tensor:
        """The labels, or a ``ValueError`` saying that ``name`` needs them."""
        if self.labels is None:
            raise ValueError(f"{name} must be a Pool with labels (Pool(x, groups, labels=y))")
        return self.labels

    def batches(
        self,
        batch_size: int = 256,
        *,
        device: torch.device | str | None = None,
        indices: ArrayLike | None = None,
    ) -> Iterator[torch.Tensor]:
        """Iterate over the inputs in order, ``batch_size`` at a time, moved to ``device``.

        Parameters
        ----------
        batch_size : int
            Samples per batch.
        device : torch.device or str, optional
            Target device; CUDA transfers go through pinned memory, non-blocking.
        indices : array-like of int, optional
            Iterate over these samples only, in this order.

        Yields
        ------
        torch.Tensor
            Input batches of shape ``(b, ...)``.
        """
        for batch in self._input_batches(batch_size, indices):
            yield _to_device(batch, device)

    def labeled_batches(
        self,
        batch_size: int = 256,
        *,
        device: torch.device | str | None = None,
        indices: ArrayLike | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Like :meth:`batches`, yielding ``(inputs, labels, groups)`` on ``device``."""
        labels = self.require_labels()
        index_batches = list(self._index_batches(batch_size, indices))
        for idx, batch in zip(index_batches, self._read(index_batches), strict=True):
            yield (
                _to_device(batch, device),
                _to_device(labels[idx], device),
                _to_device(self.groups[idx], device),
            )

    def _input_batches(self, batch_size: int, indices: ArrayLike | None) -> Iterator[torch.Tensor]:
        return self._read(list(self._index_batches(batch_size, indices)))

    def _read(self, index_batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The inputs of each index batch, in order; through DataLoader workers where set."""
        uses_workers = (
            self.num_workers > 0
            and not isinstance(self.inputs, torch.Tensor)
            and not callable(getattr(self.inputs, "get_batch", None))
            and len(index_batches) > 1
        )
        if not uses_workers:
            return (self.get_inputs(idx) for idx in index_batches)
        loader = DataLoader(
            self.inputs,
            batch_sampler=[idx.tolist() for idx in index_batches],
            num_workers=self.num_workers,
            collate_fn=_stack_inputs,
        )
        return iter(loader)

    def _index_batches(self, batch_size: int, indices: ArrayLike | None) -> Iterator[torch.Tensor]:
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        order = torch.arange(len(self)) if indices is None else as_index_tensor(indices, len(self))
        if order.numel():
            yield from order.split(int(batch_size))


def _to_device(tensor: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    if device is None:
        return tensor
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def initial_split(
    num_samples: int, labeled_fraction: float, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``0..num_samples-1`` uniformly at random into labelled and unlabelled indices.

    The paper labels 20% of the training set uniformly at random before the first round.

    Returns
    -------
    (labeled, unlabeled) : tuple of torch.Tensor
        Sorted int64 index tensors of sizes ``round(num_samples * labeled_fraction)`` and the
        rest.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not 0.0 < labeled_fraction < 1.0:
        raise ValueError(f"labeled_fraction must lie in (0, 1), got {labeled_fraction}")
    count = max(1, round(num_samples * labeled_fraction))
    order = torch.randperm(num_samples, generator=generator)
    return order[:count].sort().values, order[count:].sort().values
