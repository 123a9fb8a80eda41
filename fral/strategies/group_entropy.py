"""G-ENT: maximum entropy within the worst group (the paper's supplementary Table 1)."""

from __future__ import annotations

from typing import Any

import torch

from fral._random import RandomState
from fral.protocol import Request, WorstGroupOptions, group_candidates, resolve_group
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
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None
        Seed of the validation attack's random starts.

    Notes
    -----
    ``group=k`` replaces the validation set (group ``k`` is used as is). A worst group with no
    candidate left is skipped, with a warning, for the next-worst one
    (:func:`fral.protocol.resolve_group`). Unlike G-RAND, a worst group smaller than the
    budget is not topped up from other groups: all of it is returned, with a warning. Cost:
    the validation evaluation plus one forward pass per candidate of the group.
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
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(
            budget, model=model, batch_size=batch_size, amp=amp, random_state=random_state
        )
        self.worst_group = WorstGroupOptions(attack, criterion, metric, batch_size, amp)

    @property
    def name(self) -> str:
        """``"G-ENT"``, as in the paper's supplementary material."""
        return "G-ENT"

    @property
    def requires(self) -> frozenset[str]:
        """``{"validation"}``, plus ``"model_s"`` when scoring the standard model."""
        return super().requires | {"validation"}

    def _candidates(self, request: Request) -> torch.Tensor:
        group = resolve_group(request, **self.worst_group.as_kwargs())
        return group_candidates(request.pool, group)
