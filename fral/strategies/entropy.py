"""ENT: maximum predictive entropy (uncertainty sampling, Wang et al. 2014)."""

from __future__ import annotations

import torch
from torch import nn

from fral._random import RandomState
from fral.pool import Pool, as_index_tensor
from fral.protocol import (
    Request,
    Strategy,
    candidate_indices,
    check_amp,
    check_batch_size,
    top_budget,
)
from fral.scoring import entropy_scores

__all__ = ["ENT", "MODELS"]

MODELS = ("robust", "standard")
"""Which model's predictions an entropy strategy scores."""


class ENT(Strategy):
    """Label the candidates whose prediction is the most uncertain.

    Each candidate is scored by the predictive entropy ``-sum_c p_c log p_c`` of the model's
    softmax on the clean input, and the top-``budget`` are returned, most uncertain first.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    model : {"robust", "standard"}, default "robust"
        Whose predictions are scored: the robust model ``M_R`` (the paper's setting, since
        ``M_R`` is the model being trained) or the standard model ``M_S`` (then ``model_s`` is
        required).
    batch_size : int, default 256
        Candidates per forward pass.
    amp : bool or torch.dtype, default False
        Autocast the forward passes (``True``: bfloat16); entropies are computed in float32.
    random_state : int, torch.Generator or None
        Seed of the strategy's stream (ENT itself draws nothing; kept for a uniform API).

    Notes
    -----
    Candidates: group ``k`` with ``group=k``, else the whole pool. Ties are broken by the
    lower pool index. One forward pass per candidate, batched on the model's device: time
    O(N) forward passes, memory O(N C).

    Examples
    --------
    >>> picks = ENT(budget=100).select(model_r, pool=pool)  # doctest: +SKIP
    """

    def __init__(
        self,
        budget: int,
        *,
        model: str = "robust",
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        if not isinstance(model, str) or model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.model = model
        self.batch_size = check_batch_size(batch_size)
        self.amp = check_amp(amp)

    @property
    def requires(self) -> frozenset[str]:
        """``{"model_s"}`` when scoring the standard model, else nothing."""
        return frozenset({"model_s"}) if self.model == "standard" else frozenset()

    def score(
        self,
        model_r: nn.Module,
        model_s: nn.Module | None = None,
        pool: Pool | torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predictive entropy (nats) of the chosen model on every candidate.

        Parameters
        ----------
        model_r, model_s : nn.Module
            Robust and standard models (``model_s`` only with ``model="standard"``).
        pool : Pool or torch.Tensor
            Candidates ``(N, ...)``.
        indices : torch.Tensor, optional
            Score these samples only, in this order.

        Returns
        -------
        torch.Tensor, shape (N,) or (K,), float32, on the scored model's device.
        """
        if pool is None:
            raise ValueError(f"{type(self).__name__}.score needs the candidates (pool)")
        if self.model == "standard" and model_s is None:
            raise ValueError(f"{type(self).__name__}(model='standard') requires `model_s`")
        if indices is not None and isinstance(pool, Pool):
            indices = as_index_tensor(indices, len(pool))
        model = model_r if self.model == "robust" else model_s
        return entropy_scores(
            model, pool, indices=indices, batch_size=self.batch_size, amp=self.amp
        )

    def _select(self, request: Request) -> torch.Tensor:
        candidates = candidate_indices(request.pool, request.group)
        scores = self.score(request.model_r, request.model_s, request.pool, indices=candidates)
        return candidates[top_budget(scores, self.budget).cpu()]
