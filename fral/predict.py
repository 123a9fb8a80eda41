"""Batched inference over a Pool or a tensor: logits, probabilities, embeddings.

Inference runs on an eval-mode view of the model under ``torch.inference_mode()``; the model
comes back with its mode, BatchNorm statistics, ``requires_grad`` flags and ``.grad`` as they
were. Results stay on the device the model ran on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from fral._modules import (
    VERIFY_SAMPLES,
    EvalView,
    autocast,
    check_input_batch,
    check_module,
    evaluation_view,
)
from fral.pool import Pool, as_index_tensor

__all__ = ["embeddings", "iter_inputs", "logits", "probabilities"]

Data = Pool | torch.Tensor


def iter_inputs(
    data: Data,
    batch_size: int,
    device: torch.device,
    indices: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Input batches of a Pool or a tensor ``(N, ...)`` on ``device``, each checked: floating
    point and finite (a clear error names the problem and the fix)."""
    for batch in _raw_batches(data, batch_size, device, indices):
        yield check_input_batch(batch)


def _raw_batches(
    data: Data, batch_size: int, device: torch.device, indices: torch.Tensor | None
) -> Iterator[torch.Tensor]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(data, Pool):
        if len(data) == 0 or (indices is not None and len(indices) == 0):
            raise ValueError("data is empty: no samples to run the model on")
        yield from data.batches(batch_size, device=device, indices=indices)
        return
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a fral.Pool or a torch.Tensor, got {type(data).__name__}")
    if data.dim() < 1 or data.shape[0] == 0:
        raise ValueError("data is empty: no samples to run the model on")
    if data.device.type == "meta":
        raise ValueError("data is on the meta device: it holds no values")
    if indices is None:
        for batch in data.split(batch_size):
            yield batch.to(device, non_blocking=True)
        return
    index = as_index_tensor(indices, data.shape[0])
    if index.numel() == 0:
        raise ValueError("indices is empty: no samples to run the model on")
    for chunk in index.to(data.device).split(batch_size):
        yield data[chunk].to(device, non_blocking=True)


def row_count(data: Data, indices: torch.Tensor | None = None) -> int:
    """How many rows :func:`iter_inputs` yields for ``data`` (and ``indices``); 0 for
    arguments it refuses (it raises the error that names them)."""
    if indices is not None:
        if isinstance(indices, torch.Tensor):
            return int(indices.numel())
        return len(indices) if hasattr(indices, "__len__") else 0
    if isinstance(data, Pool):
        return len(data)
    return int(data.shape[0]) if isinstance(data, torch.Tensor) and data.dim() else 0


class RowWriter:
    """Per-batch outputs written into one output tensor allocated at the first batch.

    Collecting the batches in a list and concatenating them at the end holds the output twice
    at the peak (the pieces and the joined copy) and leaves the freed pieces to the
    allocator's heap; filling one ``(rows, ...)`` tensor holds it once.
    """

    def __init__(self, rows: int) -> None:
        self.rows, self.filled = rows, 0
        self.out: torch.Tensor | None = None

    def add(self, chunk: torch.Tensor) -> None:
        """Write ``chunk`` (``(b, ...)``) after the rows written so far."""
        if self.out is None:
            self.out = chunk.new_empty((self.rows, *chunk.shape[1:]))
        stop = self.filled + chunk.shape[0]
        if stop > self.rows or chunk.shape[1:] != self.out.shape[1:]:
            raise ValueError(
                f"a batch of shape {tuple(chunk.shape)} does not fit the output of shape "
                f"{tuple(self.out.shape)} after {self.filled} rows"
            )
        self.out[self.filled : stop] = chunk
        self.filled = stop

    def result(self) -> torch.Tensor:
        """The ``(rows, ...)`` output, every row written."""
        if self.out is None or self.filled != self.rows:
            raise RuntimeError(f"{self.filled} of {self.rows} rows were written")
        return self.out


def _run(
    view: EvalView,
    data: Data,
    batch_size: int,
    amp: bool | torch.dtype,
    indices: torch.Tensor | None,
) -> torch.Tensor:
    out = RowWriter(row_count(data, indices))
    with torch.inference_mode(), autocast(view.device, amp):
        for batch in iter_inputs(data, batch_size, view.device, indices):
            out.add(view(batch).float())
    return out.result()


def logits(
    model: nn.Module,
    data: Data,
    *,
    indices: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    optimize: bool = True,
) -> torch.Tensor:
    """Logits of ``model`` on every sample of ``data``, in order.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits ``(b, C)``. Not modified.
    data : Pool or torch.Tensor
        A pool, or inputs of shape ``(N, ...)``.
    indices : torch.Tensor, optional
        Run on these samples only, in this order (``K`` of them).
    batch_size : int, default 256
        Samples per forward pass.
    device : torch.device or str, optional
        Run on this device (a copy of the model goes there). Defaults to the model's device.
    amp : bool or torch.dtype, default False
        Autocast (``True``: bfloat16). Outputs are returned in float32.
    optimize : bool, default True
        Evaluate an optimised copy (BatchNorm folded); see :func:`fral._modules.evaluation_view`.

    Returns
    -------
    torch.Tensor, shape (N, C) (or (K, C)), float32, on the device the model ran on.
    """
    check_module(model, "model")
    with evaluation_view(model, optimize=optimize, device=device) as view:
        return _run(view, data, batch_size, amp, indices)


