"""The QueryStrategy protocol, the Strategy base class and helpers shared by strategies.

Every strategy is called the same way::

    picks = strategy.select(model_r, model_s, pool, labeled=..., validation=..., group=...)

and returns unique int64 indices into ``pool`` (on the CPU), at most ``budget``, best first.
A strategy declares in ``requires`` which optional inputs it cannot work without, so a loop
can skip work it does not need (training ``M_S`` only for strategies that use it) and a
missing input raises a ``ValueError`` naming it.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from fral._modules import check_module, model_device
from fral._random import RandomState, make_generator, resolve_seed
from fral.attacks import as_attack
from fral.metrics import CRITERIA, METRICS, group_ranking
from fral.pool import Pool

__all__ = [
    "REQUIREMENTS",
    "QueryStrategy",
    "Request",
    "Strategy",
    "WorstGroupOptions",
    "candidate_indices",
    "check_batch_size",
    "check_budget",
    "clip_budget",
    "group_candidates",
    "resolve_group",
    "top_budget",
]

REQUIREMENTS = frozenset({"model_s", "validation", "labeled"})


@runtime_checkable
class QueryStrategy(Protocol):
    """What a loop needs of an active-learning strategy.

    Attributes
    ----------
    budget : int
        Most indices one call of :meth:`select` returns.
    requires : frozenset of str
        Inputs of :meth:`select` the strategy cannot work without, among
        ``{"model_s", "validation", "labeled"}``.
    """

    budget: int

    @property
    def requires(self) -> frozenset[str]: ...

    def select(
        self,
        model_r: nn.Module,
        model_s: nn.Module | None = None,
        pool: Pool | None = None,
        *,
        labeled: Pool | None = None,
        validation: Pool | None = None,
        group: int | None = None,
    ) -> torch.Tensor: ...


def check_budget(budget: Any) -> int:
    """``budget`` as an int >= 1, or a clear error."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget must be an integer, got {type(budget).__name__}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    return int(budget)


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as a positive int, or a clear error."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


_PACKAGE_DIR = os.path.dirname(__file__) + os.sep


def _warn_user(message: str) -> None:
    """Warn, attributing the warning to the first caller outside fral.

    A warning raised in a helper of a strategy (``select -> _select -> ... -> helper``) so
    points at the user's ``strategy.select(...)`` line, however deep the helper is called.
    """
    frame, stacklevel = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, stacklevel=stacklevel)


def clip_budget(budget: int, available: int, what: str = "candidates") -> int:
    """``min(budget, available)``, warning when the budget exceeds what is available."""
    if budget > available:
        _warn_user(f"budget {budget} exceeds the {available} {what}; returning all of them")
    return min(budget, available)


def top_budget(scores: torch.Tensor, budget: int, *, what: str = "candidates") -> torch.Tensor:
    """Positions of the ``budget`` highest scores, best first, on the scores' device.

    Ties are broken by position (the lower first), so the result is deterministic. A budget
    above the number of scores returns them all, ranked, with a warning.

    Parameters
    ----------
    scores : torch.Tensor, shape (K,)
        One finite float per candidate.
    budget : int
        How many to return.

    Returns
    -------
    torch.Tensor, shape (min(budget, K),), int64
    """
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor, got shape {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores hold NaN or infinite values; the ranking would be meaningless")
    count = clip_budget(budget, scores.numel(), what)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:count]


def group_candidates(pool: Pool, group: int) -> torch.Tensor:
    """Indices of ``pool`` in ``group``; a ``ValueError`` if it has none."""
    candidates = pool.group_indices(group)
    if candidates.numel() == 0:
        raise ValueError(f"group {group} has no candidates in the pool")
    return candidates


def candidate_indices(pool: Pool, group: int | None) -> torch.Tensor:
    """Pool indices a strategy may pick from: those of ``group``, or the whole pool if ``None``.

    A ``ValueError`` if ``group`` has no candidates.

    Returns
    -------
    torch.Tensor, int64, on the CPU, ascending
    """
    if group is None:
        return torch.arange(len(pool))
    return group_candidates(pool, group)


