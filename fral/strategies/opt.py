"""OPT: optimistic adaptive sampling for minimax fairness (after Shekhar et al. 2021)."""

from __future__ import annotations

import math
from typing import Any

import torch

from fral._random import RandomState, make_generator
from fral.protocol import Request, check_int, check_real, fill_plan
from fral.strategies.minmax import GroupRiskStrategy, draw_within_groups

__all__ = ["OPT", "optimistic_bounds", "plan_draws"]


def optimistic_bounds(
    losses: torch.Tensor, labeled_counts: torch.Tensor, exploration: float
) -> torch.Tensor:
    """Upper confidence bound of each group's loss: ``loss_g + c / sqrt(N_g)``.

    Parameters
    ----------
    losses : torch.Tensor, shape (G,)
        Validation loss per group (NaN where unknown).
    labeled_counts : torch.Tensor, shape (G,)
        ``N_g``, labelled samples per group; ``N_g = 0`` gives an infinite bound (an unexplored
        group goes first).
    exploration : float
        ``c >= 0``.

    Returns
    -------
    torch.Tensor, shape (G,), float64
        The bounds; NaN where the loss is unknown.
    """
    losses = torch.as_tensor(losses, dtype=torch.float64).cpu()
    counts = torch.as_tensor(labeled_counts, dtype=torch.float64).cpu()
    if losses.dim() != 1 or losses.shape != counts.shape:
        raise ValueError(
            f"losses {tuple(losses.shape)} and labeled_counts {tuple(counts.shape)} must be 1-D "
            "tensors of one length (one entry per group)"
        )
    unexplored = math.inf if exploration > 0 else 0.0
    return losses + torch.where(counts > 0, exploration / counts.sqrt(), unexplored)


def plan_draws(
    budget: int,
    losses: torch.Tensor,
    labeled_counts: torch.Tensor,
    available: torch.Tensor,
    *,
    exploration: float,
    sub_batches: int,
) -> list[tuple[int, int]]:
    """Which group each sub-batch draws from, and how many.

    The budget is cut into ``sub_batches`` near-equal parts (the first ones one larger). Each
    part goes to the group of largest :func:`optimistic_bounds` among groups with a known loss
    and candidates left (ties: the lower id); its ``N_g`` then grows by what it received, so
    the next part sees the updated bonus. A group that runs out of candidates hands the rest
    of its part to the next argmax (recomputed). Stops when the budget or the candidates of
    groups with known loss run out.

    Parameters
    ----------
    budget : int
    losses, labeled_counts, available : torch.Tensor, shape (G,)
        Validation loss, labelled count ``N_g`` and candidates left per group.
    exploration : float
        ``c``.
    sub_batches : int
        ``k >= 1``.

    Returns
    -------
    list of (group, count)
        Draws in order; counts sum to at most ``budget``.
    """
    counts = torch.as_tensor(labeled_counts, dtype=torch.float64).cpu().clone()
    room = torch.as_tensor(available).cpu().long().clone()
    losses = torch.as_tensor(losses, dtype=torch.float64).cpu()
    if room.shape != counts.shape:
        raise ValueError("available must have one entry per group, like losses")
    parts = min(sub_batches, budget)
    sizes = [budget // parts + (1 if i < budget % parts else 0) for i in range(parts)]
    draws: list[tuple[int, int]] = []
    for size in sizes:
        need = size
        while need:
            bounds = optimistic_bounds(losses, counts, exploration)
            bounds[torch.isnan(bounds) | (room == 0)] = -math.inf
            group = int(torch.argmax(bounds))
            if bounds[group] == -math.inf:
                return draws
            take = min(need, int(room[group]))
            draws.append((group, take))
            counts[group] += take
            room[group] -= take
            need -= take
    return draws


class OPT(GroupRiskStrategy):
    """Draw from the group whose loss is highest optimistically, a sub-batch at a time.

    Per group ``g``: the validation loss of ``M_R`` plus an exploration bonus
    ``c / sqrt(N_g)``, where ``N_g`` is the number of labelled samples of ``g``. The budget is
    split into ``sub_batches`` parts; each part is drawn uniformly at random from the group of
    largest bound, after which ``N_g`` grows by what was drawn and the bounds are recomputed
    (:func:`plan_draws`). Since ``M_R`` is not retrained within a call, only the bonus changes
    between sub-batches: the losses are measured once.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    exploration : float, default 1.0
        ``c``. The bonus shrinks as ``1 / sqrt(N_g)``: with hundreds of labels per group,
        ``c = 1`` adds a few hundredths, the scale of loss differences between groups.
    sub_batches : int, default 10
        ``k``: how many times the bonus is recomputed within one call (capped at ``budget``).
    risk : {"ce", "error"}, default "ce"
        Per-group loss: mean cross-entropy (the loss Shekhar et al. bound) or error rate.
    criterion : {"mean", "clean", "robust"}, default "mean"
        Loss on clean validation inputs, under ``attack``, or the mean of both (FRAL's two
        goals weighted equally; see :func:`fral.metrics.group_risks`).
    attack : optional
        Attack for the robust loss (default: PGD-5 at 4/255 on true labels).
    fill : bool, default True
        When the groups with a loss estimate run out of candidates, top up from the groups
        without validation samples, by ascending id, so the whole budget is spent. ``False``
        draws only from groups with a loss estimate (fewer picks, with a warning).
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None
        Seed of the within-group draws and the attack's random starts.

    Notes
    -----
    ``N_g`` counts ``labeled.groups`` (labels themselves are not needed); a group without
    labelled samples has an infinite bound and is drawn first. A group without validation
    samples has no loss estimate and is skipped by the rule (but used to top up, see
    ``fill``); a group without candidates left is skipped.
    Picks come in draw order. Draws use a CPU generator, so a seed picks the same samples on
    any device. ``group`` is ignored: OPT chooses its groups itself. Cost: one clean (and,
    unless ``criterion="clean"``, one attacked) pass over ``validation``.
    """

    requires = frozenset({"validation", "labeled"})

    def __init__(
        self,
        budget: int,
        *,
        exploration: float = 1.0,
        sub_batches: int = 10,
        risk: str = "ce",
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
        self.exploration = check_real(exploration, "exploration", 0.0)
        self.sub_batches = check_int(sub_batches, "sub_batches")

    def __repr__(self) -> str:
        return (
            f"OPT(budget={self.budget}, exploration={self.exploration}, "
            f"sub_batches={self.sub_batches})"
        )

    def _select(self, request: Request) -> torch.Tensor:
        pool, labeled = request.pool, request.labeled
        request.grouped = True
        num_groups = pool.num_groups
        losses = self.group_risks(request)
        available = pool.group_counts()
        draws = plan_draws(
            self.budget,
            losses,
            torch.bincount(labeled.groups, minlength=num_groups),
            available,
            exploration=self.exploration,
            sub_batches=self.sub_batches,
        )
        if self.fill:
            room = available.clone()
            for group, count in draws:
                room[group] -= count
            need = self.budget - sum(count for _, count in draws)
            draws += fill_plan(list(range(num_groups)), need, room)
        if not draws:
            raise ValueError(
                "OPT found no group with both validation samples and candidates in the pool"
            )
        return draw_within_groups(pool, draws, self.budget, make_generator(request.seed))
