"""G-RAND: random selection from the worst group (naive worst-group adaptive sampling)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState
from fral.metrics import group_ranking
from fral.protocol import Request, Strategy, WorstGroupOptions, clip_budget, group_candidates

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
    Group order (the paper leaves it open; our choice):

    - ``group=None``: the groups of ``validation`` from worst to best (ties: lower id) by
      :func:`fral.metrics.group_ranking` of ``model_r``, then the groups without validation
      samples, by id. Groups without candidates are passed over.
    - ``group=k``: validation is not used (nor needed); group ``k`` first, then the other
      groups by ascending id. ``k`` must have candidates.

    The picks come group by group in that order, in random order within a group (one
    ``torch.randperm`` on a CPU generator seeded per call). Cost: the validation evaluation
    (a PGD attack unless ``criterion="clean"``) plus O(N log N) for the draw.
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
        self.fill = bool(fill)

    @property
    def name(self) -> str:
        """``"G-RAND"``, as in the paper."""
        return "G-RAND"

    def group_order(self, request: Request) -> list[int]:
        """Groups in the order they are drawn from, first to last (see Notes)."""
        num_groups = request.pool.num_groups
        if request.group is not None:
            group_candidates(request.pool, request.group)
            first = [request.group]
        else:
            ranking = group_ranking(
                request.model_r, request.validation, random_state=request.seed,
                **self.worst_group.as_kwargs(),
            )  # fmt: skip
            first = [group for group in ranking.tolist() if group < num_groups]
        rest = sorted(set(range(num_groups)) - set(first))
        order = first + rest
        if not self.fill:
            counts = request.pool.group_counts()
            order = [next(group for group in order if counts[group] > 0)]
        return order

    def _select(self, request: Request) -> torch.Tensor:
        pool = request.pool
        order = self.group_order(request)
        position = torch.full((pool.num_groups,), len(order), dtype=torch.int64)
        position[order] = torch.arange(len(order))
        sample_position = position[pool.groups]
        eligible = int((sample_position < len(order)).sum())
        count = clip_budget(self.budget, eligible)
        shuffle = torch.randperm(len(pool), generator=request.generator("cpu"))
        keys = sample_position * len(pool) + shuffle
        return torch.argsort(keys)[:count]
