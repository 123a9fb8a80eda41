"""Use a user's model without changing it.

Everything in fral that runs a model goes through :func:`evaluation_view`: it yields an
eval-mode callable whose use cannot touch the user's module (its mode, BatchNorm buffers,
``requires_grad`` flags and ``.grad``). By default the view is an optimised *copy*: BatchNorm
folded into the preceding convolution, parameters frozen, convolutions in ``channels_last``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
import weakref
from collections import Counter
from collections.abc import Iterator

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

__all__ = [
    "EvalView",
    "autocast",
    "clear_cache",
    "evaluation_view",
    "model_device",
    "preserved_mode",
]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_module(model: object, name: str) -> nn.Module:
    """Raise a ``TypeError`` naming ``name`` unless ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


@contextlib.contextmanager
def preserved_mode(model: nn.Module, training: bool | None = False) -> Iterator[nn.Module]:
    """Put ``model`` in train/eval mode for the block, then restore every submodule's flag.

    Submodules may hold different flags (e.g. a frozen BatchNorm in eval mode inside a model in
    train mode); each one is restored as it was, not by a blanket ``model.train()``. With
    ``training=None`` the flags are left alone on entry and only restored on exit.
    """
    flags = [(module, module.training) for module in model.modules()]
    if training is not None:
        model.train(training)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def autocast(device: torch.device, amp: bool | torch.dtype) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` (``True`` means bfloat16, which needs no loss scaling)."""
    if amp is False or amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp is True else amp
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"amp must be a bool or a torch.dtype, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=dtype)


class EvalView:
    """An eval-mode callable standing for a user's model.

    Parameters
    ----------
    module : nn.Module
        The module to call: an optimised copy, or the user's model itself while it is held in
        eval mode by :func:`preserved_mode`.
    channels_last : bool
        Convert 4-D inputs to ``channels_last`` before the call.
    device : torch.device
        Where the module's parameters are.
    """

    def __init__(self, module: nn.Module, channels_last: bool, device: torch.device) -> None:
        self.module = module
        self.channels_last = channels_last
        self.device = device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)


_CONV_BN = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def _fold_batchnorm(module: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """Fold each eval-mode BatchNorm into the convolution that alone feeds it.

    Works on a ``torch.fx`` trace of ``module`` (an eval-mode copy); a model that cannot be
    traced is returned as it is. A convolution called from several places is left alone.

    Returns
    -------
    (module, folded)
        The module to run, and ``{convolution name: BatchNorm name}`` of the folded pairs.
    """
    try:
        traced = fx.symbolic_trace(module)
    except Exception:  # any model torch.fx cannot trace keeps its BatchNorm layers
        return module, {}
    modules = dict(traced.named_modules())
    calls = Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    folded = {}
    for node in list(traced.graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not isinstance(source, fx.Node) or source.op != "call_module":
            continue
        conv, norm = modules[source.target], modules[node.target]
        foldable = any(type(conv) is c and type(norm) is b for c, b in _CONV_BN)
        if not foldable or len(source.users) > 1 or calls[source.target] > 1:
            continue
        if norm.running_mean is None or norm.running_var is None:
            continue
        parent, _, name = source.target.rpartition(".")
        fused = fuse_conv_bn_eval(conv, norm)
        setattr(traced.get_submodule(parent) if parent else traced, name, fused)
        modules[source.target] = fused
        folded[source.target] = node.target
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced, folded


def _frozen_copy(model: nn.Module) -> nn.Module | None:
    try:
        clone = copy.deepcopy(model)
    except Exception:  # some modules cannot be copied; the caller falls back
        return None
    clone.eval()
    for parameter in clone.parameters():
        parameter.grad = None
        parameter.requires_grad_(False)
    return clone


_PLAIN = (bool, int, float, str, tuple, type(None))


def _signature(model: nn.Module) -> tuple:
    """What an eval copy depends on besides tensor values: structure, settings, shapes.

    Every submodule's type, plain settings (stride, eps, flags read in ``forward``...) and hook
    counts, and every parameter's and buffer's name, shape, dtype and device.
    """
    parts: list[tuple] = []
    for name, module in model.named_modules():
        settings = tuple(
            sorted(
                (key, value)
                for key, value in vars(module).items()
                if not key.startswith("_") and key != "training" and isinstance(value, _PLAIN)
            )
        )
        hooks = (len(module._forward_hooks), len(module._forward_pre_hooks))
        parts.append((name, type(module), settings, hooks))
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        parts.append((name, tuple(tensor.shape), tensor.dtype, tensor.device))
    return tuple(parts)


class _Copy:
    """An eval-mode copy of one model, kept between calls and refreshed from it on each use.

    Building it (deepcopy, ``torch.fx`` trace, BatchNorm folding) costs tens of milliseconds
    for a MobileNetV2, as much as a whole PGD attack of a batch on a GPU; refreshing it copies
    the current weights (and recomputes the folded ones), a few kernel launches.
    """

    def __init__(self, model: nn.Module, device: torch.device, optimize: bool) -> None:
        clone = _frozen_copy(model)
        if clone is None:
            raise _CannotCopy
        folded: dict[str, str] = {}
        self.channels_last = False
        if optimize:
            clone, folded = _fold_batchnorm(clone)
            self.channels_last = any(isinstance(m, nn.Conv2d) for m in clone.modules())
        memory = torch.channels_last if self.channels_last else torch.preserve_format
        self.module = clone.to(device, memory_format=memory)
        self.device = device
        self.signature = _signature(model)
        self.lock = threading.Lock()
        self.folded = [
            (self.module.get_submodule(conv), conv, bn, model.get_submodule(bn).eps)
            for conv, bn in folded.items()
        ]
        fused_names = {f"{conv}.{kind}" for conv in folded for kind in ("weight", "bias")}
        own = itertools.chain(self.module.named_parameters(), self.module.named_buffers())
        self.plain = [(name, tensor) for name, tensor in own if name not in fused_names]

    def refresh(self, model: nn.Module) -> None:
        """Copy the model's current parameters and buffers in (folding where folded)."""
        source = dict(model.named_parameters())
        source.update(model.named_buffers())
        with torch.no_grad():
            for name, tensor in self.plain:
                tensor.copy_(source[name])
            for target, conv, bn, eps in self.folded:
                weight, bias = fuse_conv_bn_weights(
                    source[f"{conv}.weight"], source.get(f"{conv}.bias"),
                    source[f"{bn}.running_mean"], source[f"{bn}.running_var"], eps,
                    source.get(f"{bn}.weight"), source.get(f"{bn}.bias"),
                )  # fmt: skip
                target.weight.copy_(weight)
                target.bias.copy_(bias)


class _CannotCopy(Exception):
    pass


_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[torch.device, bool], _Copy]] = (
    weakref.WeakKeyDictionary()
)
_COPIES_LOCK = threading.Lock()


def clear_cache() -> None:
    """Drop the eval copies fral keeps of the models it has run (to free their memory)."""
    with _COPIES_LOCK:
        _COPIES.clear()


def _cached_copy(model: nn.Module, device: torch.device, optimize: bool) -> _Copy | None:
    """The kept copy of ``model`` for (device, optimize), rebuilt if the model changed shape
    or settings; ``None`` if the model cannot be copied."""
    signature = _signature(model)
    with _COPIES_LOCK:
        kept = _COPIES.setdefault(model, {})
        entry = kept.get((device, optimize))
        if entry is not None and entry.signature == signature:
            return entry
    try:
        entry = _Copy(model, device, optimize)
    except _CannotCopy:
        return None
    with _COPIES_LOCK:
        _COPIES.setdefault(model, {})[(device, optimize)] = entry
    return entry


@contextlib.contextmanager
def evaluation_view(
    model: nn.Module, *, optimize: bool = True, device: torch.device | str | None = None
) -> Iterator[EvalView]:
    """Yield an eval-mode view of ``model`` that leaves the model exactly as it was.

    Parameters
    ----------
    model : nn.Module
        The user's model. It is never modified.
    optimize : bool, default True
        Evaluate an optimised copy (BatchNorm folded, parameters frozen, ``channels_last`` for
        convolutional models). Outputs equal the model's up to float rounding. The copy is
        kept while the model lives and refreshed with its current weights at every call
        (:func:`clear_cache` drops it). With ``False``, or when the model cannot be copied, the
        model itself is held in eval mode for the block and its train/eval flags restored
        afterwards.
    device : torch.device or str, optional
        Run on this device (the copy is moved there; the model stays where it is). Defaults to
        the model's device.

    Yields
    ------
    EvalView
        Callable ``view(x) -> logits``; gradients flow to the input only.
    """
    home = model_device(model)
    device = home if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    entry = _cached_copy(model, device, optimize) if optimize or device != home else None
    if entry is None and device != home:
        raise ValueError(f"the model is on {home} and cannot be copied to run on {device}")
    if entry is None:
        with preserved_mode(model, training=False):
            yield EvalView(model, channels_last=False, device=device)
        return
    if not entry.lock.acquire(blocking=False):  # in use (another thread, a nested call)
        entry = _Copy(model, device, optimize)
        entry.lock.acquire()
    try:
        entry.refresh(model)
        yield EvalView(entry.module, channels_last=entry.channels_last, device=device)
    finally:
        entry.lock.release()
