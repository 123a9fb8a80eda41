"""The QueryStrategy protocol, the Strategy base class and helpers shared by strategies.

Every strategy is called the same way::

    picks = strategy.select(model_r, model_s, pool, labeled=..., validation=..., group=...)

and returns unique int64 indices into ``pool`` (on the CPU), at most ``budget``, best first.
A strategy declares in ``requires`` which optional inputs it cannot work without, so a loop
can skip work it does not need (training ``M_S`` only for strategies that use it) and a
missing input raises a ``ValueError`` naming it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from fral._modules import check_module, model_device, warn_user
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
    "check_amp",
    "check_batch_size",
    "check_budget",
    "check_flag",
    "check_int",
    "check_real",
    "clip_budget",
    "draw_by_group",
    "fill_plan",
    "group_candidates",
    "group_order",
    "top_budget",
]

REQUIREMENTS = frozenset({"model_s", "validation", "labeled"})
"""The inputs a strategy may list in ``requires``: ``model_s``, ``validation``, ``labeled``."""


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


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum`` (NumPy integers accepted), or a clear error.

    A ``TypeError`` for a bool, a float or any other non-integer; a ``ValueError`` below
    ``minimum``; both name ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval ``low .. high``, or a clear error.

    ``low_open``/``high_open`` exclude the bound. A ``TypeError`` for a non-number (bools
    included), a ``ValueError`` for NaN, infinity or a value outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


def check_flag(value: Any, name: str) -> bool:
    """``value`` if it is a bool (NumPy bools too), else a ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_amp(amp: Any) -> bool | torch.dtype:
    """``amp`` if it is a bool or a floating-point ``torch.dtype``, else a ``TypeError``."""
    if isinstance(amp, (bool, np.bool_)):
        return bool(amp)
    if isinstance(amp, torch.dtype) and amp.is_floating_point:
        return amp
    raise TypeError(
        f"amp must be True, False or a floating torch.dtype (torch.bfloat16), got {amp!r}"
    )


def check_budget(budget: Any) -> int:
    """``budget`` as an int >= 1 (NumPy integers accepted), or a clear error."""
    return check_int(budget, "budget")


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as a positive int (NumPy integers accepted), or a clear error."""
    return check_int(batch_size, "batch_size")


def clip_budget(budget: int, available: int, what: str = "candidates") -> int:
    """``min(budget, available)``, warning when the budget exceeds what is available."""
    if budget > available:
        warn_user(f"budget {budget} exceeds the {available} {what}; returning all of them")
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
        self.amp = check_amp(amp)

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`fral.metrics.group_ranking` (and of :func:`group_order`)."""
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
    #: Set by helpers that draw group by group (:func:`draw_by_group`, MinMax, OPT): the
    #: picks then report their groups in :attr:`Strategy.last_selection`.
    grouped: bool = False

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
        if len(value) == 0:
            raise ValueError(f"{name} is empty: give a labelled Pool with at least one sample")
    return value


def _groups_in_order(groups: torch.Tensor) -> list[int]:
    """The distinct values of ``groups`` in order of first appearance."""
    seen: dict[int, None] = {}
    for group in groups.tolist():
        seen.setdefault(group, None)
    return list(seen)


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

    Attributes
    ----------
    last_selection : dict or None
        After each :meth:`select`: ``{"groups": [g0, g1, ...]}``, the groups the picks were
        actually drawn from, in the order they were drawn (a strategy that tops up from the
        next group lists both), or ``{"groups": None}`` when the strategy drew from the whole
        pool without regard to groups. ``None`` before the first call.
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
        self.last_selection: dict[str, list[int] | None] | None = None

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
        picks = self._select(request).to("cpu", torch.int64)
        grouped = request.grouped or request.group is not None
        groups = _groups_in_order(request.pool.groups[picks]) if grouped else None
        self.last_selection = {"groups": groups}
        return picks

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
            if validation.num_groups != pool.num_groups:
                raise ValueError(
                    f"validation has num_groups={validation.num_groups} but pool has "
                    f"num_groups={pool.num_groups}; build both with Pool(..., num_groups=G)"
                )
        if labeled is not None:
            _check_pool(labeled, "labeled")
            if labeled.num_groups > pool.num_groups:
                raise ValueError(
                    f"labeled has num_groups={labeled.num_groups} but pool has "
                    f"num_groups={pool.num_groups}; build both with Pool(..., num_groups=G)"
                )
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


