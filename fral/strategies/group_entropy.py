"""G-ENT: maximum entropy within the worst group (the paper's supplementary Table 1)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState
from fral.protocol import (
    Request,
    WorstGroupOptions,
    check_flag,
    draw_by_group,
    group_order,
    top_budget,
)
from fral.strategies.entropy import ENT

__all__ = ["GENT"]


class GENT(ENT):
    """Label the worst group's candidates whose prediction is the most uncertain.

    The worst group is found as JIN finds it; its candidates are scored by predictive entropy
    of the chosen model on clean inputs (as in :class:`~fral.strategies.entropy.ENT`) and the
    top-``budget`` are returned, most uncertain first.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    attack, criterion, metric :
        How the worst group is found on ``validation``: by default the lowest mean of clean
        and PGD-5 accuracy of ``model_r``; see
        :class:`~fral.protocol.WorstGroupOptions`.
    model : {"robust", "standard"}, default "robust"
        Whose entropy is scored (``"standard"`` requires ``model_s``).
    fill : bool, default True
        Top up from the next-worst groups until the budget is spent; ``False``: the worst
        group only (the paper's rule), all of it with a warning when it is smaller than B.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None
        Seed of the validation attack's random starts.

    Notes
    -----
    Group order as JIN's (:func:`fral.protocol.group_order`): ``group=k`` replaces the
    validation set (group ``k`` first, then the others by id); else the groups from worst to
    best on ``validation``, a worst group with no candidate left skipped with a warning.
    Entropies are ranked within each group. Cost: the validation evaluation plus one forward
    pass per candidate of the groups drawn from.
    """

    validation_finds_group = True
    group_aware = True

    def __init__(
        self,
        budget: int,
        *,
        attack: Any = None,
        criterion: str = "mean",
        metric: str = "accuracy",
        model: str = "robust",
        fill: bool = True,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(
            budget, model=model, batch_size=batch_size, amp=amp, random_state=random_state
        )
        self.worst_group = WorstGroupOptions(attack, criterion, metric, batch_size, amp)
        self.fill = check_flag(fill, "fill")

    @property
    def name(self) -> str:
        """``"G-ENT"``, as in the paper's supplementary material."""
        return "G-ENT"

    @property
    def requires(self) -> frozenset[str]:
        """``{"validation"}``, plus ``"model_s"`` when scoring the standard model."""
        return super().requires | {"validation"}

    def _select(self, request: Request) -> torch.Tensor:
        def rank(candidates: torch.Tensor, count: int) -> torch.Tensor:
            scores = self.score(request.model_r, request.model_s, request.pool, indices=candidates)
            return candidates[top_budget(scores, count).cpu()]

        order = group_order(request, self.worst_group, fill=self.fill)
        return draw_by_group(request, order, self.budget, rank)
