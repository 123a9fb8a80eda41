"""MinMax: budget split across groups by minimax-Pareto weights (after Martinez et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState, make_generator
from fral.attacks import as_attack
from fral.metrics import CRITERIA, RISKS, group_risks
from fral.pool import Pool
from fral.protocol import (
    Request,
    Strategy,
    check_amp,
    check_batch_size,
    check_flag,
    check_int,
    check_real,
    clip_budget,
)

__all__ = [
    "GroupRiskStrategy",
    "MinMax",
    "draw_within_groups",
    "largest_remainder",
    "split_budget",
    "update_weights",
]


def _check_same_1d(weights: torch.Tensor, other: torch.Tensor, name: str) -> None:
    if weights.dim() != 1 or weights.shape != other.shape:
        raise ValueError(
            f"weights {tuple(weights.shape)} and {name} {tuple(other.shape)} must be 1-D tensors "
            "of one length (one entry per group)"
        )


def update_weights(
    weights: torch.Tensor,
    risks: torch.Tensor,
    step: float,
    *,
    shrink: int = 1,
    threshold: float | None = None,
) -> torch.Tensor:
    """One APStar step (Martinez et al. 2020, as in their official code).

    ``mu <- (1 - step) mu + (step / shrink) * 1[risk_g >= threshold] / count``, then
    renormalised to sum 1. ``threshold`` defaults to the largest known risk (the groups of
    maximal risk; exact ties share the step). Groups with NaN risk (no validation samples)
    are never moved towards.

    Parameters
    ----------
    weights : torch.Tensor, shape (G,)
        Current non-negative weights ``mu``.
    risks : torch.Tensor, shape (G,)
        Per-group risk (NaN where unknown).
    step : float
        ``alpha`` in (0, 1].
    shrink : int, default 1
        APStar's ``K >= 1``: the step towards the riskiest groups is divided by it.
    threshold : float, optional
        Groups whose risk is at least this are moved towards (APStar: the best maximal risk
        seen so far).

    Returns
    -------
    torch.Tensor, shape (G,), float64, summing to 1
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
    risks = torch.as_tensor(risks, dtype=torch.float64).cpu()
    _check_same_1d(weights, risks, "risks")
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step must lie in (0, 1], got {step}")
    if isinstance(shrink, bool) or not isinstance(shrink, int) or shrink < 1:
        raise ValueError(f"shrink must be an integer >= 1, got {shrink!r}")
    known = ~torch.isnan(risks)
    if not bool(known.any()):
        raise ValueError("no group has a known risk (no group has validation samples)")
    threshold = float(risks[known].max()) if threshold is None else threshold
    direction = known & (risks >= threshold)
    if not bool(direction.any()):
        raise ValueError(f"no group has a risk >= threshold {threshold}")
    updated = (1.0 - step) * weights + (step / shrink) * direction.double() / direction.sum()
    return updated / updated.sum()


def largest_remainder(total: int, proportions: torch.Tensor) -> torch.Tensor:
    """Integer shares of ``total`` in proportion to ``proportions`` (Hamilton's method).

    Each group gets the floor of its quota; the units left go to the largest fractional parts,
    the lower group id first on ties. Returns an int64 tensor summing to ``total``.
    """
    quotas = total * proportions.double() / proportions.double().sum()
    shares = quotas.floor()
    left = total - int(shares.sum())
    order = torch.sort(quotas - shares, descending=True, stable=True).indices
    shares[order[:left]] += 1
    return shares.long()