def group_order(
    request: Request, worst_group: WorstGroupOptions | None, *, fill: bool
) -> list[int] | None:
    """The groups a group-aware strategy draws from, first to last; ``None`` = the whole pool.

    - ``request.group = k``: group ``k`` (it must have candidates), then, with ``fill``, the
      other groups by ascending id. The validation set is not used.
    - else, with ``request.validation`` and ``worst_group``: the groups ranked worst to best
      on it (:func:`fral.metrics.group_ranking` of ``model_r`` under ``worst_group``'s
      options; ties to the lower id), then the groups without validation samples, by id.
      Worse groups with no candidate left are skipped with a warning.
    - else ``None``: no group is singled out.

    Groups without candidates are left out. Without ``fill`` only the first group is kept
    (Algorithm 1, line 5: draw from the worst group only).

    Returns
    -------
    list of int, or None
    """
    pool = request.pool
    counts = pool.group_counts()
    if request.group is not None:
        group_candidates(pool, request.group)
        ranked = [request.group]
    elif request.validation is not None and worst_group is not None:
        ranking = group_ranking(
            request.model_r,
            request.validation,
            random_state=request.seed,
            **worst_group.as_kwargs(),
        )
        ranked = [group for group in ranking.tolist() if group < pool.num_groups]
    else:
        return None
    rest = sorted(set(range(pool.num_groups)) - set(ranked))
    order = [group for group in ranked + rest if counts[group] > 0]
    skipped = list(itertools.takewhile(lambda group: counts[group] == 0, ranked))
    if skipped:
        warn_user(
            f"the worst group(s) {skipped} have no candidates left; selecting from group {order[0]}"
        )
    return order if fill else order[:1]


def fill_plan(order: list[int], budget: int, available: torch.Tensor) -> list[tuple[int, int]]:
    """``(group, count)`` draws that take each group of ``order`` whole, in turn, up to ``budget``.

    Parameters
    ----------
    order : list of int
        Groups, first to last.
    budget : int
        Most samples in all.
    available : torch.Tensor, shape (G,), int
        Candidates each group still has.

    Returns
    -------
    list of (group, count)
        Positive counts, at most ``available[group]`` each, summing to
        ``min(budget, available[order].sum())``.
    """
    plan, need = [], budget
    for group in order:
        take = min(need, int(available[group]))
        if take > 0:
            plan.append((group, take))
            need -= take
    return plan


def draw_by_group(
    request: Request,
    order: list[int] | None,
    budget: int,
    rank: Callable[[torch.Tensor, int], torch.Tensor],
) -> torch.Tensor:
    """Walk ``order`` (from :func:`group_order`), taking each group's best candidates in turn.

    Each group in ``order`` gives as many picks as the budget still needs, ranked by
    ``rank(candidates, count)`` among that group's candidates only, until ``budget`` picks
    are made. A budget above the candidates of all groups in ``order`` returns them all with
    a warning. ``order=None`` ranks the whole pool at once.

    Parameters
    ----------
    request : Request
    order : list of int, or None
    budget : int
    rank : callable
        ``rank(candidates, count)``: given ascending pool indices (int64, CPU) and a count no
        larger than their number, the ``count`` best of them (pool indices), best first.

    Returns
    -------
    torch.Tensor, int64, on the CPU
        Pool indices, group by group in ``order``, best first within a group.
    """
    pool = request.pool
    if order is None:
        candidates = torch.arange(len(pool))
        return rank(candidates, clip_budget(budget, candidates.numel())).cpu()
    request.grouped = True
    available = pool.group_counts()
    total = clip_budget(budget, sum(int(available[group]) for group in order))
    plan = fill_plan(order, total, available)
    return torch.cat([rank(pool.group_indices(group), take).cpu() for group, take in plan])
