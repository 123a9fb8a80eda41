"""MinMax: budget split across groups by minimax-Pareto weights (after Martinez et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState, make_generator
from fral.attacks import as_attack
from fral.metrics import CRITERIA, RISKS, group_risks
from fral.pool import Pool
from fral.protocol import Request, Strategy, clip_budget

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


def update_weights(weights: torch.Tensor, risks: torch.Tensor, step: float) -> torch.Tensor:
    """One APStar-style step: move ``step`` of the mass onto the groups of maximal risk.

    ``mu <- (1 - step) mu + step * 1[risk_g = max] / #argmax``, then renormalised. Groups with
    NaN risk (no validation samples) are never the maximum; exact ties share the step.

    Parameters
    ----------
    weights : torch.Tensor, shape (G,)
        Current non-negative weights ``mu``.
    risks : torch.Tensor, shape (G,)
        Per-group risk (NaN where unknown).
    step : float
        ``a`` in (0, 1].

    Returns
    -------
    torch.Tensor, shape (G,), float64, summing to 1
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
    risks = torch.as_tensor(risks, dtype=torch.float64).cpu()
    _check_same_1d(weights, risks, "risks")
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step must lie in (0, 1], got {step}")
    known = ~torch.isnan(risks)
    if not bool(known.any()):
        raise ValueError("no group has a known risk (no group has validation samples)")
    worst = known & (risks == risks[known].max())
    updated = (1.0 - step) * weights + step * worst.double() / worst.sum()
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


def split_budget(budget: int, weights: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """Samples to draw from each group: ``budget`` split in proportion to ``weights``.

    Largest-remainder rounding of ``budget * mu``. A group offered more than its ``available``
    candidates gives the rest back, and the rest is split again (same rule) over the groups
    with candidates to spare, in proportion to their weights; if those all have weight 0, in
    proportion to their spare candidates. Repeats until the budget or the candidates run out.

    Parameters
    ----------
    budget : int
        ``B``.
    weights : torch.Tensor, shape (G,)
        Non-negative weights with a positive sum.
    available : torch.Tensor, shape (G,), int
        Candidates per group.

    Returns
    -------
    torch.Tensor, shape (G,), int64
        Counts ``<= available``, summing to ``min(budget, available.sum())``.
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
        batch_size: int,
        amp: bool | torch.dtype,
        random_state: RandomState,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        if risk not in RISKS:
            raise ValueError(f"risk must be one of {RISKS}, got {risk!r}")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.risk = risk
        self.criterion = criterion
        self.attack = as_attack(attack)
        self.batch_size = batch_size
        self.amp = amp

    def group_risks(self, request: Request, num_groups: int) -> torch.Tensor:
        """Per-group risk of ``request.model_r`` on ``request.validation``, shape ``(G,)``."""
        return group_risks(
            request.model_r, request.validation, risk=self.risk, criterion=self.criterion,
            attack=self.attack, num_groups=num_groups, batch_size=self.batch_size, amp=self.amp,
            generator=request.generator(),
        )  # fmt: skip


class MinMax(GroupRiskStrategy):
    """Draw at random from every group, as many as its minimax-Pareto weight says.

    Keeps group weights ``mu`` (uniform at the first call). Each call measures the per-group
    validation risk of ``M_R``, moves ``step`` of the weight onto the riskiest group(s)
    (:func:`update_weights`, the APStar rule of Martinez et al. 2020), splits the budget in
    proportion to ``mu`` (:func:`split_budget`) and draws that many candidates of each group
    uniformly without replacement. The weights persist across calls and rounds, and travel in
    :meth:`state_dict`.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    step : float, default 0.5
        APStar step ``a`` in (0, 1]: the share of the weight moved to the worst group per call.
    risk : {"error", "ce"}, default "error"
        Per-group risk: error rate (``1 - accuracy``, matching how fral finds the worst group)
        or mean cross-entropy (the loss APStar minimises).
    criterion : {"mean", "clean", "robust"}, default "mean"
        Risk on clean validation inputs, under ``attack``, or the mean of both (FRAL's two
        goals weighted equally, as :data:`fral.metrics.CRITERIA` ``"mean"``).
    attack : optional
        Attack for the robust risk (default: the paper's PGD-5 at 4/255, on true labels).
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
    Picks are ordered group by group, highest weight first, in draw order within a group. The
    draws use a CPU generator, so the same seed picks the same samples on any device. A group
    with fewer candidates than its share gives the rest to the other groups (see
    :func:`split_budget`). ``group`` is ignored: MinMax chooses its groups itself. Cost: one
    clean (and, unless ``criterion="clean"``, one attacked) pass over ``validation``.
    """

    def __init__(
        self,
        budget: int,
        *,
        step: float = 0.5,
        risk: str = "error",
        criterion: str = "mean",
        attack: Any = None,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(
            budget, risk=risk, criterion=criterion, attack=attack, batch_size=batch_size,
            amp=amp, random_state=random_state,
        )  # fmt: skip
        if not 0.0 < step <= 1.0:
            raise ValueError(f"step must lie in (0, 1], got {step}")
        self.step = float(step)
        self.group_weights: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"MinMax(budget={self.budget}, step={self.step}, risk={self.risk!r})"

    def state_dict(self) -> dict[str, Any]:
        """The random stream and the group weights ``mu``."""
        state = super().state_dict()
        state["group_weights"] = None if self.group_weights is None else self.group_weights.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        weights = state["group_weights"]
        self.group_weights = None if weights is None else torch.as_tensor(weights).double().clone()

    def _select(self, request: Request) -> torch.Tensor:
        pool, validation = request.pool, request.validation
        num_groups = max(pool.num_groups, validation.num_groups)
        if self.group_weights is None:
            self.group_weights = torch.full((num_groups,), 1.0 / num_groups, dtype=torch.float64)
        elif self.group_weights.numel() != num_groups:
            raise ValueError(
                f"MinMax holds weights for {self.group_weights.numel()} groups but the pool and "
                f"validation set have {num_groups}; use a fresh strategy for a new group set"
            )
        risks = self.group_risks(request, num_groups)
        self.group_weights = update_weights(self.group_weights, risks, self.step)
        available = torch.bincount(pool.groups, minlength=num_groups)
        counts = split_budget(self.budget, self.group_weights, available)
        order = torch.sort(self.group_weights, descending=True, stable=True).indices.tolist()
        draws = [(group, int(counts[group])) for group in order if counts[group] > 0]
        return draw_within_groups(pool, draws, self.budget, make_generator(request.seed))
