"""JIN: Joint INconsistency (Wu, Chen & Hsu), Algorithm 1 steps 2-4."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fral._modules import model_device, warn_user
from fral._random import RandomState, make_generator
from fral.distributed import map_batches
from fral.pool import Pool, as_index_tensor
from fral.protocol import (
    Request,
    Strategy,
    WorstGroupOptions,
    check_flag,
    draw_by_group,
    group_order,
    top_budget,
)
from fral.scores import check_weights, fuse
from fral.scoring import COMPONENTS, check_components, inconsistency_scores

__all__ = ["JIN"]


class JIN(Strategy):
    """Label the worst group's samples on which the models disagree most.

    For each candidate ``x`` of the worst group:

    - standard inconsistency (Eq. 2) ``I_std = KL(p(x; M_S) || p(x; M_R))``;
    - robust inconsistency (Eq. 3) ``I_rob = KL(p(x; M_R) || p(A(x); M_R))``;
    - joint score (Eq. 4) ``I = z(I_std) + z(I_rob)``, z-scored over the candidates;

    and the top-``budget`` candidates by ``I`` are returned. When the worst group has fewer
    than ``budget`` candidates, all of them are taken and the rest of the budget is topped up
    from the next-worst group, ranked by its own ``I`` (``fill=True``, the default).

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    attack : optional
        The attack ``A``: ``None`` for the paper's PGD-5 (eps 4/255, step 2/255), run as
        cross-entropy against ``M_R``'s own clean prediction; a :class:`fral.PGD` (e.g.
        ``PGD(objective="kl")``), a torchattacks attack bound to ``model_r``, or a callable.
        The same attack estimates the worst group's robust accuracy.
    components : tuple of {"standard", "robust"}, default both
        ``("standard",)`` and ``("robust",)`` are the paper's S and R ablations (Table 3).
    weights : tuple of float, optional
        Weight of each component's z-score in the sum (default 1 each, as in Eq. 4): finite,
        non-negative, with a positive sum (:func:`fral.scores.check_weights`).
    criterion : {"mean", "clean", "robust"}, default "mean"
        How the worst group is found on ``validation`` when ``group`` is not given: the lowest
        mean of clean and PGD accuracy of ``model_r`` (default), or the lowest of either
        alone. See :func:`fral.metrics.rank_groups`.
    metric : {"accuracy", "f1"}, default "accuracy"
        Per-group metric for that choice.
    fill : bool, default True
        Spend the whole budget: when the worst group runs short, take all of it and top up
        from the next-worst group, and so on (see Notes). ``False`` is the paper's strict rule
        (Algorithm 1, lines 5-7: the worst group only); a budget above its size then returns
        all of it, with a warning.
    batch_size : int, default 256
        Candidates per batch.
    amp : bool or torch.dtype, default False
        Autocast the forward passes (``True``: bfloat16).
    optimize : bool, default True
        Score on optimised eval copies of the models (BatchNorm folded).
    random_state : int, torch.Generator or None
        Seed of the attack's random starts.

    Notes
    -----
    Group order (:func:`fral.protocol.group_order`): with ``group=k``, group ``k`` first, then
    the other groups by ascending id (the validation set is not evaluated); else with
    ``validation``, the groups from worst to best of ``model_r`` on it, then those without
    validation samples, by id (a worst group with no candidate left is skipped, with a
    warning); else the whole pool, scored as one set, with a warning that no group is singled
    out (no fairness).

    Top-up: each group's candidates are ranked by ``I`` z-scored *within that group*, exactly
    as ``JIN(group=next)`` would rank them. The worst group's picks are then those of the
    paper whatever the budget, each group is scored only when the budget reaches it, and
    Eq. 4's balance between the two components holds in every group (z-scores over the union
    would let the groups' different spreads tilt it).

    Examples
    --------
    >>> picks = JIN(budget=100).select(model_r, model_s, pool, validation=val)  # doctest: +SKIP
    """

    group_aware = True

    def __init__(
        self,
        budget: int,
        *,
        attack: Any = None,
        components: tuple[str, ...] = COMPONENTS,
        weights: tuple[float, ...] | None = None,
        criterion: str = "mean",
        metric: str = "accuracy",
        fill: bool = True,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        optimize: bool = True,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        if not isinstance(components, (str, tuple, list)):
            raise TypeError(
                f"components must be a tuple of 'standard'/'robust', got {components!r}"
            )
        self.components = check_components(components)
        self.worst_group = WorstGroupOptions(attack, criterion, metric, batch_size, amp)
        self.attack = self.worst_group.attack
        self.weights = None if weights is None else check_weights(weights, len(self.components))
        self.fill = check_flag(fill, "fill")
        self.batch_size = self.worst_group.batch_size
        self.amp = self.worst_group.amp
        self.optimize = check_flag(optimize, "optimize")

    def __repr__(self) -> str:
        return f"JIN(budget={self.budget}, components={self.components})"

    @property
    def name(self) -> str:
        """``"JIN"``, or the ablation's name: ``"JIN-S"`` (standard only), ``"JIN-R"``."""
        if len(self.components) == 1:
            return f"JIN-{self.components[0][0].upper()}"
        return "JIN"

    @property
    def requires(self) -> frozenset[str]:
        """``{"model_s"}`` when the standard inconsistency is used, else nothing."""
        return frozenset({"model_s"}) if "standard" in self.components else frozenset()

    def component_scores(
        self,
        model_r: nn.Module,
        model_s: nn.Module | None,
        data: Pool | torch.Tensor,
        *,
        indices: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        skipped_batches: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Raw ``I_std`` and/or ``I_rob`` per candidate, on ``model_r``'s device.

        ``skipped_batches``: see :func:`fral.scoring.inconsistency_scores`. Not sharded
        (:meth:`score` shards it across ranks).
        """
        return inconsistency_scores(
            model_r,
            data,
            model_s,
            components=self.components,
            attack=self.attack,
            indices=indices,
            batch_size=self.batch_size,
            amp=self.amp,
            generator=generator,
            optimize=self.optimize,
            skipped_batches=skipped_batches,
        )

    def score(
        self,
        model_r: nn.Module,
        model_s: nn.Module | None = None,
        pool: Pool | torch.Tensor | None = None,
        *,
        indices: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The joint score ``I`` (Eq. 4) of every candidate, z-scored over them.

        Parameters
        ----------
        model_r, model_s : nn.Module
            Robust and standard models (``model_s`` only if the standard component is used).
        pool : Pool or torch.Tensor
            Candidates ``(N, ...)``.
        indices : torch.Tensor, optional
            Score these samples only (the z-scores are over them).
        generator : torch.Generator, optional
            Source of the attack's random starts (default: the strategy's next seed).

        Returns
        -------
        torch.Tensor, shape (N,) or (K,), on ``model_r``'s device.

        Notes
        -----
        Under a process group each rank computes the raw scores of its shard of the
        candidates, the raw scores are gathered and the z-scores taken over all of them, so
        every rank returns the one-process scores (:mod:`fral.distributed`).
        """
        if pool is None:
            raise ValueError("JIN.score needs the candidates (pool)")
        if "standard" in self.components and model_s is None:
            raise ValueError("JIN requires `model_s` for the standard inconsistency")
        if indices is not None and isinstance(pool, Pool):
            indices = as_index_tensor(indices, len(pool))
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self._rng).item())
            generator = make_generator(seed, model_device(model_r))
        total = len(pool) if indices is None else len(indices)

        def shard_scores(rows: torch.Tensor | None, skipped: int) -> dict[str, torch.Tensor]:
            return self.component_scores(
                model_r, model_s, pool, indices=rows, generator=generator, skipped_batches=skipped
            )

        scores = map_batches(shard_scores, total, self.batch_size, indices)
        return fuse(*(scores[name] for name in self.components), weights=self.weights)

    def _select(self, request: Request) -> torch.Tensor:
        if request.group is None and request.validation is None:
            warn_user(
                "JIN got neither `validation` nor `group`: it scores the whole pool, with no "
                "regard to groups (no fairness); pass validation= to draw from the worst group"
            )

        def rank(candidates: torch.Tensor, count: int) -> torch.Tensor:
            scores = self.score(
                request.model_r,
                request.model_s,
                request.pool,
                indices=candidates,
                generator=request.generator(),
            )
            return candidates[top_budget(scores, count).cpu()]

        order = group_order(request, self.worst_group, fill=self.fill)
        return draw_by_group(request, order, self.budget, rank)
