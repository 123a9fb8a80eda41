"""Use a user's model without changing it, and evaluate it fast without changing its answers.

Everything in fral that evaluates a model goes through :func:`evaluation_view`: it yields an
eval-mode callable whose use cannot touch the user's module (its mode, BatchNorm buffers,
``requires_grad`` flags and ``.grad``). By default the view runs an optimised *copy*: BatchNorm
folded into the preceding convolution, parameters frozen, convolutions in ``channels_last``.

The copy is an optimisation, never a change of answer. Correctness does not rest on a list of
model patterns known to be safe:

- the copy is refreshed with the model's current parameters and buffers at every call, and
  rebuilt when anything else it depends on changes (structure, settings and tensor attributes
  read in ``forward``, hooks, parameters replaced or tied anew);
- on the first batch of every call, the copy's output on a few samples is checked against the
  model's own eval-mode forward; when they differ, or when copying, tracing or refreshing fails,
  fral steps down a ladder of safer versions (folded + ``channels_last`` -> folded -> a plain
  frozen copy -> the model itself, held in eval mode) and remembers the step for later calls;
- reaching the model itself is reported once per model with an :class:`OptimizationWarning`
  naming why. The answers are the same either way; only the speed differs.

Copies are built and refreshed outside ``torch.inference_mode()`` whatever the caller holds, so
a first call made inside inference mode cannot poison later calls that need gradients.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import os
import sys
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

__all__ = [
    "EvalView",
    "OptimizationWarning",
    "autocast",
    "check_input_batch",
    "check_module",
    "clear_cache",
    "evaluation_view",
    "model_device",
    "output_width",
    "preserved_mode",
    "warn_user",
]


class OptimizationWarning(UserWarning):
    """fral evaluates a model itself because no optimised copy of it gives the same answers."""


_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside fral (the user's line)."""
    frame, stacklevel = sys._getframe(1), 2
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR)
        or frame.f_code.co_filename == contextlib.__file__
    ):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_module(model: object, name: str) -> nn.Module:
    """Raise unless ``model`` is an ``nn.Module`` with real weights (not on the meta device)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if model_device(model).type == "meta":
        raise ValueError(
            f"{name} is on the meta device: it has no weights to run. Materialise it first "
            "(model.to_empty(device='cpu') and load_state_dict(...))"
        )
    return model


def check_input_batch(x: object, name: str = "inputs") -> torch.Tensor:
    """Raise a clear error unless ``x`` is a finite floating-point tensor with a sample axis."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type == "meta":
        raise ValueError(f"{name} are on the meta device: they hold no values")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a leading sample dimension, got a scalar")
    if not x.is_floating_point():
        hint = (
            "images stored as integers: pass x.float() / 255 (inputs in [0, 1]), or convert "
            "and set bounds to the data's range"
            if x.dtype == torch.uint8
            else "convert them with x.float() (and set the attack's bounds to their range)"
        )
        raise TypeError(f"{name} must be floating point, got {x.dtype}; {hint}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} hold NaN or infinite values")
    return x


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


# The ladder of versions of a model, fastest first. "model" is the user's model itself.
_FOLDED_CL, _FOLDED, _COPY, _MODEL = "folded+channels_last", "folded", "copy", "model"
_OPTIMISED_LADDER = (_FOLDED_CL, _FOLDED, _COPY, _MODEL)

#: Samples of the first batch of each call on which the copy is checked against the model.
VERIFY_SAMPLES = 2

_CONV_BN = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def _has_hooks(module: nn.Module) -> bool:
    registries = (
        module._forward_hooks,
        module._forward_pre_hooks,
        module._backward_hooks,
        getattr(module, "_backward_pre_hooks", {}),
    )
    return any(len(registry) for registry in registries)


def _plainly_parametrised(module: nn.Module) -> bool:
    """Whether ``weight`` (and ``bias``) are ordinary parameters: not pruned, not weight-normed,
    not parametrised, no hooks that recompute them."""
    if _has_hooks(module) or hasattr(module, "parametrizations"):
        return False
    return all(
        getattr(module, name, None) is None or name in module._parameters
        for name in ("weight", "bias")
    )


