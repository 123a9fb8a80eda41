"""TRADES adversarial training and standard training, with the paper's SGD schedule.

- :func:`trades_loss`: the loss of Zhang et al. 2019. ``form="official"`` (the default, as
  the paper used it) runs the official code's arithmetic and its three train-mode forward
  passes; ``form="fast"`` reuses the clean logits (two passes). Every remaining difference
  from the official code is listed in its docstring.
- :class:`Trainer`: SGD with momentum and weight decay, linear warm-up then cosine annealing
  per :meth:`Trainer.fit` call (one active-learning round), optional random oversampling of
  minority classes. The optimiser (momentum buffers) persists across calls, so fine-tuning
  continues from the current weights and optimiser state, as in Algorithm 1's Adv-TRAIN.
- :func:`adversarial_train` and :func:`standard_train`: one-call wrappers.

Every random draw (shuffling, oversampling, the TRADES start, Dropout) comes from the
trainer's own generator: the same seed gives the same weights, and :meth:`Trainer.state_dict`
captures everything a resumed run needs.

Inputs are checked at the boundary, before any training step: a clear ``TypeError`` or
``ValueError`` names the argument and the fix (integer images, dtype or device mismatches,
the ``meta`` device, models returning tuples or dicts, empty data, labels outside the model's
classes, NaN/inf in inputs or weights, inputs outside ``bounds``). A non-finite loss stops
training with a :class:`NonFiniteLossError` naming the epoch and batch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fral._modules import (
    _close,
    autocast,
    check_module,
    evaluation_view,
    model_device,
    preserved_mode,
)
from fral._progress import check_progress, progress_bar
from fral._random import RandomState, make_generator, resolve_seed
from fral.attacks import check_labels
from fral.distributed import Context, current
from fral.pool import Pool

__all__ = [
    "INHERIT",
    "PRESETS",
    "TRADES_FORMS",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "adversarial_train",
    "standard_train",
    "trades_loss",
    "warmup_cosine",
]

Bounds = tuple[float, float] | None

INHERIT = "inherit"
"""Value of a :class:`TrainConfig` threat-model field (``eps``, ``alpha``, ``bounds``) that is left
to the data set (:meth:`TrainConfig.inherit`) or, standalone, to the paper's default.
"""

TRADES_FORMS = ("official", "fast")
"""The two computations of :func:`trades_loss`: the official code's three train-mode passes, and
fral's two-pass form.
"""


class NonFiniteLossError(ValueError, FloatingPointError):
    """Training produced a NaN or infinite loss (a ``ValueError`` and a ``FloatingPointError``)."""


def _unset(value: Any) -> bool:
    return isinstance(value, str) and value == INHERIT


def _real(name: str, value: Any, allowed: str, ok: Any) -> float:
    """``value`` as a finite float for which ``ok`` holds; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number {allowed}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    return value


