"""L-infinity PGD, batched, gradient w.r.t. the input only; adapters for other attacks.

The paper's threat model is PGD-5 with ``eps = 4/255`` and step ``alpha = 2/255`` (Madry et
al. 2018). :func:`pgd` runs it on an eval-mode copy of the model (BatchNorm folded, parameters
frozen), so the model handed in keeps its mode, BatchNorm statistics, ``requires_grad`` flags
and ``.grad``. Anywhere fral takes an ``attack`` it accepts a :class:`PGD`, a torchattacks
attack object (``atk(images, labels)``) or a callable ``attack(model, x, y) -> x_adv``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from fral._modules import (
    EvalView,
    autocast,
    check_input_batch,
    check_module,
    evaluation_view,
    model_device,
    output_width,
    preserved_mode,
)

__all__ = [
    "PGD",
    "Attack",
    "CallableAttack",
    "TorchattacksAttack",
    "as_attack",
    "pgd",
]

Bounds = tuple[float, float] | None


@runtime_checkable
class Attack(Protocol):
    """What fral calls an attack: ``attack(model, x, y=None, *, generator=None) -> x_adv``.

    ``y=None`` means: attack the model's own predictions (pool samples have no labels).
    """

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_options(eps: float, alpha: float, steps: int, objective: str, bounds: Bounds) -> None:
    if not _real(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if not _real(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if objective not in ("ce", "kl"):
        raise ValueError(f"objective must be 'ce' or 'kl', got {objective!r}")
    if bounds is not None and not (
        isinstance(bounds, (tuple, list))
        and len(bounds) == 2
        and all(_real(bound) for bound in bounds)
        and bounds[0] < bounds[1]
    ):
        raise ValueError(
            f"bounds must be None or (low, high), finite numbers with low < high; got {bounds!r}"
        )


def _check_inputs(x: torch.Tensor, y: torch.Tensor | None, device: torch.device, bounds: Bounds):
    check_input_batch(x, "x")
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the model is on {device}")
    if bounds is not None and x.numel() and (x.min() < bounds[0] or x.max() > bounds[1]):
        raise ValueError(
            f"x lies outside bounds {tuple(bounds)}: range [{float(x.min())}, {float(x.max())}]; "
            "scale the inputs into bounds or pass the data's own bounds (None if unbounded)"
        )
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != x.shape[:1]:
            raise ValueError(f"y must be an int64 tensor of shape ({x.shape[0]},)")
        if y.device != device:
            raise ValueError(f"y is on {y.device} but the model is on {device}")


def check_labels(y: torch.Tensor, num_classes: int, name: str = "y") -> None:
    """Raise unless every label lies in ``[0, num_classes)`` (the model's output width)."""
    if y.numel() == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) (the model outputs {num_classes} "
            f"logits), got range [{low}, {high}]: relabel the classes 0..C-1 or give the "
            "model one output per class"
        )


def _random_like(x: torch.Tensor, generator: torch.Generator | None, normal: bool) -> torch.Tensor:
    """Standard normal or U(-1, 1) noise shaped like ``x``, drawn on the generator's device."""
    device = x.device if generator is None else generator.device
    shape, dtype = x.shape, x.dtype
    if normal:
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    else:
        noise = torch.rand(shape, generator=generator, device=device, dtype=dtype).mul_(2).sub_(1)
    return noise.to(x.device)