def probabilities(
    model: nn.Module,
    data: Data,
    *,
    indices: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    optimize: bool = True,
) -> torch.Tensor:
    """Softmax probabilities of ``model`` on ``data``; shape ``(N, C)``. See :func:`logits`."""
    out = logits(
        model,
        data,
        indices=indices,
        batch_size=batch_size,
        device=device,
        amp=amp,
        optimize=optimize,
    )
    return out.softmax(dim=1)


def _layer_name(model: nn.Module, layer: str | nn.Module | None) -> str:
    """Qualified name of the embedding layer: given, or the model's last ``nn.Linear``."""
    names = {module: name for name, module in model.named_modules()}
    if layer is None:
        linears = [name for module, name in names.items() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError(
                "the model has no nn.Linear layer whose input could serve as the embedding; "
                "pass layer=<name or module> or features=callable(model, x) -> (N, d)"
            )
        return linears[-1]
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError("layer is not a submodule of the model")
        return names[layer]
    if isinstance(layer, str):
        try:
            model.get_submodule(layer)
        except AttributeError as err:
            raise ValueError(f"the model has no submodule named {layer!r}") from err
        return layer
    raise TypeError(f"layer must be a module name, a module or None; got {type(layer).__name__}")


def embeddings(
    model: nn.Module,
    data: Data,
    *,
    indices: torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features: the input of ``layer`` (default: the last ``nn.Linear``).

    Parameters
    ----------
    model : nn.Module
        Classifier. Not modified (the forward hook lives on a copy, or is removed afterwards).
    data : Pool or torch.Tensor
        Samples ``(N, ...)``.
    indices : torch.Tensor, optional
        Embed these samples only, in this order (``K`` of them); the data is not copied.
    layer : str or nn.Module, optional
        The layer whose (flattened) input is the embedding. Defaults to the last ``nn.Linear``,
        i.e. the classifier head.
    features : callable, optional
        ``features(model, x) -> (b, d)`` computing the embedding directly, for models where no
        single layer's input is it. Called on the user's model, held in eval mode.
    batch_size, device, amp :
        As in :func:`logits`.
    return_logits : bool, default False
        Also return the logits of the same forward pass (with ``layer``) or of a second one.

    Returns
    -------
    torch.Tensor, shape (N, d) (or (K, d)), float32
        The embeddings; with ``return_logits``, the tuple ``(embeddings, logits (N, C))``.
    """
    check_module(model, "model")
    if features is not None:
        if not callable(features):
            raise TypeError("features must be callable as features(model, x) -> (N, d)")
        return _embeddings_from_callable(
            model, data, indices, features, batch_size, device, amp, return_logits
        )
    name = _layer_name(model, layer)
    with evaluation_view(model, device=device) as view:
        # Settle which version of the model runs before hooking a layer of it.
        view.verify(next(iter_inputs(data, min(batch_size, VERIFY_SAMPLES), view.device, indices)))
        try:
            target = view.module.get_submodule(name)
        except AttributeError:
            target = None
        if target is None:  # the optimised copy renamed it: hook the model itself
            with evaluation_view(model, optimize=False, device=device) as plain:
                return embeddings_with_hook(
                    plain,
                    plain.module.get_submodule(name),
                    data,
                    batch_size,
                    amp,
                    return_logits,
                    indices=indices,
                )
        return embeddings_with_hook(
            view, target, data, batch_size, amp, return_logits, indices=indices
        )


def embeddings_with_hook(
    view: EvalView,
    target: nn.Module,
    data: Data,
    batch_size: int,
    amp: bool | torch.dtype,
    return_logits: bool,
    indices: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run ``view`` over ``data`` capturing the flattened input of ``target``.

    ``indices``: run over these samples only, in this order.
    """
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].flatten(1).float())

    rows = row_count(data, indices)
    embedded, outputs = RowWriter(rows), RowWriter(rows)
    handle = target.register_forward_pre_hook(hook)
    try:
        with torch.inference_mode(), autocast(view.device, amp):
            for batch in iter_inputs(data, batch_size, view.device, indices):
                out = view(batch)
                if len(captured) != 1:
                    raise ValueError(
                        f"the embedding layer ran {len(captured)} times in one forward pass; "
                        "pass layer= a layer that runs once, or features="
                    )
                embedded.add(captured.pop())
                if return_logits:
                    outputs.add(out.float())
    finally:
        handle.remove()
    if return_logits:
        return embedded.result(), outputs.result()
    return embedded.result()


def _embeddings_from_callable(
    model: nn.Module,
    data: Data,
    indices: torch.Tensor | None,
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device | str | None,
    amp: bool | torch.dtype,
    return_logits: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    rows = row_count(data, indices)
    embedded, outputs = RowWriter(rows), RowWriter(rows)
    with (
        evaluation_view(model, optimize=False, device=device) as view,
        torch.inference_mode(),
        autocast(view.device, amp),
    ):
        for batch in iter_inputs(data, batch_size, view.device, indices):
            emb = features(view.module, batch)
            if not isinstance(emb, torch.Tensor) or emb.shape[0] != batch.shape[0]:
                raise ValueError("features(model, x) must return a tensor of shape (b, d)")
            embedded.add(emb.flatten(1).float())
            if return_logits:
                outputs.add(view(batch).float())
    if return_logits:
        return embedded.result(), outputs.result()
    return embedded.result()