def _integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _bounds(value: Any, name: str = "bounds") -> Bounds:
    """``None`` or a ``(low, high)`` float pair with finite ``low < high``."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(
            f"{name} must be None (unbounded features) or a pair (low, high), got {value!r}"
        )
    low = _real(f"{name}[0]", value[0], "(the lowest valid input value)", lambda v: True)
    high = _real(f"{name}[1]", value[1], "(the highest valid input value)", lambda v: True)
    if not low < high:
        raise ValueError(f"{name} must be ordered, (low, high) with low < high, got {value!r}")
    return (low, high)


def _trades_options(
    beta: Any, eps: Any, alpha: Any, steps: Any, bounds: Any, form: Any
) -> tuple[float, float, float, int, Bounds]:
    """The TRADES options checked and normalised (shared by TrainConfig and trades_loss)."""
    beta = _real("beta", beta, ">= 0", lambda v: v >= 0)
    eps = _real("eps", eps, ">= 0", lambda v: v >= 0)
    alpha = _real("alpha", alpha, "> 0", lambda v: v > 0)
    steps = _integer("steps", steps, 1)
    if form not in TRADES_FORMS:
        raise ValueError(f"form must be one of {TRADES_FORMS}, got {form!r}")
    return beta, eps, alpha, steps, _bounds(bounds)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training call (an active-learning round's Adv-TRAIN).

    Every option is checked when the config is made (a ``TypeError`` for a wrong type, a
    ``ValueError`` for a value out of range, each naming the option and its allowed range);
    NaN and infinity are refused everywhere.

    Attributes
    ----------
    epochs : int
        Epochs per :meth:`Trainer.fit` call (``E``), ``>= 0``.
    batch_size : int
        Mini-batch size (``B``), ``>= 1``.
    lr : float
        Peak learning rate (``gamma``), reached after the warm-up; ``> 0``.
    momentum : float
        SGD momentum (``mu``), ``>= 0``.
    weight_decay : float
        L2 weight decay (``lambda``), ``>= 0``.
    warmup_epochs : float
        Linear warm-up length (``E_w``) in ``[0, epochs]``; then cosine annealing to 0 over the
        remaining epochs. A :meth:`Trainer.fit` call for fewer epochs clips it
        (:meth:`for_epochs`).
    beta : float
        TRADES trade-off, ``>= 0`` (6.0 in the TRADES paper).
    eps, alpha : float or ``INHERIT``
        L-inf radius (``>= 0``) and step (``> 0``) of the TRADES inner attack. Unset
        (:data:`INHERIT`) by default: :meth:`inherit` takes them from the data set (the loop
        does so), and a standalone :class:`Trainer` uses the paper's 4/255 and 2/255
        (:meth:`resolved`). When only ``eps`` is given, ``alpha`` is ``eps / 2`` (the paper's
        ratio).
    steps : int
        Inner attack steps (the paper: 5); ``>= 1`` for adversarial training.
    bounds : (float, float), None or ``INHERIT``
        Valid input range (finite, ``low < high``), ``None`` for unbounded features. Unset by
        default, like ``eps``; standalone, ``(0, 1)``. Adversarial training refuses inputs
        outside it (it never clamps them silently).
    oversample : bool
        Randomly oversample minority classes to the majority class count each epoch (the paper
        does so for imbalanced HAM-10000).
    adversarial : bool
        TRADES (``True``) or plain cross-entropy training.
    amp : bool
        bfloat16 autocast for the forward passes.
    trades : {"official", "fast"}
        How :func:`trades_loss` computes the training loss: the official code's three
        train-mode forward passes (the default, as the paper used it) or fral's two-pass form.
    optimize : bool
        Run the TRADES attack's eval passes on fral's checked eval copy (BatchNorm folded,
        ``channels_last``) and the train-mode passes of convolutional models on
        ``channels_last`` inputs (default ``True``; the same arithmetic up to float rounding,
        see :func:`trades_loss`); ``False`` runs the model as it is, exactly the official
        code's arithmetic.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: float = 1.0
    beta: float = 6.0
    eps: float | str = INHERIT
    alpha: float | str = INHERIT
    steps: int = 5
    bounds: Bounds | str = INHERIT
    oversample: bool = False
    adversarial: bool = True
    amp: bool = False
    trades: str = "official"
    optimize: bool = True

    def __post_init__(self) -> None:
        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        set_("epochs", _integer("epochs", self.epochs, 0))
        set_("batch_size", _integer("batch_size", self.batch_size, 1))
        set_("lr", _real("lr", self.lr, "> 0", lambda v: v > 0))
        set_("momentum", _real("momentum", self.momentum, ">= 0", lambda v: v >= 0))
        set_("weight_decay", _real("weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0))
        set_(
            "warmup_epochs",
            _real(
                "warmup_epochs",
                self.warmup_epochs,
                f"in [0, epochs] = [0, {self.epochs}]",
                lambda v: 0 <= v <= self.epochs,
            ),
        )
        for name in ("oversample", "adversarial", "amp", "optimize"):
            _flag(name, getattr(self, name))
        set_("beta", _real("beta", self.beta, ">= 0", lambda v: v >= 0))
        if not self.adversarial:
            set_("steps", _integer("steps", self.steps, 0))
        else:
            set_("steps", _integer("steps", self.steps, 1))
        if not _unset(self.eps):
            set_("eps", _real("eps", self.eps, ">= 0 (or INHERIT)", lambda v: v >= 0))
        if not _unset(self.alpha):
            set_("alpha", _real("alpha", self.alpha, "> 0 (or INHERIT)", lambda v: v > 0))
        if not _unset(self.bounds):
            set_("bounds", _bounds(self.bounds))
        if self.trades not in TRADES_FORMS:
            raise ValueError(f"trades must be one of {TRADES_FORMS}, got {self.trades!r}")

    @property
    def threat_model_set(self) -> bool:
        """Whether ``eps``, ``alpha`` and ``bounds`` all have values (none is ``INHERIT``)."""
        return not any(_unset(value) for value in (self.eps, self.alpha, self.bounds))

    def inherit(
        self, eps: float, alpha: float | None = None, bounds: Bounds = (0.0, 1.0)
    ) -> TrainConfig:
        """This config with its unset threat-model fields taken from a data set's.

        Fields the config sets are kept. ``alpha``: the config's; else, when the config sets
        ``eps``, ``eps / 2``; else the data set's ``alpha`` (``eps / 2`` if it has none).

        Parameters
        ----------
        eps : float
            The data set's L-inf radius.
        alpha : float, optional
            The data set's step (default ``eps / 2``).
        bounds : (float, float) or None
            The data set's valid input range.

        Returns
        -------
        TrainConfig
            A config whose ``threat_model_set`` is true.
        """
        own_eps = not _unset(self.eps)
        new_eps = self.eps if own_eps else eps
        if not _unset(self.alpha):
            new_alpha = self.alpha
        elif own_eps or alpha is None:
            new_alpha = new_eps / 2
        else:
            new_alpha = alpha
        new_bounds = bounds if _unset(self.bounds) else self.bounds
        return replace(self, eps=new_eps, alpha=new_alpha, bounds=new_bounds)

    def resolved(self) -> TrainConfig:
        """Unset threat-model fields filled with the paper's: eps 4/255, alpha eps/2, (0, 1)."""
        return self.inherit(4 / 255, 2 / 255, (0.0, 1.0))

    def for_epochs(self, epochs: int) -> TrainConfig:
        """This config for a call of ``epochs`` epochs, the warm-up clipped to it.

        :meth:`Trainer.fit` uses it for ``fit(data, epochs=k)``: a ``k`` shorter than
        ``warmup_epochs`` warms up over all ``k`` epochs (the learning rate then ends at its
        peak) instead of failing. Cheap; call it when a run starts to check ``epochs``.

        Parameters
        ----------
        epochs : int
            Epochs of the call, ``>= 0``.

        Returns
        -------
        TrainConfig
            ``epochs`` set, ``warmup_epochs = min(warmup_epochs, epochs)``.
        """
        epochs = _integer("epochs", epochs, 0)
        return replace(self, epochs=epochs, warmup_epochs=min(self.warmup_epochs, epochs))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (an unset field is the string ``"inherit"``)."""
        out = asdict(self)
        if self.bounds is not None and not _unset(self.bounds):
            out["bounds"] = list(self.bounds)
        return out

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`.

        A dict without ``trades`` was written by a fral that had only the two-pass TRADES
        form; it gives ``trades="fast"``, so that a resumed run keeps computing the same loss.
        Likewise a dict without ``optimize`` gives ``optimize=False`` (the model run as it is).
        """
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict from TrainConfig.to_dict, got {options!r}")
        bounds = options.get("bounds", INHERIT)
        if bounds is not None and not _unset(bounds):
            bounds = tuple(bounds)
        return cls(**{"trades": "fast", "optimize": False, **options, "bounds": bounds})


