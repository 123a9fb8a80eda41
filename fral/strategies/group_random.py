"""G-RAND: random selection from the worst group (naive worst-group adaptive sampling)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState
from fral.protocol import (
    Request,
    Strategy,
    WorstGroupOptions,
    check_flag,
    draw_by_group,
    group_order,
)

__all__ = ["GRAND"]


class GRAND(Strategy):
    """Pick ``budget`` candidates at random from the worst group, topping up from the next.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    attack, criterion, metric, batch_size, amp :
        How the groups are ranked on ``validation``; see :class:`~fral.protocol.WorstGroupOptions`.
    fill : bool, default True
        When the worst group has fewer than ``B`` candidates, take all of them and fill the
        rest at random from the next-worst group, and so on. With ``False`` only one group is
        drawn from (a budget above its size returns it all, with a warning).
    random_state : int, torch.Generator or None
        Seed of the strategy's random stream.

    Notes
    -----
    Group order (the paper leaves it open; our choice, shared by every group-aware strategy:
    :func:`fral.protocol.group_order`):

    - ``group=None``: the groups of ``validation`` from worst to best (ties: lower id) by
      :func:`fral.metrics.group_ranking` of ``model_r``, then the groups without validation
      samples, by id. Groups without candidates are passed over (worse ones with a warning).
    - ``group=k``: validation is not used (nor needed); group ``k`` first, then the other
      groups by ascending id. ``k`` must have candidates.

    The picks come group by group in that order, in random order within a group (a
    ``torch.randperm`` per group on one CPU generator seeded per call). Cost: the validation
    evaluation (a PGD attack unless ``criterion="clean"``) plus O(N) for the draw.
    """

    requires = frozenset({"validation"})
    validation_finds_group = True

    def __init__(
        self,
        budget: int,
        *,
        attack: Any = None,
        criterion: str = "mean",
        metric: str = "accuracy",
        fill: bool = True,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        self.worst_group = WorstGroupOptions(attack, criterion, metric, batch_size, amp)
        self.fill = check_flag(fill, "fill")

    @property
    def name(self) -> str:
        """``"G-RAND"``, as in the paper."""
        return "G-RAND"

    def _select(self, request: Request) -> torch.Tensor:
        generator = request.generator("cpu")

        def rank(candidates: torch.Tensor, count: int) -> torch.Tensor:
            return candidates[torch.randperm(candidates.numel(), generator=generator)[:count]]

        order = group_order(request, self.worst_group, fill=self.fill)
        return draw_by_group(request, order, self.budget, rank)