def pgd_on_view(
    view: EvalView,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    objective: str = "ce",
    random_start: bool = True,
    start_std: float | None = None,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    amp: bool | torch.dtype = False,
    clean_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """PGD on an :class:`~fral._modules.EvalView`; ``clean_logits`` skips the clean pass.

    This is the loop behind :func:`pgd`, for callers that attack many batches with one view.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError("PGD needs gradients: it cannot run inside torch.inference_mode()")
    x = x.detach()
    if clean_logits is None and (y is None or objective == "kl"):
        with torch.no_grad(), autocast(view.device, amp):
            clean_logits = view(x)
    if objective == "ce":
        if y is not None and clean_logits is not None:
            check_labels(y, clean_logits.shape[1])
        target = clean_logits.argmax(dim=1) if y is None else y
    else:
        # Probabilities as the target, as TRADES' official code: at its near-zero start the
        # gradient is tiny and its signs follow the exact arithmetic.
        target = F.softmax(clean_logits.detach().float(), dim=1)

    x_adv = x.clone()
    if random_start and start_std is not None:
        # TRADES starts from x + 0.001 N(0, 1) without clamping; every step clamps.
        x_adv.add_(_random_like(x, generator, normal=True), alpha=start_std)
    elif random_start:
        x_adv.add_(_random_like(x, generator, normal=False), alpha=eps)
        if bounds is not None:
            x_adv.clamp_(bounds[0], bounds[1])
    for step in range(steps):
        x_in = x_adv.detach().requires_grad_(True)
        with torch.enable_grad(), autocast(view.device, amp):  # callers may hold no_grad
            logits = view(x_in)
            if step == 0 and objective == "ce" and clean_logits is None:
                check_labels(target, logits.shape[1])
            log_q = F.log_softmax(logits.float(), dim=1)
            if objective == "ce":
                loss = F.nll_loss(log_q, target, reduction="sum")
            else:
                loss = F.kl_div(log_q, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_in)
        x_adv.add_(grad.sign_(), alpha=alpha)
        # Same arithmetic as torchattacks: clamp the offset, then the image.
        x_adv.sub_(x).clamp_(-eps, eps).add_(x)
        if bounds is not None:
            x_adv.clamp_(bounds[0], bounds[1])
    if steps == 0 and bounds is not None:
        x_adv.clamp_(bounds[0], bounds[1])
    return x_adv


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    objective: str = "ce",
    random_start: bool = True,
    start_std: float | None = None,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    amp: bool | torch.dtype = False,
    optimize: bool = True,
) -> torch.Tensor:
    """L-infinity projected gradient descent (Madry et al. 2018).

    Each step moves ``alpha * sign(grad)`` up the loss, then projects onto the ``eps`` ball
    around ``x`` and onto ``bounds``. Gradients are taken w.r.t. the input only
    (``torch.autograd.grad``); the clean logits are computed once, without a graph.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits ``(N, C)``. It is not modified.
    x : torch.Tensor, shape (N, ...)
        Clean inputs on the model's device, inside ``bounds``.
    y : torch.Tensor, shape (N,), int64, optional
        Labels for ``objective="ce"``. ``None`` attacks the model's own clean predictions,
        as needed for unlabelled pool samples.
    eps : float, default 4/255
        L-infinity radius.
    alpha : float, default 2/255
        Step size.
    steps : int, default 5
        Number of steps.
    objective : {"ce", "kl"}, default "ce"
        Cross-entropy against ``y``, or KL(p(x) || p(x')) to the clean prediction (TRADES' inner
        maximisation; ``y`` is ignored).
    random_start : bool, default True
        Start from a random point: uniform in the eps ball (clamped to ``bounds``), or
        ``x + start_std * N(0, 1)``.
    start_std : float, optional
        Use a Gaussian start with this standard deviation, unclamped as in TRADES' official
        code (which uses 0.001); each step then clamps.
    bounds : (float, float) or None, default (0, 1)
        Valid input range (images); ``None`` for unbounded features.
    generator : torch.Generator, optional
        Source of the random start, for reproducible attacks.
    amp : bool or torch.dtype, default False
        Run the model under autocast (``True``: bfloat16). The loss is computed in float32.
    optimize : bool, default True
        Attack an optimised eval copy (see :func:`fral._modules.evaluation_view`).

    Returns
    -------
    torch.Tensor, shape (N, ...)
        Adversarial inputs, detached, same dtype and device as ``x``.
    """
    check_module(model, "model")
    _check_options(eps, alpha, steps, objective, bounds)
    with evaluation_view(model, optimize=optimize) as view:
        _check_inputs(x, y, view.device, bounds)
        return pgd_on_view(
            view,
            x,
            y,
            eps=eps,
            alpha=alpha,
            steps=steps,
            objective=objective,
            random_start=random_start,
            start_std=start_std,
            bounds=bounds,
            generator=generator,
            amp=amp,
        )


@dataclass(frozen=True)
class PGD:
    """A configured :func:`pgd`, callable as ``attack(model, x, y=None, *, generator=None)``.

    Defaults are the paper's PGD-5 threat model: ``eps=4/255``, ``alpha=2/255``, 5 steps.
    See :func:`pgd` for the parameters.
    """

    eps: float = 4 / 255
    alpha: float = 2 / 255
    steps: int = 5
    objective: str = "ce"
    random_start: bool = True
    start_std: float | None = None
    bounds: Bounds = (0.0, 1.0)
    amp: bool | torch.dtype = False
    optimize: bool = True

    def __post_init__(self) -> None:
        _check_options(self.eps, self.alpha, self.steps, self.objective, self.bounds)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`pgd_on_view` (everything but ``optimize``)."""
        opts = asdict(self)
        del opts["optimize"]
        return opts

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return pgd(model, x, y, generator=generator, optimize=self.optimize, **self.options())


def _predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with evaluation_view(model) as view, torch.no_grad():
        return view(x).argmax(dim=1)


@contextlib.contextmanager
def guarded(model: nn.Module) -> Iterator[nn.Module]:
    """Hand ``model`` to foreign code (a user's attack) in eval mode with frozen parameters.

    Whatever that code does, the model comes back as it was: every submodule's train/eval flag,
    ``requires_grad`` flags, ``.grad`` (values and identity) and buffers (BatchNorm statistics).
    """
    parameters = list(model.parameters())
    flags = [parameter.requires_grad for parameter in parameters]
    grads = [
        (parameter.grad, None if parameter.grad is None else parameter.grad.detach().clone())
        for parameter in parameters
    ]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    with preserved_mode(model, training=False):
        try:
            for parameter in parameters:
                parameter.requires_grad_(False)
            yield model
        finally:
            with torch.no_grad():
                for parameter, flag, (grad, saved) in zip(parameters, flags, grads, strict=True):
                    parameter.requires_grad_(flag)
                    if grad is not None and not torch.equal(grad, saved):
                        grad.copy_(saved)
                    parameter.grad = grad
                for buffer, saved in buffers:
                    if not torch.equal(buffer, saved):
                        buffer.copy_(saved)


def _seeded(generator: torch.Generator | None, device: torch.device):
    """Seed torch's global RNG from ``generator`` for the block (restored afterwards), so that a
    foreign attack drawing from the global RNG repeats under the same generator."""
    if generator is None:
        return contextlib.nullcontext()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    devices = [device] if device.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(seed)
    return stack


class CallableAttack:
    """Adapter for a user function ``fn(model, x, y) -> x_adv``; ``y=None`` becomes the
    model's predictions.

    The function gets the model in eval mode with its parameters frozen (see :func:`guarded`):
    the model comes back with its flags, ``.grad`` and BatchNorm statistics as they were, and it
    gets a copy of ``x``. With a ``generator`` torch's global RNG is seeded from it for the call
    (and restored afterwards), so two identical calls give identical results even where the
    function draws random starts from the global RNG."""

    def __init__(self, function: Any) -> None:
        self.function = function

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.function!r})"

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        return self.function(model, x, y)

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        check_module(model, "model")
        check_input_batch(x, "x")
        if x.shape[0] == 0:
            return x.detach().clone()
        if y is None:
            y = _predictions(model, x)
        else:
            check_labels(y, output_width(model, x))
        with guarded(model), _seeded(generator, model_device(model)):
            x_adv = self._attack(model, x.detach().clone(), y)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
            raise ValueError(
                f"the attack returned {type(x_adv).__name__}, not a tensor shaped {tuple(x.shape)}"
            )
        if x_adv.device != x.device or x_adv.dtype != x.dtype:
            raise ValueError(
                f"the attack returned a {x_adv.dtype} tensor on {x_adv.device}; fral needs "
                f"{x.dtype} on {x.device}, like its input"
            )
        if not bool(torch.isfinite(x_adv).all()):
            raise ValueError("the attack returned NaN or infinite inputs")
        return x_adv.detach()