#: The supplementary's per-data-set settings (SGD, cosine with warm-up, TRADES at 4/255).
_PAPER_THREAT = {"eps": 4 / 255, "alpha": 2 / 255, "bounds": (0.0, 1.0)}
PRESETS: dict[str, TrainConfig] = {
    "utkface": TrainConfig(epochs=70, batch_size=32, lr=0.1, warmup_epochs=10, **_PAPER_THREAT),
    "cinic10": TrainConfig(epochs=100, batch_size=64, lr=0.1, warmup_epochs=10, **_PAPER_THREAT),
    "ham10000": TrainConfig(
        epochs=50, batch_size=32, lr=0.02, warmup_epochs=5, oversample=True, **_PAPER_THREAT
    ),
}
"""The supplementary's per-data-set settings (SGD, cosine with warm-up, TRADES at 4/255)."""


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at ``step`` of ``total``: linear warm-up, then cosine to 0.

    The factor rises as ``(step + 1) / warmup`` over the first ``warmup`` steps and then
    follows ``0.5 * (1 + cos(pi * progress))`` over the rest.
    """
    if step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / remaining)))


_DTYPE_METHODS = {
    torch.float32: "float()",
    torch.float64: "double()",
    torch.float16: "half()",
    torch.bfloat16: "bfloat16()",
}


def _convert(dtype: torch.dtype) -> str:
    return _DTYPE_METHODS.get(dtype, f"to({dtype})")


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (or buffer), if any."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _check_model(model: nn.Module, name: str = "model") -> None:
    """A trainable model with real, finite weights; else a ``ValueError`` naming ``name``."""
    check_module(model, name)
    named = [*model.named_parameters(), *model.named_buffers()]
    if any(tensor.is_meta for _, tensor in named):
        raise ValueError(
            f"{name} is on the meta device (its tensors hold no values): materialise it, e.g. "
            f"{name}.to_empty(device='cpu') and then load_state_dict(...) with real weights"
        )
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError(
            f"{name} has no trainable parameter (none has requires_grad=True): unfreeze the "
            "layers to train with parameter.requires_grad_(True)"
        )
    floating = [(key, tensor) for key, tensor in named if tensor.is_floating_point()]
    if floating:
        finite = torch.stack([torch.isfinite(tensor.detach()).all() for _, tensor in floating])
        if not bool(finite.all()):
            bad = [key for (key, _), ok in zip(floating, finite.tolist(), strict=True) if not ok]
            raise ValueError(
                f"{name} has NaN or infinite weights (in {', '.join(bad[:3])}): load a finite "
                "checkpoint (a diverged training run leaves them; lower lr)"
            )


def _check_inputs(
    x: Any, name: str, model: nn.Module, bounds: Bounds, *, device: torch.device | None = None
) -> None:
    """Floating-point, finite inputs of the model's dtype, inside ``bounds``.

    ``device``: where ``x`` must be (``None``: anywhere but ``meta``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, ...), got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have a leading sample dimension (N, ...), got a scalar")
    if x.is_meta:
        raise ValueError(
            f"{name} is on the meta device (it holds no values): pass real tensors, "
            "e.g. on 'cpu' or 'cuda'"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}: for 8-bit images pass "
            "x.float() / 255 (values in [0, 1], the default bounds), or pass x.float() and set "
            "bounds to the values' valid range (None for unbounded features)"
        )
    dtype = _model_dtype(model)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} is {x.dtype} but the model's weights are {dtype}: convert one to the other, "
            f"model.{_convert(x.dtype)} or x.{_convert(dtype)}"
        )
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but the model is on {device}: x.to({device!r})")
    if x.numel() == 0:
        return
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"{name} holds NaN or infinite values: clean or impute them before training"
        )
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        raise ValueError(
            f"{name} lies outside bounds {bounds}: its values span [{low:.6g}, {high:.6g}]. "
            "Set bounds to the inputs' valid range (None for unbounded features), or rescale "
            "the inputs (fral never clamps training data)"
        )