class WorstGroupOptions:
    """How a group-aware strategy ranks the groups on the validation set.

    Parameters
    ----------
    attack : optional
        Attack for the robust accuracy (``None``: the paper's PGD-5 at 4/255); see
        :func:`fral.attacks.as_attack`.
    criterion : {"mean", "clean", "robust"}, default "mean"
        Groups are ranked by the mean of clean and robust metric of ``model_r`` (FRAL asks for
        both), or by either alone; see :func:`fral.metrics.rank_groups`.
    metric : {"accuracy", "f1"}, default "accuracy"
        Per-group metric.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    """

    def __init__(
        self,
        attack: Any = None,
        criterion: str = "mean",
        metric: str = "accuracy",
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
    ) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.attack = as_attack(attack)
        self.criterion = criterion
        self.metric = metric
        self.batch_size = check_batch_size(batch_size)
        self.amp = amp

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`resolve_group` and :func:`fral.metrics.group_ranking`."""
        return {
            "attack": self.attack,
            "criterion": self.criterion,
            "metric": self.metric,
            "batch_size": self.batch_size,
            "amp": self.amp,
        }


@dataclass
class Request:
    """The checked arguments of one :meth:`Strategy.select` call, plus its random seed."""

    model_r: nn.Module
    model_s: nn.Module | None
    pool: Pool
    labeled: Pool | None
    validation: Pool | None
    group: int | None
    seed: int

    @property
    def device(self) -> torch.device:
        """Where ``model_r`` lives; scores are computed there."""
        return model_device(self.model_r)

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        """A generator seeded with this call's seed, on ``device`` (default: the model's)."""
        return make_generator(self.seed, self.device if device is None else device)


def _check_pool(value: Any, name: str, labels: bool = False) -> Pool:
    if not isinstance(value, Pool):
        raise TypeError(f"{name} must be a fral.Pool, got {type(value).__name__}")
    if labels:
        value.require_labels(name)
    return value


class Strategy:
    """Base class: stores options, validates every call, then runs :meth:`_select`.

    Parameters
    ----------
    budget : int
        Number of samples to pick per call (``B``).
    random_state : int, torch.Generator or None
        Seed of the strategy's random stream. Two strategies built with the same int give the
        same picks call for call; ``None`` draws a seed from torch's global RNG.

    Notes
    -----
    Subclasses set ``requires`` and implement ``_select(request) -> LongTensor`` returning
    pool indices, best first. Strategies that carry state across rounds (MinMax's weights)
    override :meth:`state_dict` and :meth:`load_state_dict`; the random stream is part of it.
    """

    requires: frozenset[str] = frozenset()
    #: True where ``validation`` serves only to find the worst group, so ``group=k`` replaces it.
    validation_finds_group: bool = False
    #: True for strategies that draw from the worst group (Algorithm 1, lines 5-6): a loop that
    #: has found it on the validation set passes it as ``group=`` instead of letting the
    #: strategy evaluate the validation set again.
    group_aware: bool = False

    def __init__(self, budget: int, *, random_state: RandomState = None) -> None:
        self.budget = check_budget(budget)
        self.random_state = random_state
        self._rng = make_generator(resolve_seed(random_state))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget={self.budget})"

    @property
    def name(self) -> str:
        """Short name used in results (the class name)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint between rounds: the random stream (and subclass state)."""
        return {"rng": self._rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._rng.set_state(state["rng"])

    def select(
        self,
        model_r: nn.Module,
        model_s: nn.Module | None = None,
        pool: Pool | None = None,
        *,
        labeled: Pool | None = None,
        validation: Pool | None = None,
        group: int | None = None,
    ) -> torch.Tensor:
        """Pick up to ``budget`` samples of ``pool`` to label.

        Parameters
        ----------
        model_r : nn.Module
            The robust (adversarially trained) model ``M_R``. Not modified.
        model_s : nn.Module, optional
            The standard-trained model ``M_S`` (needed where ``"model_s" in requires``).
        pool : Pool
            The unlabelled candidates ``D_U`` with their groups.
        labeled : Pool, optional
            The labelled set ``D_L`` (inputs and groups; labels where the strategy needs them).
        validation : Pool, optional
            Labelled validation set ``D_V`` with groups.
        group : int, optional
            Restrict the picks to this group (strategies that are group-aware).

        Returns
        -------
        torch.Tensor, int64, on the CPU
            Unique indices into ``pool``, at most ``budget``, best first.
        """
        request = self._check(model_r, model_s, pool, labeled, validation, group)
        picks = self._select(request)
        return picks.to("cpu", torch.int64)

    def _select(self, request: Request) -> torch.Tensor:
        raise NotImplementedError

    def _check(
        self,
        model_r: Any,
        model_s: Any,
        pool: Any,
        labeled: Any,
        validation: Any,
        group: Any,
    ) -> Request:
        name = type(self).__name__
        if pool is None and isinstance(model_s, Pool):
            raise TypeError(
                f"{name}.select got a Pool as model_s and no pool: call "
                "select(model_r, model_s, pool) or select(model_r, pool=pool)"
            )
        check_module(model_r, "model_r")
        if pool is None:
            raise ValueError(f"{name}.select needs the pool of unlabelled candidates")
        _check_pool(pool, "pool")
        if len(pool) == 0:
            raise ValueError(f"{name}.select got an empty pool: there is nothing to select")
        given = {"model_s": model_s, "validation": validation, "labeled": labeled}
        if group is not None and self.validation_finds_group:
            given["validation"] = True
        for requirement in sorted(self.requires):
            if given[requirement] is None:
                raise ValueError(f"{name} requires `{requirement}`, which was not given")
        if model_s is not None:
            check_module(model_s, "model_s")
            if model_device(model_s) != model_device(model_r):
                raise ValueError(
                    f"model_r is on {model_device(model_r)} but model_s is on "
                    f"{model_device(model_s)}; put both on one device"
                )
        if validation is not None:
            _check_pool(validation, "validation", labels=True)
        if labeled is not None:
            _check_pool(labeled, "labeled")
        if group is not None:
            if isinstance(group, bool) or not isinstance(group, (int, np.integer)):
                raise TypeError(f"group must be an int group id or None, got {group!r}")
            if not 0 <= group < pool.num_groups:
                raise ValueError(
                    f"group {group} is not a group id of the pool (0..{pool.num_groups - 1})"
                )
            group = int(group)
        seed = int(torch.randint(0, 2**62, (1,), generator=self._rng).item())
        return Request(model_r, model_s, pool, labeled, validation, group, seed)


def resolve_group(
    request: Request,
    *,
    attack: Any = None,
    criterion: str = "mean",
    metric: str = "accuracy",
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
) -> int | None:
    """The group a group-aware strategy draws from (Algorithm 1, line 5).

    ``request.group`` when given (it must have candidates); else the worst group of
    ``model_r`` on ``request.validation`` (see :func:`fral.metrics.group_ranking`), skipping,
    with a warning, worse groups that have no candidate left in the pool; else ``None``,
    meaning the whole pool.
    """
    if request.group is not None:
        group_candidates(request.pool, request.group)
        return request.group
    if request.validation is None:
        return None
    ranking = group_ranking(
        request.model_r, request.validation, attack=attack, criterion=criterion, metric=metric,
        batch_size=batch_size, amp=amp, random_state=request.seed,
    )  # fmt: skip
    counts = request.pool.group_counts()
    for position, group in enumerate(ranking.tolist()):
        if group < counts.numel() and counts[group] > 0:
            if position:
                _warn_user(
                    f"the worst group(s) {ranking[:position].tolist()} have no candidates left; "
                    f"selecting from group {group}"
                )
            return group
    raise ValueError("no group ranked on the validation set has candidates in the pool")