class TorchattacksAttack(CallableAttack):
    """Adapter for a torchattacks attack object (``atk(images, labels)``).

    torchattacks binds an attack to one model; calling it for another model raises a
    ``ValueError`` rather than attacking the wrong one. With ``y=None`` the model's own
    predictions are attacked. The random start follows torchattacks' global RNG, not
    ``generator``. Every submodule's train/eval flag is restored afterwards (torchattacks
    itself restores only the top-level one).
    """

    @property
    def attack(self) -> Any:
        """The wrapped torchattacks attack object."""
        return self.function

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        if getattr(self.attack, "model", None) is not model:
            raise ValueError(
                f"the torchattacks attack {type(self.attack).__name__} is bound to a different "
                "model than the one fral asks it to attack; build it on that model"
            )
        return self.attack(x, y)


def _is_torchattacks(obj: Any) -> bool:
    return any(cls.__module__.startswith("torchattacks") for cls in type(obj).__mro__)


def as_attack(attack: Any = None, *, names: bool = False) -> PGD | CallableAttack:
    """Normalise whatever the user passed as an attack.

    ``None`` gives the paper's :class:`PGD` (PGD-5, 4/255); a :class:`PGD` or an adapter is
    returned as is; a torchattacks object is wrapped in :class:`TorchattacksAttack`; any
    other callable is taken as ``fn(model, x, y) -> x_adv``. With ``names=True`` (the
    evaluation: :func:`fral.evaluate`), the strings ``"pgd"`` (:class:`PGD`) and
    ``"autoattack"`` (:class:`fral.AutoAttack` at 4/255, torchattacks' standard version) are
    accepted too; elsewhere (strategies, scoring) a string is a ``TypeError``, so that an
    attack is always a configured object, never a name that silently means the image
    default.
    """
    if attack is None:
        return PGD()
    if isinstance(attack, str):
        if not names:
            raise TypeError(
                f"attack must be None, fral.PGD, a torchattacks attack or a callable, got the "
                f"string {attack!r}; build one, e.g. fral.PGD(eps=..., bounds=...)"
            )
        if attack.lower() == "pgd":
            return PGD()
        if attack.lower() == "autoattack":
            from fral.autoattack import AutoAttack  # fral.autoattack imports this module

            return AutoAttack()
        raise ValueError(f"attack must be 'pgd' or 'autoattack' when a string, got {attack!r}")
    if isinstance(attack, (PGD, CallableAttack)):
        return attack
    if _is_torchattacks(attack):
        return TorchattacksAttack(attack)
    if callable(attack):
        return CallableAttack(attack)
    raise TypeError(
        "attack must be None, fral.PGD, a torchattacks attack or a callable "
        f"fn(model, x, y) -> x_adv; got {type(attack).__name__}"
    )


def run_attack(
    attack: PGD | CallableAttack,
    model: nn.Module,
    view: EvalView,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    clean_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Attack one batch inside a batched loop that already holds ``view`` of ``model``.

    A :class:`PGD` runs on the view and reuses ``clean_logits``; other attacks run on the
    user's model itself (a torchattacks object is bound to it), labels filled from
    ``clean_logits`` when ``y`` is None.
    """
    if isinstance(attack, PGD):
        _check_inputs(x, y, view.device, attack.bounds)
        return pgd_on_view(
            view, x, y, generator=generator, clean_logits=clean_logits, **attack.options()
        )
    if y is None and clean_logits is not None:
        y = clean_logits.argmax(dim=1)
    return attack(model, x, y, generator=generator)