def _fold_batchnorm(module: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """Fold each eval-mode BatchNorm into the convolution that alone feeds it.

    Works on a ``torch.fx`` trace of ``module`` (an eval-mode copy). Only plain pairs are folded:
    exact convolution and BatchNorm types, ordinary parameters, no hooks, running statistics, a
    convolution called once whose only user is the BatchNorm. Tracing errors propagate (the
    caller steps down the ladder).

    Returns
    -------
    (module, folded)
        The traced module, and ``{convolution name: BatchNorm name}`` of the folded pairs.
    """
    traced = fx.symbolic_trace(module)
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
        if calls[node.target] > 1 or len(node.args) != 1 or node.kwargs:
            continue
        if not (_plainly_parametrised(conv) and _plainly_parametrised(norm)):
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


def _frozen_copy(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.eval()
    for parameter in clone.parameters():
        parameter.grad = None
        parameter.requires_grad_(False)
    return clone


_SCALARS = (bool, int, float, str, type(None))


def _setting(value: Any, derived: bool = False) -> Any:
    """A comparable stand-in for an attribute read in ``forward``: the value itself for plain
    scalars (and tuples of them), identity and version for tensors (only the form of tensors
    ``derived`` from parameters), identity otherwise."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, tuple) and all(isinstance(item, _SCALARS) for item in value):
        return value
    if isinstance(value, torch.Tensor):
        form = (tuple(value.shape), value.dtype, value.device)
        return ("derived", *form) if derived else ("tensor", id(value), value._version, *form)
    return ("object", id(value))


def _hook_ids(module: nn.Module) -> tuple[int, ...]:
    registries = (
        module._forward_hooks,
        module._forward_pre_hooks,
        getattr(module, "_forward_hooks_with_kwargs", {}),
        getattr(module, "_forward_pre_hooks_with_kwargs", {}),
    )
    return tuple(id(hook) for registry in registries for hook in registry.values())


def _signature(model: nn.Module) -> tuple:
    """What a copy depends on besides parameter and buffer values.

    Every submodule's type and ``forward``, its attributes (plain values; identity and version
    of tensors and other objects), its hooks, and every parameter's and buffer's name, identity
    (tying), shape, dtype and device; and the global module hooks.
    """
    parts: list[tuple] = []
    for name, module in model.named_modules(remove_duplicate=False):
        # Tensors that a module's own pre-hook recomputes at every forward (pruning, old-style
        # weight norm) are derived from its parameters: their identity is no setting.
        derived = len(module._forward_pre_hooks) > 0
        settings = tuple(
            (key, _setting(value, derived))
            for key, value in sorted(vars(module).items(), key=lambda item: item[0])
            if not key.startswith("_") and key != "training"
        )
        forward = (id(type(module).forward), id(vars(module).get("forward")))
        parts.append((name, type(module), forward, settings, _hook_ids(module)))
    tensors = itertools.chain(
        model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)
    )
    for name, tensor in tensors:
        parts.append((name, id(tensor), tuple(tensor.shape), tensor.dtype, tensor.device))
    globals_ = nn.modules.module
    parts.append(
        tuple(
            id(hook)
            for registry in (globals_._global_forward_hooks, globals_._global_forward_pre_hooks)
            for hook in registry.values()
        )
    )
    return tuple(parts)


class _BuildError(Exception):
    """A version of the model cannot be built; ``skip`` names the versions that fail alike."""

    def __init__(self, reason: str, skip: tuple[str, ...]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.skip = skip


def _tensor_attribute(model: nn.Module, name: str) -> torch.Tensor:
    owner, _, attribute = name.rpartition(".")
    value = getattr(model.get_submodule(owner) if owner else model, attribute)
    if not isinstance(value, torch.Tensor):
        raise KeyError(name)
    return value


class _Copy:
    """One version of a model on the ladder, kept between calls and refreshed on each use.

    Building it (deepcopy, ``torch.fx`` trace, BatchNorm folding) costs tens of milliseconds
    for a MobileNetV2, as much as a whole PGD attack of a batch on a GPU; refreshing it copies
    the current weights (and recomputes the folded ones), a few kernel launches.
    """

    def __init__(self, model: nn.Module, device: torch.device, level: str) -> None:
        self.level = level
        self.device = device
        self.signature: tuple | None = None  # set when the copy is kept (see EvalView._store)
        self.lock = threading.Lock()
        self.channels_last = False
        self.folded: list[tuple[nn.Module, str, str, float]] = []
        self.plain: list[tuple[str, torch.Tensor]] = []
        self.module: nn.Module | None = None  # the model itself at level "model" (not kept)
        if level == _MODEL:
            return
        with torch.inference_mode(False):
            try:
                clone = _frozen_copy(model)
            except Exception as error:
                raise _BuildError(_reason(error), skip=(_FOLDED_CL, _FOLDED, _COPY)) from error
            folded: dict[str, str] = {}
            if level in (_FOLDED_CL, _FOLDED):
                try:
                    clone, folded = _fold_batchnorm(clone)
                except Exception as error:
                    reason = f"torch.fx cannot trace it ({_reason(error)})"
                    raise _BuildError(reason, skip=(_FOLDED_CL, _FOLDED)) from error
            self.channels_last = level == _FOLDED_CL
            memory = torch.channels_last if self.channels_last else torch.preserve_format
            self.module = clone.to(device, memory_format=memory)
        self.folded = [
            (self.module.get_submodule(conv), conv, bn, model.get_submodule(bn).eps)
            for conv, bn in folded.items()
        ]
        fused_names = {f"{conv}.{kind}" for conv in folded for kind in ("weight", "bias")}
        own = itertools.chain(self.module.named_parameters(), self.module.named_buffers())
        self.plain = [(name, tensor) for name, tensor in own if name not in fused_names]

    def refresh(self, model: nn.Module) -> None:
        """Copy the model's current parameters and buffers in (folding where folded)."""
        if self.level == _MODEL:
            return
        source = dict(model.named_parameters(remove_duplicate=False))
        source.update(model.named_buffers(remove_duplicate=False))
        with torch.inference_mode(False), torch.no_grad():
            for name, tensor in self.plain:
                # torch.fx turns a plain tensor attribute read in forward into a buffer.
                tensor.copy_(source[name] if name in source else _tensor_attribute(model, name))
            for target, conv, bn, eps in self.folded:
                weight, bias = fuse_conv_bn_weights(
                    source[f"{conv}.weight"],
                    source.get(f"{conv}.bias"),
                    source[f"{bn}.running_mean"],
                    source[f"{bn}.running_var"],
                    eps,
                    source.get(f"{bn}.weight"),
                    source.get(f"{bn}.bias"),
                )
                target.weight.copy_(weight)
                target.bias.copy_(bias)


_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[torch.device, bool], _Copy]] = (
    weakref.WeakKeyDictionary()
)
_COPIES_LOCK = threading.Lock()
_WARNED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def clear_cache() -> None:
    """Drop the eval copies fral keeps of the models it has run (to free their memory)."""
    with _COPIES_LOCK:
        _COPIES.clear()


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