def split_budget(
    budget: int, weights: torch.Tensor, available: torch.Tensor, *, redistribute: bool = True
) -> torch.Tensor:
    """Samples to draw from each group: ``budget`` split in proportion to ``weights``.

    Largest-remainder rounding of ``budget * mu``. A group offered more than its ``available``
    candidates gives the rest back, and (with ``redistribute``) the rest is split again (same
    rule) over the groups with candidates to spare, in proportion to their weights; if those
    all have weight 0, in proportion to their spare candidates. Repeats until the budget or
    the candidates run out. Without ``redistribute`` a group's unmet share is simply lost.

    Parameters
    ----------
    budget : int
        ``B``.
    weights : torch.Tensor, shape (G,)
        Non-negative weights with a positive sum.
    available : torch.Tensor, shape (G,), int
        Candidates per group.

    redistribute : bool, default True

    Returns
    -------
    torch.Tensor, shape (G,), int64
        Counts ``<= available``, summing to ``min(budget, available.sum())`` with
        ``redistribute``.
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
    available = torch.as_tensor(available).cpu().long()
    _check_same_1d(weights, available, "available")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    if not weights.sum() > 0:
        raise ValueError("weights must have a positive sum")
    if bool((available < 0).any()):
        raise ValueError("available counts must be non-negative")
    if not redistribute:
        return torch.minimum(largest_remainder(int(budget), weights), available)
    total = min(int(budget), int(available.sum()))
    counts = torch.zeros_like(available)
    while int(counts.sum()) < total:
        room = available - counts
        share = torch.where(room > 0, weights, 0.0)
        if not share.sum() > 0:
            share = room.double()
        counts += torch.minimum(largest_remainder(total - int(counts.sum()), share), room)
    return counts


def draw_within_groups(
    pool: Pool, draws: list[tuple[int, int]], budget: int, generator: torch.Generator
) -> torch.Tensor:
    """Pool indices for a plan of ``(group, count)`` draws, uniformly without replacement.

    Each group's candidates are shuffled once (on the first draw from it, with ``generator``)
    and consumed in that order, so a group drawn twice never repeats a sample. Warns when the
    plan holds fewer than ``budget`` samples.

    Returns
    -------
    torch.Tensor, int64, on the CPU
        Indices in plan order.
    """
    clip_budget(budget, sum(count for _, count in draws), "candidates the strategy can draw from")
    shuffled: dict[int, torch.Tensor] = {}
    used: dict[int, int] = {}
    picks = []
    for group, count in draws:
        if group not in shuffled:
            members = pool.group_indices(group)
            shuffled[group] = members[torch.randperm(members.numel(), generator=generator)]
            used[group] = 0
        picks.append(shuffled[group][used[group] : used[group] + count])
        used[group] += count
    return torch.cat(picks) if picks else torch.empty(0, dtype=torch.int64)


class GroupRiskStrategy(Strategy):
    """Base of strategies driven by the per-group validation risk of ``M_R`` (MinMax, OPT).

    Stores and checks the options of :func:`fral.metrics.group_risks`; :meth:`group_risks`
    measures them for one call, with the attack seeded from the call's seed.
    """

    requires = frozenset({"validation"})

    def __init__(
        self,
        budget: int,
        *,
        risk: str,
        criterion: str,
        attack: Any,
        fill: bool,
        batch_size: int,
        amp: bool | torch.dtype,
        random_state: RandomState,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        if not isinstance(risk, str) or risk not in RISKS:
            raise ValueError(f"risk must be one of {RISKS}, got {risk!r}")
        if not isinstance(criterion, str) or criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.risk = risk
        self.criterion = criterion
        self.attack = as_attack(attack)
        self.fill = check_flag(fill, "fill")
        self.batch_size = check_batch_size(batch_size)
        self.amp = check_amp(amp)

    def group_risks(self, request: Request) -> torch.Tensor:
        """Per-group risk of ``request.model_r`` on ``request.validation``, shape ``(G,)``."""
        return group_risks(
            request.model_r,
            request.validation,
            risk=self.risk,
            criterion=self.criterion,
            attack=self.attack,
            num_groups=request.pool.num_groups,
            batch_size=self.batch_size,
            amp=self.amp,
            generator=request.generator(),
        )


class MinMax(GroupRiskStrategy):
    """Draw at random from every group, as many as its minimax-Pareto weight says.

    Keeps group weights ``mu`` (uniform at the first call) and runs one iteration of APStar
    (Martinez et al. 2020, Algorithm 1, as in their official code) per call: it measures the
    per-group validation risk of ``M_R``, updates APStar's step shrinkage ``K`` and patience
    (see Notes), moves weight onto the groups whose risk is at least the best maximal risk so
    far (:func:`update_weights`), splits the budget in proportion to ``mu``
    (:func:`split_budget`) and draws that many candidates of each group uniformly without
    replacement. The weights and APStar's counters persist across calls and rounds, and travel
    in :meth:`state_dict`.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    step : float, default 0.5
        APStar's ``alpha`` in (0, 1] (the official default).
    k_min : int, default 20
        APStar's ``Kmin``: an improving call resets ``K`` to ``min(K, k_min)``.
    patience : int, default 20
        APStar's ``max_patience``: after more than this many calls in a row without a lower
        maximal risk, the weights stop moving (APStar has stopped).
    risk : {"error", "ce"}, default "error"
        Per-group risk: error rate (``1 - accuracy``, matching how fral finds the worst group)
        or mean cross-entropy (the loss APStar minimises).
    criterion : {"mean", "clean", "robust"}, default "mean"
        Risk on clean validation inputs, under ``attack``, or the mean of both (FRAL's two
        goals weighted equally, as :data:`fral.metrics.CRITERIA` ``"mean"``).
    attack : optional
        Attack for the robust risk (default: the paper's PGD-5 at 4/255, on true labels).
    fill : bool, default True
        A group with fewer candidates than its share gives the rest to the other groups, so
        the whole budget is spent; ``False`` keeps strict proportional shares (fewer picks,
        with a warning).
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None
        Seed of the within-group draws and the attack's random starts.

    Attributes
    ----------
    group_weights : torch.Tensor of shape (G,) or None
        ``mu`` after the last call (``None`` before the first).

    Notes
    -----
    APStar per call, as the official ``APSTAR`` function: with ``r`` the risks and
    ``r_max = max_g r_g``, if ``r_max`` is below the best ``r_max`` so far (always at the first
    call) it becomes the best, ``K <- min(K, k_min)`` and the patience count resets; otherwise
    ``K <- K + 1`` and the count grows. Then ``mu <- (1 - a) mu + (a / K) 1[r >= best] /
    #{r >= best}``, renormalised (``K = 1`` at the start). Once the count exceeds ``patience``
    the weights are frozen.

    Differences from the original, which is a training procedure, not an active-learning
    strategy:

    - APStar retrains a model to convergence on the ``mu``-weighted loss at each iteration
      and measures that model's risks; here ``mu`` splits the labelling budget over the
      groups and the risks are those of the current ``M_R`` (which the loop fine-tunes on the
      labels between calls). The FRAL paper does not say how its MinMax baseline uses ``mu``;
      this is our reading.
    - No cap on the number of iterations (the original's ``niter=100``; a run has a handful
      of rounds). The official PyTorch trainer's extra steps (risks rounded to 2 decimals,
      reloading the best model, decaying the learning rate when the new risks are
      Pareto-dominated) act on training and are not reproduced; risks are compared unrounded.
    - ``risk="error"`` by default, FRAL's accuracy-based fairness; the original uses the
      loss (``risk="ce"``).

    Picks are ordered group by group, highest weight first, in draw order within a group. The
    draws use a CPU generator, so the same seed picks the same samples on any device.
    ``group`` is ignored: MinMax chooses its groups itself. Cost: one clean (and, unless
    ``criterion="clean"``, one attacked) pass over ``validation``.
    """

    def __init__(
        self,
        budget: int,
        *,
        step: float = 0.5,
        k_min: int = 20,
        patience: int = 20,
        risk: str = "error",
        criterion: str = "mean",
        attack: Any = None,
        fill: bool = True,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(
            budget,
            risk=risk,
            criterion=criterion,
            attack=attack,
            fill=fill,
            batch_size=batch_size,
            amp=amp,
            random_state=random_state,
        )
        self.step = check_real(step, "step", 0.0, 1.0, low_open=True)
        self.k_min = check_int(k_min, "k_min")
        self.patience = check_int(patience, "patience", 0)
        self.group_weights: torch.Tensor | None = None
        self._shrink = 1
        self._best_risk: float | None = None
        self._stale = 0

    def __repr__(self) -> str:
        return f"MinMax(budget={self.budget}, step={self.step}, risk={self.risk!r})"

    def state_dict(self) -> dict[str, Any]:
        """The random stream, the group weights ``mu`` and APStar's ``K``, best risk, patience."""
        state = super().state_dict()
        state["group_weights"] = None if self.group_weights is None else self.group_weights.clone()
        state["apstar"] = {
            "shrink": self._shrink,
            "best_risk": self._best_risk,
            "stale": self._stale,
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        weights = state["group_weights"]
        self.group_weights = None if weights is None else torch.as_tensor(weights).double().clone()
        apstar = state.get("apstar", {"shrink": 1, "best_risk": None, "stale": 0})
        self._shrink, self._best_risk = int(apstar["shrink"]), apstar["best_risk"]
        self._stale = int(apstar["stale"])

    def _apstar_step(self, risks: torch.Tensor) -> None:
        """One APStar iteration on ``self.group_weights`` (see Notes)."""
        if self._stale > self.patience:
            return
        known = risks[~torch.isnan(risks)]
        if known.numel() == 0:
            raise ValueError("no group has a known risk (no group has validation samples)")
        worst = float(known.max())
        if self._best_risk is None or worst < self._best_risk:
            self._best_risk = worst
            self._shrink = min(self._shrink, self.k_min)
            self._stale = 0
        else:
            self._shrink += 1
            self._stale += 1
        self.group_weights = update_weights(
            self.group_weights, risks, self.step, shrink=self._shrink, threshold=self._best_risk
        )

    def _select(self, request: Request) -> torch.Tensor:
        pool = request.pool
        request.grouped = True
        num_groups = pool.num_groups
        if self.group_weights is None:
            self.group_weights = torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)
        elif self.group_weights.numel() != num_groups:
            raise ValueError(
                f"MinMax holds weights for {self.group_weights.numel()} groups but the pool and "
                f"validation set have {num_groups}; use a fresh strategy for a new group set"
            )
        self._apstar_step(self.group_risks(request))
        available = pool.group_counts()
        counts = split_budget(self.budget, self.group_weights, available, redistribute=self.fill)
        order = torch.sort(self.group_weights, descending=True, stable=True).indices.tolist()
        draws = [(group, int(counts[group])) for group in order if counts[group] > 0]
        return draw_within_groups(pool, draws, self.budget, make_generator(request.seed))
