"""RAND: uniform random selection, the paper's first active-learning baseline."""

from __future__ import annotations

import warnings

import torch

from fral._random import RandomState
from fral.pool import Pool
from fral.protocol import Request, Strategy, group_candidates

__all__ = ["RAND", "candidate_indices", "candidate_pool", "clip_budget"]


def candidate_indices(request: Request) -> torch.Tensor:
    """Pool indices a strategy may pick from: group ``request.group``, or the whole pool.

    Returns
    -------
    torch.Tensor, int64, on the CPU, ascending
    """
    if request.group is None:
        return torch.arange(len(request.pool))
    return group_candidates(request.pool, request.group)


def candidate_pool(request: Request, candidates: torch.Tensor) -> Pool:
    """The pool restricted to ``candidates`` (the pool itself when it holds all of them)."""
    if candidates.numel() == len(request.pool):
        return request.pool
    return request.pool.subset(candidates)


def clip_budget(budget: int, available: int, what: str = "candidates") -> int:
    """``min(budget, available)``, warning when the budget exceeds what is available."""
    if budget > available:
        warnings.warn(
            f"budget {budget} exceeds the {available} {what}; returning all of them",
            stacklevel=4,
        )
    return min(budget, available)


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
        candidates = candidate_indices(request)
        count = clip_budget(self.budget, candidates.numel())
        order = torch.randperm(candidates.numel(), generator=request.generator("cpu"))
        return candidates[order[:count]]
