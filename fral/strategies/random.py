"""RAND: uniform random selection, the paper's first active-learning baseline."""

from __future__ import annotations

import torch

from fral._random import RandomState
from fral.protocol import Request, Strategy, candidate_indices, clip_budget

__all__ = ["RAND"]


class RAND(Strategy):
    """Pick ``budget`` candidates uniformly at random, without replacement.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    random_state : int, torch.Generator or None
        Seed of the strategy's random stream; the same int gives the same picks call for call.

    Notes
    -----
    Candidates: group ``k`` with ``group=k``, else the whole pool. The draw is one
    ``torch.randperm`` on a CPU generator seeded per call, so the picks do not depend on the
    model's device. A budget above the number of candidates returns them all (in random
    order) with a warning. Time O(N), memory O(N); the model is not run.

    Examples
    --------
    >>> picks = RAND(budget=100, random_state=0).select(model_r, pool=pool)  # doctest: +SKIP
    """

    def __init__(self, budget: int, *, random_state: RandomState = None) -> None:
        super().__init__(budget, random_state=random_state)

    def _select(self, request: Request) -> torch.Tensor:
        candidates = candidate_indices(request.pool, request.group)
        count = clip_budget(self.budget, candidates.numel())
        order = torch.randperm(candidates.numel(), generator=request.generator("cpu"))
        return candidates[order[:count]]