def _close(output: torch.Tensor, reference: torch.Tensor) -> bool:
    if output.shape != reference.shape:
        return False
    output, reference = output.detach().double().cpu(), reference.detach().double().cpu()
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    return bool(torch.allclose(output, reference, rtol=1e-3, atol=1e-4 * (1.0 + scale)))


def _check_output(output: Any, batch: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"the model returned {type(output).__name__}, but fral needs a model that returns "
            "logits, a tensor of shape (N, C); wrap it, e.g. a module whose forward returns "
            "model(x)[0] or model(x)['logits']"
        )
    if output.dim() != 2 or output.shape[0] != batch or not output.is_floating_point():
        raise TypeError(
            f"the model returned a {output.dtype} tensor of shape {tuple(output.shape)} for "
            f"{batch} inputs; fral needs floating-point logits of shape ({batch}, C)"
        )
    return output


def _parameter_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own eval-mode output on ``x``: what every copy must reproduce."""
    dtype = _parameter_dtype(model)
    try:
        with preserved_mode(model, training=False), torch.no_grad():
            output = model(x)
    except RuntimeError as error:
        if dtype is not None and dtype != x.dtype:
            raise TypeError(
                f"the inputs are {x.dtype} but the model's parameters are {dtype}: convert one "
                f"to the other (model.to({x.dtype}) or x.to({dtype}))"
            ) from error
        raise
    output = _check_output(output, x.shape[0])
    if not bool(torch.isfinite(output).all()):
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"the model's {name} holds NaN or infinite values")
        raise ValueError("the model returns NaN or infinite logits on finite inputs")
    return output


def output_width(model: nn.Module, x: torch.Tensor) -> int:
    """Check that ``model`` takes ``x`` and returns finite ``(N, C)`` logits; return ``C``.

    Runs the model's own eval forward on a few samples of ``x`` (flags restored, no gradients);
    raises the same clear errors as an evaluation view's first call.
    """
    check_module(model, "model")
    check_input_batch(x, "x")
    with torch.inference_mode(False), torch.autocast(x.device.type, enabled=False):
        return int(_reference(model, x[:VERIFY_SAMPLES].detach()).shape[1])


class EvalView:
    """An eval-mode callable standing for a user's model.

    Call it as ``view(x) -> logits``. Gradients flow to the input only. On its first call the
    version it runs is checked against the model's own eval forward (see the module notes).

    Attributes
    ----------
    module : nn.Module
        What is run: an optimised copy, or the user's model itself, held in eval mode.
    channels_last : bool
        Whether 4-D inputs are converted to ``channels_last`` before the call.
    device : torch.device
        Where ``module``'s parameters are.
    level : str
        The version run: ``"folded+channels_last"``, ``"folded"``, ``"copy"`` or ``"model"``.
    """

    def __init__(
        self,
        module: nn.Module,
        channels_last: bool = False,
        device: torch.device | None = None,
    ) -> None:
        """A view that runs ``module`` as it is: a working copy the caller owns, in eval mode.

        :func:`evaluation_view` builds the managed views of users' models.
        """
        self.model = module
        self.home = model_device(module)
        self.device = self.home if device is None else torch.device(device)
        self._ladder: tuple[str, ...] = (_MODEL,)
        self._key: tuple[torch.device, bool] | None = None
        self._stack = contextlib.ExitStack()
        self._reasons: list[str] = []
        self._signature: tuple | None = None
        self._verified = True
        self._entry: _Copy | None = _Copy(module, self.device, _MODEL)
        self._entry.channels_last = channels_last
        self._entry.lock.acquire()

    @classmethod
    def _managed(
        cls,
        model: nn.Module,
        device: torch.device,
        ladder: tuple[str, ...],
        key: tuple[torch.device, bool] | None,
    ) -> EvalView:
        view = cls.__new__(cls)
        view.model = model
        view.device = device
        view.home = model_device(model)
        view._ladder = ladder
        view._key = key
        view._stack = contextlib.ExitStack()
        view._entry = None
        view._signature = None
        view._reasons = []
        view._verified = ladder == (_MODEL,)
        view._take(view._first_entry())
        return view

    # -- building and caching ------------------------------------------------------------------

    def _cached(self) -> _Copy | None:
        if self._key is None:
            return None
        with _COPIES_LOCK:
            entry = _COPIES.get(self.model, {}).get(self._key)
        self._signature = _signature(self.model)
        if entry is None or entry.signature != self._signature:
            return None
        return entry

    def _store(self, entry: _Copy) -> None:
        if self._key is not None:
            entry.signature = self._signature or _signature(self.model)
            with _COPIES_LOCK:
                _COPIES.setdefault(self.model, {})[self._key] = entry

    def _first_entry(self) -> _Copy:
        entry = self._cached()
        if entry is not None:
            if entry.lock.acquire(blocking=False):
                try:
                    entry.refresh(self.model)
                    return entry
                except Exception as error:  # a failed refresh: rebuild below
                    entry.lock.release()
                    self._reasons.append(f"refresh failed ({_reason(error)})")
                    return self._build(self._ladder.index(entry.level), store=True)
            # In use (another thread, a nested call): an uncached copy at the same level.
            return self._build(self._ladder.index(entry.level), store=False)
        return self._build(0, store=True)

    def _build(self, start: int, store: bool) -> _Copy:
        """The first version from ``ladder[start]`` on that can be built, locked and fresh."""
        skip: set[str] = set()
        for level in self._ladder[start:]:
            if level in skip:
                continue
            if level == _MODEL and self.device != self.home:
                break
            try:
                entry = _Copy(self.model, self.device, level)
                entry.refresh(self.model)
            except _BuildError as error:
                self._reasons.append(error.reason)
                skip.update(error.skip)
                continue
            except Exception as error:  # refreshing failed: step down
                self._reasons.append(f"{level}: {_reason(error)}")
                continue
            entry.lock.acquire()
            if store:
                self._store(entry)
            return entry
        raise ValueError(
            f"the model is on {self.home} and no copy of it can run on {self.device}: "
            + "; ".join(self._reasons)
        )

    def _take(self, entry: _Copy) -> None:
        if self._entry is not None and self._entry is not entry:
            self._entry.lock.release()
        self._entry = entry
        if entry.level == _MODEL:
            self._stack.enter_context(preserved_mode(self.model, training=False))
            self._warn()

    def _warn(self) -> None:
        if self.model in _WARNED or self._ladder == (_MODEL,):
            return
        _WARNED[self.model] = reason = "; ".join(dict.fromkeys(self._reasons))
        warn_user(
            f"fral evaluates {type(self.model).__name__} itself rather than an optimised copy "
            f"({reason}); answers are unaffected, calls are slower",
            OptimizationWarning,
        )

    def close(self) -> None:
        """Release the copy and restore the model's flags (the context manager calls it)."""
        self._stack.close()
        if self._entry is not None:
            self._entry.lock.release()
            self._entry = None

    # -- running ---------------------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        """What is run: an optimised copy or the model itself."""
        assert self._entry is not None, "the view is closed"
        return self.model if self._entry.module is None else self._entry.module

    @property
    def channels_last(self) -> bool:
        """Whether 4-D inputs go in as ``channels_last``."""
        return self._entry is not None and self._entry.channels_last

    @property
    def level(self) -> str:
        """The version run (see the class notes)."""
        assert self._entry is not None, "the view is closed"
        return self._entry.level

    def _forward(self, x: torch.Tensor) -> Any:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)

    def verify(self, x: torch.Tensor) -> None:
        """Check the version run against the model's own eval forward on a few of ``x``.

        Raises a clear error for inputs or outputs fral cannot use (integer or non-finite
        inputs, a dtype mismatch, a model that does not return ``(N, C)`` logits or returns
        NaN). Steps down the ladder where the outputs differ or the copy fails.
        """
        if self._verified:
            return
        check_input_batch(x)
        sample = x[:VERIFY_SAMPLES].detach()
        with torch.inference_mode(False), torch.autocast(self.device.type, enabled=False):
            reference = _reference(self.model, sample.to(self.home))
            rebuilt = False
            while self.level != _MODEL:
                try:
                    # torch.fx prints the generated code of a failing traced module to stderr.
                    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                        output = self._forward(sample)
                    same = isinstance(output, torch.Tensor) and _close(output, reference)
                    reason = "its output differs from the model's own eval forward"
                except Exception as error:  # e.g. .view on channels_last features
                    same, reason = False, _reason(error)
                if same:
                    break
                self._reasons.append(f"{self.level}: {reason}")
                position = self._ladder.index(self.level)
                if not rebuilt:
                    # The kept copy may be stale in a way its signature missed: rebuild it once.
                    rebuilt = True
                    self._take(self._build(position, store=True))
                    continue
                if position + 1 >= len(self._ladder) or (
                    self._ladder[position + 1] == _MODEL and self.device != self.home
                ):
                    raise ValueError(
                        f"no copy of the model on {self.device} reproduces its output: "
                        + "; ".join(self._reasons)
                    )
                self._take(self._build(position + 1, store=True))
        self._verified = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self._verified:
            self.verify(x)
        return self._forward(x)


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
        convolutional models), checked against the model's own eval forward on the first batch
        and replaced by a safer version where they differ (see the module notes). The copy is
        kept while the model lives and refreshed with its current weights at every call
        (:func:`clear_cache` drops it). With ``False`` the model itself is held in eval mode
        for the block and its train/eval flags restored afterwards.
    device : torch.device or str, optional
        Run on this device (a copy goes there; the model stays where it is). Defaults to the
        model's device.

    Yields
    ------
    EvalView
        Callable ``view(x) -> logits``; gradients flow to the input only.
    """
    check_module(model, "model")
    home = model_device(model)
    device = home if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if optimize:
        ladder = _OPTIMISED_LADDER
    elif device != home:
        ladder = (_COPY,)
    else:
        ladder = (_MODEL,)
    key = None if ladder == (_MODEL,) else (device, bool(optimize))
    view = EvalView._managed(model, device, ladder, key=key)
    try:
        yield view
    finally:
        view.close()
