"""AutoAttack (Croce & Hein 2020) as an evaluation attack: torchattacks' standard version.

PGD-5 can overstate robustness; the field's standard check is AutoAttack, an ensemble of
parameter-free attacks run one after the other on the samples still correct: APGD-CE,
APGD-T (targeted DLR), FAB-T and Square. fral runs torchattacks' implementation
(``torchattacks.AutoAttack(version="standard", norm="Linf")``; ``pip install torchattacks``)
on an eval-mode copy of the model, seeded, with the data set's ``eps``, and reports the
worst case of PGD and AutoAttack per sample (see :class:`AutoAttack`).

Where fral's runs differ from the reference code (github.com/fra31/auto-attack):

- torchattacks' "standard" version runs 10 iterations for APGD-CE, APGD-T and FAB-T (the
  reference: 100) and targets ``n_classes - 1`` classes in APGD-T and FAB-T (the reference:
  9, the same for 10 classes); Square uses 5000 queries in both. ``AutoAttack(steps=100)``
  gives the reference's iteration count.
- Each batch is attacked independently; a random start depends on the batch it is drawn
  for, as in both implementations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fral._modules import (
    EvalView,
    autocast,
    check_input_batch,
    evaluation_view,
    output_width,
)
from fral.attacks import PGD, CallableAttack, check_labels, guarded, run_attack

__all__ = ["AutoAttack"]

Bounds = tuple[float, float]


def _torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError as error:
        raise ImportError(
            "AutoAttack runs torchattacks' implementation, which fral does not install: "
            "pip install torchattacks"
        ) from error
    return torchattacks


def _optional_int(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be None or an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class _Forward(nn.Module):
    """The module torchattacks attacks: ``forward(u) = run(low + scale * u)``.

    It holds no weight of the model (``run`` is an eval view or a guarded model, kept out of
    the module tree), so torchattacks' ``model.eval()``/``model.train()`` calls reach nothing
    of the user's; the empty parameter only tells torchattacks the device.
    """

    def __init__(
        self, run: Callable[[torch.Tensor], torch.Tensor], low: float, scale: float, device
    ) -> None:
        super().__init__()
        self.__dict__["run"] = run  # not registered as a submodule
        self.low, self.scale = low, scale
        self.anchor = nn.Parameter(torch.empty(0, device=device), requires_grad=False)
        self.eval()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.low == 0.0 and self.scale == 1.0:
            return self.run(u)
        return self.run(self.low + self.scale * u)


def _check_classes(n_classes: int) -> None:
    """The standard version's APGD-T ranks the 4 largest logits (targeted DLR loss)."""
    if n_classes < 4:
        raise ValueError(
            f"n_classes={n_classes}: AutoAttack's standard version needs at least 4 classes "
            "(APGD-T's targeted DLR loss uses the 4 largest logits; the reference code has the "
            "same limit); evaluate this model with PGD (attack=None or 'pgd')"
        )