def _logits(output: Any, rows: int) -> torch.Tensor:
    """The model's output, checked to be a logits tensor of shape ``(rows, C)``."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"the model must return a logits tensor of shape (N, C), but it returned a "
            f"{type(output).__name__}: wrap it so that forward returns the logits (e.g. "
            "out[0] or out['logits'])"
        )
    if output.dim() != 2 or output.shape[0] != rows or not output.is_floating_point():
        raise ValueError(
            f"the model must return floating-point logits of shape ({rows}, C), got "
            f"{output.dtype} of shape {tuple(output.shape)}"
        )
    return output


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float = 6.0,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    amp: bool | torch.dtype = False,
    form: str = "official",
    optimize: bool = True,
) -> torch.Tensor:
    """The TRADES loss (Zhang et al. 2019), computed as the official code (``trades.py``).

    1. Attack, model in eval mode: ``x' = x + 0.001 * N(0, 1)``, then ``steps`` times
       ``x' <- clamp(min(max(x' + alpha * sign(grad), x - eps), x + eps), bounds)``, the
       gradient that of ``KL(p(x) || p(x'))`` (summed) w.r.t. ``x'``, ``p(x)`` the softmax
       of the clean eval-mode logits; a last clamp to ``bounds``.
    2. Loss, model in train mode: ``CE(f(x), y) + beta * (1 / N) * KL(p(x) || p(x'))``, the
       KL summed, the clean distribution *not* detached (gradients flow through both).

    ``form="official"`` (default) runs the official code's three train-mode forward passes,
    in its order: ``f(x)`` for the cross-entropy, then ``f(x')`` and ``f(x)`` again for the
    KL term. BatchNorm statistics are updated three times (clean, adversarial, clean) and
    Dropout draws a mask for each pass (two different masks on the clean input).
    ``form="fast"`` runs two passes, ``f(x)`` and ``f(x')``, and uses the one clean output
    for both terms: one forward and backward pass less, BatchNorm statistics updated twice
    (clean, adversarial), one Dropout mask on the clean input.

    Remaining differences from the official code, in both forms:

    - The Gaussian start comes from ``generator`` (on its device); with ``generator=None``
      it is drawn, as in the official code, from torch's global CPU generator.
    - ``bounds`` replaces the official ``[0, 1]`` (``None``: no clamp, for features);
      ``eps``, ``alpha``, ``steps`` and ``beta`` default to the paper's 4/255, 2/255, 5 and
      6.0 instead of the official function's 0.031, 0.003, 10 and 1.0.
    - The clean eval-mode distribution of the attack is computed once, without a graph,
      instead of at each step (eval mode: the same values).
    - During the attack the model's parameters have ``requires_grad`` off (gradients are taken
      w.r.t. ``x'`` only, as the official ``torch.autograd.grad`` call; ``.grad`` is never
      touched), and afterwards every submodule's train/eval flag is restored as it was,
      where the official code leaves the whole model in train mode.
    - The official code calls ``optimizer.zero_grad()``; this function leaves that to the
      caller (:class:`Trainer` does it).
    - ``amp`` runs the forward passes under autocast (the official code has none); the
      losses are computed in float32.
    - ``optimize=True`` (default) runs the attack's eval-mode passes on fral's eval copy of
      the model (:func:`fral._modules.evaluation_view`: BatchNorm folded into the
      convolutions, ``channels_last``, checked against the model's own eval forward at each
      call, with a fall-back to the model itself), as fral's PGD does. The copy computes the
      same function up to float rounding, so a gradient component within rounding of zero can
      take the other sign: in float32 a few pixels in 10,000 of ``x'`` then differ by
      ``2 * alpha``; in float64 the two agree. ``optimize=False`` runs the model itself.

    Parameters
    ----------
    model : nn.Module
        The model being trained, returning logits ``(N, C)``. Its BatchNorm statistics are
        updated by the train-mode passes, as in training; its flags are restored.
    x : torch.Tensor, shape (N, ...)
        Clean inputs on the model's device, of the model's dtype, finite, inside ``bounds``.
    y : torch.Tensor, shape (N,), int64
        Labels in ``[0, C)``.
    beta : float, default 6.0
        Trade-off, ``>= 0``.
    eps, alpha : float
        Attack radius (``>= 0``) and step (``> 0``).
    steps : int, default 5
        Attack steps, ``>= 1``.
    bounds : (float, float) or None, default (0, 1)
    generator : torch.Generator, optional
        Source of the Gaussian start.
    amp : bool or torch.dtype, default False
        Autocast for the forward passes.
    form : {"official", "fast"}, default "official"
        Three train-mode passes as the official code, or two.
    optimize : bool, default True
        The attack on fral's checked eval copy (see above) or on the model itself.

    Returns
    -------
    torch.Tensor
        Scalar loss with a graph to the model's parameters.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it: integer inputs, a dtype or device mismatch, the
        ``meta`` device, NaN/inf in ``x`` or the weights, ``x`` outside ``bounds``, labels
        outside the model's classes, a model that returns no logits tensor.
    """
    _check_model(model, "model")
    beta, eps, alpha, steps, bounds = _trades_options(beta, eps, alpha, steps, bounds, form)
    device = model_device(model)
    _check_inputs(x, "x", model, bounds, device=device)
    if x.shape[0] == 0:
        raise ValueError("x is empty: trades_loss needs at least one sample")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise TypeError(
            f"y must be an int64 tensor of labels (y.long()), got "
            f"{getattr(y, 'dtype', type(y).__name__)}"
        )
    if y.shape != x.shape[:1]:
        raise ValueError(
            f"y must have shape ({x.shape[0]},), one label per x, got {tuple(y.shape)}"
        )
    if y.device != device:
        raise ValueError(f"y is on {y.device} but the model is on {device}: y.to({device!r})")
    return _trades(
        model,
        x,
        y,
        beta=beta,
        eps=eps,
        alpha=alpha,
        steps=steps,
        bounds=bounds,
        generator=generator,
        amp=amp,
        form=form,
        check_labels=True,
        optimize=_flag("optimize", optimize),
    )


def _trades(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float,
    eps: float,
    alpha: float,
    steps: int,
    bounds: Bounds,
    generator: torch.Generator | None,
    amp: bool | torch.dtype,
    form: str,
    check_labels: bool = False,
    noise_rows: tuple[int, int, int] | None = None,
    channels_last: bool = False,
    optimize: bool = True,
) -> torch.Tensor:
    """:func:`trades_loss` on checked arguments (``check_labels``: check ``y`` against C).

    ``noise_rows = (start, stop, rows)``: ``x`` is rows ``start:stop`` of a batch of ``rows``
    (one rank's part of a global batch); the attack's random start is drawn for the whole
    batch and cut, so the rows get the noise one process gives them. ``channels_last``: the
    train-mode passes take their 4-D inputs in ``channels_last`` (see :func:`_channels_last`).
    """
    device = model_device(model)
    x = x.detach()
    with preserved_mode(model, training=False), _frozen_parameters(model):
        x_adv = _trades_attack(
            model,
            x,
            y if check_labels else None,
            eps=eps,
            alpha=alpha,
            steps=steps,
            bounds=bounds,
            generator=generator,
            amp=amp,
            noise_rows=noise_rows,
            optimize=optimize,
        )
    rows = x.shape[0]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        x_adv = x_adv.contiguous(memory_format=torch.channels_last)
    with preserved_mode(model, training=True), autocast(device, amp):
        logits = _logits(model(x), rows).float()
        logits_adv = _logits(model(x_adv), rows).float()
        target = _logits(model(x), rows).float() if form == "official" else logits
    natural = F.cross_entropy(logits, y)
    robust = (1.0 / rows) * F.kl_div(
        F.log_softmax(logits_adv, dim=1), F.softmax(target, dim=1), reduction="sum"
    )
    return natural + beta * robust


def _trades_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    *,
    eps: float,
    alpha: float,
    steps: int,
    bounds: Bounds,
    generator: torch.Generator | None,
    amp: bool | torch.dtype,
    noise_rows: tuple[int, int, int] | None = None,
    optimize: bool = True,
) -> torch.Tensor:
    """TRADES' inner maximisation with the official arithmetic, in eval mode.

    With ``optimize``, the eval-mode passes run on fral's checked eval view of the model
    (:func:`fral._modules.evaluation_view`: BatchNorm folded into the convolutions, parameters
    frozen, ``channels_last``; checked against the model's own eval forward at each call and
    replaced by a safer version where they differ), as fral's PGD does: the same function of
    ``x'`` up to float rounding, so a gradient component within rounding of zero can change
    sign (a few pixels in 10,000 in float32; none in float64). ``y``, when given, is checked
    against the width of the clean logits. ``noise_rows``: see :func:`_trades`.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("TRADES needs gradients: it cannot run inside torch.inference_mode()")
    device = model_device(model)
    with evaluation_view(model, optimize=optimize) as view:
        with torch.no_grad(), autocast(device, amp):
            clean = _logits(view(x), x.shape[0])
        if y is not None:
            check_labels(y, clean.shape[1], "y")
        target = F.softmax(clean.float(), dim=1)
        noise_device = "cpu" if generator is None else generator.device
        if noise_rows is None:
            noise = 0.001 * torch.randn(x.shape, generator=generator, device=noise_device)
        else:
            start, stop, rows = noise_rows
            shape = (rows, *x.shape[1:])
            noise = 0.001 * torch.randn(shape, generator=generator, device=noise_device)
            noise = noise[start:stop]
        x_adv = x + noise.to(device=x.device, dtype=x.dtype)
        low, high = x - eps, x + eps
        for _ in range(steps):
            x_adv.requires_grad_()
            with torch.enable_grad(), autocast(device, amp):
                logits = _logits(view(x_adv), x.shape[0])
                loss = F.kl_div(F.log_softmax(logits.float(), dim=1), target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            x_adv = x_adv.detach() + alpha * torch.sign(grad)
            x_adv = torch.min(torch.max(x_adv, low), high)
            if bounds is not None:
                x_adv = torch.clamp(x_adv, bounds[0], bounds[1])
    if bounds is not None:
        x_adv = torch.clamp(x_adv, bounds[0], bounds[1])
    return x_adv.detach().contiguous()


def _channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the train-mode passes may run in ``channels_last`` (a speed-up for convolutions
    on CPU and GPU): the model's 4-D weights and its 4-D inputs in that layout, same values.

    Only for 4-D inputs to a model with 2-D convolutions, and only where the model's eval
    forward on a few rows gives the same output (float rounding) in the two layouts, without
    an error: a model that flattens features with ``.view`` fails on ``channels_last``
    features, and is then trained in its own layout. Leaves no trace: eval mode, no
    gradient, the weights back in their layout.
    """
    if x.dim() != 4 or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    sample = x[:2].detach()
    try:
        with preserved_mode(model, training=False), torch.no_grad():
            plain = model(sample)
            with _channels_last_weights(model, True):
                other = model(sample.contiguous(memory_format=torch.channels_last))
    except Exception:
        return False
    return (
        isinstance(plain, torch.Tensor)
        and isinstance(other, torch.Tensor)
        and bool(_close(other, plain))
    )


@contextlib.contextmanager
def _channels_last_weights(model: nn.Module, enabled: bool) -> Iterator[None]:
    """The model's contiguous 4-D parameters in ``channels_last`` for the block, then back
    with their own strides (parameters in any other layout are left alone).

    The same ``Parameter`` objects (an optimiser keeps them) with the same values; only the
    memory layout of their data, and of their ``.grad``, changes during the block. A weight
    whose ``channels_last`` strides are ambiguous (one input channel, or a 1x1 kernel: it is
    contiguous in both formats) is given the explicit ``channels_last`` strides, which is what
    makes the convolution's output ``channels_last``: ``Tensor.contiguous`` would keep it as
    it is, and a first convolution on grey-scale images would run, with all that follows it,
    in the slower contiguous layout.
    """
    converted = []  # (parameter, its strides, its grad's strides afterwards)
    if enabled:
        for parameter in model.parameters():
            if parameter.dim() != 4 or not parameter.is_contiguous():
                continue
            data = parameter.data.to(memory_format=torch.channels_last)
            if data.stride() == parameter.stride():
                continue
            grad = parameter.grad  # a grad made in the block takes the weight's strides after
            grad_stride = parameter.stride() if grad is None else grad.stride()
            if grad is not None and grad.is_contiguous():  # grads follow their weight's layout
                parameter.grad = grad.to(memory_format=torch.channels_last)
            converted.append((parameter, parameter.stride(), grad_stride))
            parameter.data = data
    try:
        yield
    finally:
        for parameter, stride, grad_stride in converted:
            parameter.data = _restrided(parameter.data, stride)
            if parameter.grad is not None:
                parameter.grad = _restrided(parameter.grad, grad_stride)


def _restrided(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """``tensor``'s values with the given strides (``tensor`` itself if it has them)."""
    if tensor.stride() == stride:
        return tensor
    out = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=tensor.device)
    return out.copy_(tensor)


def _average_buffers(model: nn.Module, context: Context) -> None:
    """Average the floating buffers (BatchNorm's running statistics) over the ranks, in
    place, so that every rank holds the same model after a fit."""
    for buffer in model.buffers():
        if buffer.is_floating_point():
            buffer.copy_(context.all_reduce(buffer) / context.world_size)


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on the parameters for the block, then restore each flag.

    The inner attack only needs gradients w.r.t. the input; with the parameters frozen,
    autograd neither stores what their gradients would need nor computes them.
    """
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _labelled(data: Pool | tuple[torch.Tensor, torch.Tensor]) -> tuple[Pool, torch.Tensor]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        size = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() else len(y)
        data = Pool(x, torch.zeros(size, dtype=torch.long), labels=y)
    if not isinstance(data, Pool):
        raise TypeError(f"data must be a labelled fral.Pool or (x, y), got {type(data).__name__}")
    return data, data.require_labels("the training data")


def _split(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` in batches of ``batch_size``; a last batch of one sample joins the one before."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def _num_batches(size: int, batch_size: int) -> int:
    """``len(_split(range(size), batch_size))``."""
    count = math.ceil(size / batch_size)
    return count - 1 if count > 1 and size % batch_size == 1 else count


@dataclass
class Trainer:
    """SGD trainer whose optimiser state survives from one :meth:`fit` to the next.

    Batches: each epoch visits the samples in a fresh random order (or a class-balanced
    resample with ``oversample``) in batches of ``batch_size``; when the last batch would hold
    a single sample it joins the one before (a batch of ``batch_size + 1``), so no sample is
    dropped and BatchNorm never sees a lone sample in train mode (``BatchNorm1d`` cannot
    normalise one). Only ``batch_size=1`` or a single labelled sample then leaves a batch of
    one; a model whose BatchNorm cannot take it gets a ``ValueError`` naming ``batch_size``.

    Checks: the options when the :class:`TrainConfig` is made; at the start of each
    :meth:`fit`, before any step, the model (no ``meta`` tensors, finite weights, something
    to train), the inputs (floating point, the model's dtype, finite, inside ``bounds`` for
    adversarial training: the whole tensor once, or each batch of a ``Dataset``-backed pool
    as it is loaded), and, from one eval-mode forward pass on the first samples (no grad, no
    BatchNorm update), that the model returns an ``(N, C)`` logits tensor and that every
    label lies in ``[0, C)``. A NaN or infinite loss stops training before its optimiser step
    with a :class:`NonFiniteLossError` naming the epoch and batch.

    Parameters
    ----------
    model : nn.Module
        The model to train, in place. Its train/eval flags are restored after each fit.
    config : TrainConfig
        Options; ``fit(epochs=...)`` can override the epoch count per call.
    random_state : int, torch.Generator or None
        Seed of every random draw of the training.
    progress : bool or None
        A bar per epoch: ``True``/``False`` as asked; ``None`` (default) in a terminal only
        (or as ``FRAL_PROGRESS`` says; see :func:`fral.show_progress`).

    Notes
    -----
    With ``config.optimize`` (the default), TRADES' attack runs on fral's checked eval copy
    of the model, and the train-mode passes of a convolutional model run with its 4-D
    weights and inputs in ``channels_last`` where the first samples' eval output is the same
    in that layout (the weights go back to their layout at the end of each fit, the same
    ``Parameter`` objects throughout): the same results up to float rounding
    (:func:`trades_loss`).

    Under a process group (``torchrun``; see :mod:`fral.distributed`), every rank calls
    :meth:`fit` with the same data and the training is data-parallel: every rank draws the
    same epoch order from rank 0's generator state, takes its contiguous part of each global
    batch of ``batch_size`` (rows ``[r b / W, (r + 1) b / W)``), weights its mean loss by its
    share of the rows, and one all-reduce per step sums the gradients (and the loss), so each
    step is the one-process step on the whole batch up to float rounding; TRADES' random start
    is drawn for the whole batch and cut, so each sample gets its one-process noise. Unlike
    ``DistributedDataParallel`` the model is never wrapped (it is the caller's model
    throughout, and the all-reduce comes after the backward pass rather than overlapping it).
    What differs from one process: BatchNorm normalises with each rank's part of the batch
    (as DDP without ``SyncBatchNorm``) and its running statistics are averaged over the ranks
    at the end of each :meth:`fit`, so every rank holds the same model; Dropout masks are
    drawn per rank.

    Examples
    --------
    >>> trainer = Trainer(model, TrainConfig(epochs=5), random_state=0)  # doctest: +SKIP
    >>> trainer.fit(labelled_pool)                                      # doctest: +SKIP
    """

    model: nn.Module
    config: TrainConfig = field(default_factory=TrainConfig)
    random_state: RandomState = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        check_module(self.model, "model")
        if not isinstance(self.config, TrainConfig):
            raise TypeError(
                f"config must be a fral.training.TrainConfig, got {type(self.config).__name__}"
            )
        check_progress(self.progress)
        if not any(True for _ in self.model.parameters()):
            raise ValueError("model has no parameters to train (a stateless module)")
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=self.config.lr,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )
        self.generator = make_generator(resolve_seed(self.random_state))
        self.epochs_done = 0
        self._channels_last = False  # decided per fit by _channels_last (see _probe)

    def state_dict(self) -> dict[str, Any]:
        """Optimiser state, generator state and epoch count (not the model's weights).

        A copy: later training does not change it (``optimizer.state_dict()`` alone would hand
        out the live momentum buffers).
        """
        return {
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "epochs_done": self.epochs_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epochs_done = int(state["epochs_done"])

    def _epoch_order(self, labels: torch.Tensor, config: TrainConfig) -> torch.Tensor:
        """Sample order of one epoch: a permutation, or a shuffled class-balanced resample."""
        if not config.oversample:
            return torch.randperm(len(labels), generator=self.generator)
        counts = torch.bincount(labels)
        target = int(counts.max())
        parts = []
        for cls in torch.nonzero(counts).flatten().tolist():
            members = torch.nonzero(labels == cls).flatten()
            extra = torch.randint(len(members), (target - len(members),), generator=self.generator)
            parts.append(torch.cat([members, members[extra]]))
        order = torch.cat(parts)
        return order[torch.randperm(len(order), generator=self.generator)]

    def _config(self, config: TrainConfig | None, epochs: int | None) -> TrainConfig:
        if config is None:
            config = self.config
        elif not isinstance(config, TrainConfig):
            raise TypeError(
                f"config must be a fral.training.TrainConfig, got {type(config).__name__}"
            )
        config = config.resolved()
        return config if epochs is None else config.for_epochs(epochs)

    def _probe(self, pool: Pool, labels: torch.Tensor, config: TrainConfig) -> None:
        """One eval-mode forward on the first two samples: logits ``(N, C)``, labels in
        ``[0, C)``; whether the train-mode passes may run in ``channels_last``."""
        device = model_device(self.model)
        x = pool.get_inputs(torch.arange(min(len(pool), 2))).to(device)
        with (
            preserved_mode(self.model, training=False),
            torch.no_grad(),
            autocast(device, config.amp),
            _lone_sample_hint(x, config),
        ):
            logits = _logits(self.model(x), x.shape[0])
        check_labels(labels, logits.shape[1], "the training labels")
        self._channels_last = config.optimize and _channels_last(self.model, x)

    def fit(
        self,
        data: Pool | tuple[torch.Tensor, torch.Tensor],
        *,
        epochs: int | None = None,
        config: TrainConfig | None = None,
    ) -> list[dict[str, float]]:
        """Train with a fresh warm-up + cosine cycle, from the current weights and optimiser.

        Parameters
        ----------
        data : Pool or (x, y)
            Labelled training samples, ``x`` of shape ``(N, ...)`` (floating point, the
            model's dtype), ``y`` int64 of shape ``(N,)`` in ``[0, C)``; ``N >= 1``.
        epochs : int, optional
            Override of the epoch count for this call (``>= 0``). A count shorter than the
            config's ``warmup_epochs`` clips the warm-up to it (:meth:`TrainConfig.for_epochs`):
            a fine-tuning call never fails for it.
        config : TrainConfig, optional
            Options for this call (e.g. a gentler fine-tuning schedule); default the
            trainer's ``config``. The optimiser's momentum buffers carry over either way.

        Returns
        -------
        list of dict
            Per epoch: ``epoch``, ``loss`` (mean), ``lr`` (last), ``seconds``.

        Raises
        ------
        TypeError, ValueError
            A bad argument, named, before any training step (see the class docstring).
        NonFiniteLossError
            A NaN or infinite loss; the model keeps the weights of the last finite step.
        """
        config = self._config(config, epochs)
        pool, labels = _labelled(data)
        if len(pool) == 0:
            raise ValueError("data is empty: there are no labelled samples to train on")
        _check_model(self.model)
        device = model_device(self.model)
        bounds = config.bounds if config.adversarial else None
        per_batch = not isinstance(pool.inputs, torch.Tensor)
        if not per_batch:
            _check_inputs(pool.inputs, "data", self.model, bounds)
        counts = torch.bincount(labels)
        epoch_size = int(counts.max()) * int((counts > 0).sum()) if config.oversample else len(pool)
        batches_per_epoch = _num_batches(epoch_size, config.batch_size)
        total = config.epochs * batches_per_epoch
        warmup = round(config.warmup_epochs * batches_per_epoch)
        history = []
        context = current()
        if (context is not None and config.epochs) and any(
            isinstance(module, nn.SyncBatchNorm) for module in self.model.modules()
        ):
            # SyncBatchNorm's forward is a collective: a rank with no rows of a global batch
            # would skip it and leave the others waiting. Every rank sees the same sizes.
            smallest = min(map(len, _split(torch.arange(epoch_size), config.batch_size)))
            if smallest < context.world_size:
                raise ValueError(
                    f"the model holds SyncBatchNorm, whose forward pass every one of the "
                    f"{context.world_size} ranks must run, but a global batch of this fit "
                    f"has {smallest} rows (batch_size {config.batch_size}, {epoch_size} "
                    "samples per epoch): use batch_size and a labelled set of at least the "
                    "world size, with no last batch smaller than it"
                )
        # Dropout draws from the global RNG: fork it so training is reproducible from our seed
        # and the caller's global RNG stream is left as it was.
        devices = [device] if device.type == "cuda" else []
        with (
            contextlib.ExitStack() as layout,
            torch.random.fork_rng(devices=devices),
            preserved_mode(self.model, training=True),
        ):
            if per_batch:
                _check_inputs(
                    pool.get_inputs(torch.arange(min(len(pool), config.batch_size))),
                    "data",
                    self.model,
                    bounds,
                )
            self._probe(pool, labels, config)
            layout.enter_context(_channels_last_weights(self.model, self._channels_last))
            if context is not None:  # every rank draws rank 0's batches and random starts
                state = context.broadcast(self.generator.get_state(), 0)
                self.generator.set_state(state.cpu())
            # Drawn after the checks: a refused call leaves the trainer's generator as it was.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.generator)))
            step = 0
            for _ in range(config.epochs):
                start, losses = time.perf_counter(), []
                batches = _split(self._epoch_order(labels, config), config.batch_size)
                bar = progress_bar(
                    batches,
                    progress=self.progress,
                    leave=False,
                    desc=f"{'TRADES' if config.adversarial else 'train'} epoch "
                    f"{self.epochs_done + 1}",
                    unit="batch",
                )
                for number, index in enumerate(bar, start=1):
                    lr = config.lr * warmup_cosine(step, total, warmup)
                    for group in self.optimizer.param_groups:
                        group.update(
                            lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
                        )
                    if context is not None:
                        loss = self._distributed_step(pool, labels, index, config, context)
                    else:
                        x = pool.get_inputs(index)
                        if per_batch:
                            _check_inputs(x, "data", self.model, bounds)
                        x = x.to(device, non_blocking=True)
                        y = labels[index].to(device, non_blocking=True)
                        loss = self._loss(x, y, config)
                    if not bool(torch.isfinite(loss)):
                        raise NonFiniteLossError(
                            f"the training loss is {float(loss.detach())} at epoch "
                            f"{self.epochs_done + 1}, batch {number} of {len(batches)} "
                            f"(lr {lr:.4g}): lower lr, or check the inputs and labels; the "
                            "model keeps the weights of the last finite step"
                        )
                    if context is None:
                        self.optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                    self.optimizer.step()
                    losses.append(loss.detach())
                    step += 1
                self.epochs_done += 1
                history.append(
                    {
                        "epoch": self.epochs_done,
                        "loss": float(torch.stack(losses).mean()),
                        "lr": lr,
                        "seconds": time.perf_counter() - start,
                    }
                )
            if context is not None:
                _average_buffers(self.model, context)
        return history

    def _distributed_step(
        self,
        pool: Pool,
        labels: torch.Tensor,
        index: torch.Tensor,
        config: TrainConfig,
        context: Context,
    ) -> torch.Tensor:
        """This rank's part of one global batch: forward, backward, gradients summed.

        Rank ``r`` takes rows ``[r b / W, (r + 1) b / W)`` of the global batch of ``b``; its
        mean loss is weighted by its share of the rows, so the gradients summed over the
        ranks (one all-reduce of all gradients and the loss) are those of the global batch's
        mean loss. Returns the global batch's loss, the same on every rank.
        """
        device = model_device(self.model)
        rows = index.numel()
        start = context.rank * rows // context.world_size
        stop = (context.rank + 1) * rows // context.world_size
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        if stop > start:  # a global batch smaller than the world leaves some ranks idle
            x = pool.get_inputs(index[start:stop])
            if not isinstance(pool.inputs, torch.Tensor):
                _check_inputs(x, "data", self.model, config.bounds if config.adversarial else None)
            x = x.to(device, non_blocking=True)
            y = labels[index[start:stop]].to(device, non_blocking=True)
            local = self._loss(x, y, config, noise_rows=(start, stop, rows))
            loss = local * ((stop - start) / rows)
            if bool(torch.isfinite(loss)):
                loss.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
        dtype = grads[0].dtype if grads else loss.dtype
        flat = torch.cat(
            [g.reshape(-1).to(dtype) for g in grads] + [loss.detach().reshape(1).to(dtype)]
        )
        flat = context.all_reduce(flat)
        offset = 0
        for parameter, grad in zip(parameters, grads, strict=True):
            size = grad.numel()
            parameter.grad = flat[offset : offset + size].view_as(grad).to(grad.dtype)
            offset += size
        return flat[-1]

    def _loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        config: TrainConfig,
        noise_rows: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        channels_last = self._channels_last
        with _lone_sample_hint(x, config):
            if config.adversarial:
                return _trades(
                    self.model,
                    x,
                    y,
                    beta=config.beta,
                    eps=config.eps,
                    alpha=config.alpha,
                    steps=config.steps,
                    bounds=config.bounds,
                    generator=self.generator,
                    amp=config.amp,
                    form=config.trades,
                    noise_rows=noise_rows,
                    channels_last=channels_last,
                    optimize=config.optimize,
                )
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(model_device(self.model), config.amp):
                logits = _logits(self.model(x), x.shape[0]).float()
            return F.cross_entropy(logits, y)


@contextlib.contextmanager
def _lone_sample_hint(x: torch.Tensor, config: TrainConfig) -> Iterator[None]:
    """Turn BatchNorm's error on a batch of one sample into one naming ``batch_size``."""
    try:
        yield
    except ValueError as error:
        if x.shape[0] == 1 and "more than 1 value per channel" in str(error):
            raise ValueError(
                "a batch of one sample cannot pass the model's BatchNorm, which normalises "
                "with the batch's own statistics in training: "
                f"use batch_size >= 2 (now {config.batch_size}) and at least 2 labelled samples"
            ) from error
        raise


def adversarial_train(
    model: nn.Module,
    data: Pool | tuple[torch.Tensor, torch.Tensor],
    *,
    random_state: RandomState = None,
    progress: bool | None = None,
    **options: Any,
) -> Trainer:
    """TRADES-train ``model`` in place on labelled ``data``; returns the trainer to continue.

    A bar per epoch in a terminal (``progress=None``, the default; ``True``/``False`` to
    choose; see :func:`fral.show_progress`). ``options`` are :class:`TrainConfig`
    fields (``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``,
    ``warmup_epochs``, ``beta``, ``eps``, ``alpha``, ``steps``, ``bounds``, ``oversample``,
    ``amp``, ``trades``), checked as :class:`TrainConfig` checks them; the inputs are checked
    as :meth:`Trainer.fit` does. Call ``trainer.fit(new_data)`` to fine-tune from the current
    weights and optimiser state.
    """
    trainer = Trainer(model, TrainConfig(adversarial=True, **options), random_state, progress)
    trainer.fit(data)
    return trainer


def standard_train(
    model: nn.Module,
    data: Pool | tuple[torch.Tensor, torch.Tensor],
    *,
    random_state: RandomState = None,
    progress: bool | None = None,
    **options: Any,
) -> Trainer:
    """Cross-entropy training of the auxiliary standard model ``M_S``, in place.

    Same schedule, options and checks as :func:`adversarial_train`, without the attack
    (``bounds`` is then not used, nor checked).
    """
    trainer = Trainer(model, TrainConfig(adversarial=False, **options), random_state, progress)
    trainer.fit(data)
    return trainer