class AutoAttack(CallableAttack):
    """torchattacks' AutoAttack, standard version, L-infinity, as a fral attack.

    In :func:`fral.evaluate` (``attack=AutoAttack(...)`` or ``attack="autoattack"``) the
    robust figures are the **worst case of PGD and AutoAttack** per sample: a sample counts
    as robust only if it is correct on the clean input, correct under :attr:`pgd`, and
    correct under AutoAttack. Samples already wrong on the clean input or under PGD count as
    non-robust without being attacked again (their robust prediction is PGD's); AutoAttack
    runs only on the samples still correct after PGD. That is what the standard evaluation
    reports as the worst case over attacks, and it is faster than AutoAttack on every sample;
    within AutoAttack each sub-attack again only attacks the samples the previous ones left
    correct. ``pgd_first=False`` runs AutoAttack alone (on every clean-correct sample).

    Called directly (``attack(model, x, y)``, or where a strategy takes an attack) it returns
    AutoAttack's adversarial inputs for ``x``, without the PGD step.

    The model is never modified: the attack runs on an eval-mode copy of it (see
    :func:`fral._modules.evaluation_view`), or on the model itself held in eval mode with its
    parameters frozen, flags, ``.grad`` and BatchNorm statistics restored afterwards
    (:func:`fral.attacks.guarded`). torch's global RNG is left as it was.

    Parameters
    ----------
    eps : float, default 4/255
        L-infinity radius, in the units of the inputs (the same as the PGD evaluation's).
    bounds : (float, float), default (0, 1)
        Valid input range. AutoAttack assumes inputs in [0, 1] and clips to them; other
        finite bounds ``(low, high)`` are handled exactly by attacking
        ``u = (x - low) / (high - low)`` in [0, 1] with ``eps / (high - low)`` (an
        L-infinity ball maps onto an L-infinity ball under this affine map, so every
        sub-attack sees the same problem). ``None`` (unbounded features, such as Adult's
        standardised columns) is refused: there is no faithful rescaling.
    pgd : PGD, optional
        The PGD run first (see above). Default ``PGD(eps, alpha=eps / 2, steps=5, bounds)``,
        the paper's PGD-5 shape; its ``eps`` and ``bounds`` must equal this attack's.
    pgd_first : bool, default True
        Report the worst case of PGD and AutoAttack; ``False``: AutoAttack alone.
    n_classes : int, optional
        Number of classes for the targeted sub-attacks; default the model's output width.
    seed : int, optional
        Seed of the sub-attacks' random starts. Default: drawn from the ``generator`` fral
        passes (``evaluate``'s ``random_state``), so runs repeat under a seed.
    steps : int, optional
        Iterations of APGD-CE, APGD-T and FAB-T; default torchattacks' standard (10). Set it
        (e.g. 100, the reference's) only knowingly: other values are not "standard".
    n_queries : int, optional
        Queries of Square; default the standard 5000. Lowering it weakens the attack (meant
        for quick tests).

    Notes
    -----
    Inputs must be image batches ``(N, C, H, W)``: torchattacks' APGD and Square assume
    them. The attack runs in full precision even where ``evaluate`` uses ``amp``. The
    result is projected onto the ``eps`` ball and ``bounds`` (torchattacks' arithmetic can
    overshoot by a rounding error).
    """

    version = "standard"
    norm = "Linf"

    def __init__(
        self,
        eps: float = 4 / 255,
        *,
        bounds: Bounds | None = (0.0, 1.0),
        pgd: PGD | None = None,
        pgd_first: bool = True,
        n_classes: int | None = None,
        seed: int | None = None,
        steps: int | None = None,
        n_queries: int | None = None,
    ) -> None:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if bounds is None:
            raise ValueError(
                "AutoAttack needs bounded inputs (it clips every attack to a box) and this "
                "data has bounds=None (unbounded features): there is no faithful way to run "
                "it; evaluate these data with PGD (attack=None or 'pgd')"
            )
        if not (
            isinstance(bounds, (tuple, list))
            and len(bounds) == 2
            and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
                for b in bounds
            )
            and bounds[0] < bounds[1]
        ):
            raise ValueError(f"bounds must be (low, high), finite with low < high; got {bounds!r}")
        self.eps = float(eps)
        self.bounds: Bounds = (float(bounds[0]), float(bounds[1]))
        if pgd is None:
            pgd = PGD(eps=self.eps, alpha=self.eps / 2, steps=5, bounds=self.bounds)
        if not isinstance(pgd, PGD):
            raise TypeError(f"pgd must be a fral.PGD or None, got {type(pgd).__name__}")
        if not math.isclose(pgd.eps, self.eps, rel_tol=1e-9) or tuple(pgd.bounds or ()) != (
            self.bounds
        ):
            raise ValueError(
                f"pgd must attack the same threat model: eps {pgd.eps!r} and bounds "
                f"{pgd.bounds!r} against AutoAttack's {self.eps!r} and {self.bounds!r}"
            )
        self.pgd = pgd
        self.pgd_first = bool(pgd_first)
        self.n_classes = _optional_int(n_classes, "n_classes", 2)
        if self.n_classes is not None:
            _check_classes(self.n_classes)
        self.seed = _optional_int(seed, "seed", 0)
        self.steps = _optional_int(steps, "steps", 1)
        self.n_queries = _optional_int(n_queries, "n_queries", 1)
        super().__init__(self._attack)

    def __repr__(self) -> str:
        options = [f"eps={self.eps:.6g}", f"bounds={self.bounds}", f"version={self.version!r}"]
        for name in ("n_classes", "seed", "steps", "n_queries"):
            value = getattr(self, name)
            if value is not None:
                options.append(f"{name}={value}")
        text = f"AutoAttack({', '.join(options)})"
        if self.pgd_first:
            pgd = self.pgd
            text += f" after PGD(eps={pgd.eps:.6g}, alpha={pgd.alpha:.6g}, steps={pgd.steps})"
        return text

    # -- running ---------------------------------------------------------------------------
    def _build(self, forward: _Forward, n_classes: int, seed: int) -> Any:
        torchattacks = _torchattacks()
        if self.n_classes is not None and self.n_classes != n_classes:
            raise ValueError(
                f"n_classes={self.n_classes} but the model outputs {n_classes} logits; leave "
                "n_classes unset to take the model's"
            )
        _check_classes(n_classes)
        scale = self.bounds[1] - self.bounds[0]
        attack = torchattacks.AutoAttack(
            forward,
            norm=self.norm,
            eps=self.eps / scale,
            version=self.version,
            n_classes=n_classes,
            seed=seed,
        )
        if self.steps is not None or self.n_queries is not None:
            inner = getattr(getattr(attack, "_autoattack", None), "attacks", None)
            if inner is None:
                raise RuntimeError(
                    "this torchattacks version does not expose AutoAttack's sub-attacks; "
                    "steps and n_queries need torchattacks 3.5"
                )
            for sub in inner:
                if self.steps is not None and hasattr(sub, "steps"):
                    sub.steps = self.steps
                if self.n_queries is not None and hasattr(sub, "n_queries"):
                    sub.n_queries = self.n_queries
        return attack

    def _seed(self, generator: torch.Generator | None) -> int:
        if self.seed is not None:
            return self.seed
        if generator is None:
            return int(torch.randint(0, 2**31, (1,)))
        return int(torch.randint(0, 2**31, (1,), generator=generator, device=generator.device))

    def _check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_input_batch(x, "x")
        if x.dim() != 4:
            raise ValueError(
                f"AutoAttack (torchattacks) needs image batches (N, C, H, W), got inputs of "
                f"shape {tuple(x.shape)}; evaluate other inputs with PGD"
            )
        low, high = self.bounds
        if x.numel() and (float(x.min()) < low or float(x.max()) > high):
            raise ValueError(
                f"x lies outside bounds {self.bounds}: range [{float(x.min())}, "
                f"{float(x.max())}]; pass the data's own bounds"
            )
        if y.dtype != torch.int64 or y.shape != x.shape[:1]:
            raise ValueError(f"y must be an int64 tensor of shape ({x.shape[0]},)")

    def _perturb(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        n_classes: int,
        seed: int,
    ) -> torch.Tensor:
        """AutoAttack's adversarial inputs for ``x`` against ``run``, within eps and bounds."""
        low, high = self.bounds
        scale = high - low
        identity = low == 0.0 and scale == 1.0
        forward = _Forward(run, low, scale, x.device)
        attack = self._build(forward, n_classes, seed)
        u = x.detach() if identity else (x.detach() - low) / scale
        devices = [x.device] if x.device.type == "cuda" else []
        # torchattacks seeds torch's global RNG at every sub-attack: keep the caller's stream.
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            u_adv = attack(u, y)
        x_adv = u_adv if identity else low + scale * u_adv
        x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps)
        return x_adv.clamp(low, high).to(x.dtype).detach()

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Called by CallableAttack.__call__ inside guarded(model), with torch's global RNG
        # seeded from the caller's generator (so the drawn seed repeats).
        self._check(x, y)
        with evaluation_view(model) as view:
            n_classes = output_width(model, x)
            return self._perturb(view, x, y, n_classes, self._seed(None))

    def on_view(
        self,
        model: nn.Module,
        view: EvalView,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        n_classes: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """AutoAttack's adversarial inputs for ``x`` (labels ``y``) on a view fral already
        holds of ``model`` (inside an evaluation loop).

        Parameters
        ----------
        model : nn.Module
            The user's model (guarded for the call: never modified).
        view : EvalView
            Its evaluation view.
        x : torch.Tensor, shape (N, C, H, W)
        y : torch.Tensor, shape (N,), int64
        n_classes : int
            The model's output width.
        generator : torch.Generator, optional
            Source of the seed when :attr:`seed` is unset.

        Returns
        -------
        torch.Tensor, shape (N, C, H, W)
        """
        self._check(x, y)
        if x.shape[0] == 0:
            return x.detach().clone()
        check_labels(y, n_classes)
        seed = self._seed(generator)
        with guarded(model):
            return self._perturb(view, x, y, n_classes, seed)

    def worst_case_logits(
        self,
        model: nn.Module,
        view: EvalView,
        x: torch.Tensor,
        y: torch.Tensor,
        clean_logits: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        seeds: torch.Generator | None = None,
        amp: bool | torch.dtype = False,
    ) -> torch.Tensor:
        """Logits of the worst case per sample: PGD's where PGD (or the clean input) is
        already wrong, AutoAttack's on the samples still correct after PGD.

        Parameters
        ----------
        model, view :
            As in :meth:`on_view`.
        x : torch.Tensor, shape (N, C, H, W)
        y : torch.Tensor, shape (N,), int64
        clean_logits : torch.Tensor, shape (N, C)
            The view's logits on ``x``.
        generator : torch.Generator, optional
            Source of PGD's random start (and of AutoAttack's seed without ``seeds``).
        seeds : torch.Generator, optional
            Source of AutoAttack's seed (when :attr:`seed` is unset), kept apart from
            ``generator`` so that PGD draws the same random starts as a PGD-only evaluation
            under the same seed.
        amp : bool or torch.dtype, default False
            Autocast of the forward passes that give the returned logits.

        Returns
        -------
        torch.Tensor, shape (N, C)
        """
        if self.pgd_first:
            x_pgd = run_attack(
                self.pgd, model, view, x, y, clean_logits=clean_logits, generator=generator
            )
            with torch.no_grad(), autocast(view.device, amp):
                logits = view(x_pgd)
        else:
            logits = clean_logits
        alive = (clean_logits.argmax(1) == y) & (logits.argmax(1) == y)
        if bool(alive.any()):
            x_aa = self.on_view(
                model,
                view,
                x[alive],
                y[alive],
                n_classes=clean_logits.shape[1],
                generator=generator if seeds is None else seeds,
            )
            with torch.no_grad(), autocast(view.device, amp):
                attacked = view(x_aa)
            logits = logits.clone()
            logits[alive] = attacked.to(logits.dtype)
        return logits
