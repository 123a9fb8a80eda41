"""Group metrics: per-group accuracy and macro-F1, clean and under attack, and their summaries.

FRAL's quality is minimax fairness (Eq. 1): ``F_std`` is the worst group's clean accuracy and
``F_rob`` its accuracy under a white-box PGD attack. The paper also reports the disparity
(best minus worst group) and the group average (unweighted mean over groups); HAM-10000 uses
macro-F1 instead of accuracy.

:class:`GroupMetric` also speaks fairlearn's ``MetricFrame`` language (``overall``,
``by_group``, ``group_min``, ``group_max``, ``difference``, ``ratio``) and gives bootstrap
confidence intervals of these figures (:meth:`GroupMetric.bootstrap`): validation and test
groups are small, and a worst-group number without an interval misleads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fral._modules import autocast, check_input_batch, check_module, evaluation_view, model_device
from fral._random import RandomState, make_generator, resolve_seed
from fral.attacks import as_attack, check_labels, run_attack
from fral.autoattack import AutoAttack
from fral.distributed import advance_attack_stream, map_batches
from fral.pool import Pool

__all__ = [
    "CRITERIA",
    "METRICS",
    "RISKS",
    "ConfidenceIntervals",
    "Evaluation",
    "GroupMetric",
    "clean_and_adversarial_logits",
    "evaluate",
    "group_accuracy",
    "group_f1",
    "group_ranking",
    "group_risks",
    "rank_groups",
    "select_worst_group",
    "worst_group",
]

METRICS = ("accuracy", "f1")
"""The per-group metrics fral computes: accuracy and macro-F1."""
CRITERIA = ("mean", "clean", "robust")
"""Worst-group rules: the mean of clean and robust figures, or either alone."""
RISKS = ("error", "ce")
"""Per-group risks of :func:`group_risks`: error rate or cross-entropy."""


BETWEEN_GROUPS = "between_groups"
TO_OVERALL = "to_overall"
_METHODS = (BETWEEN_GROUPS, TO_OVERALL)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class GroupMetric:
    """A metric per group, with the paper's summaries and fairlearn's ``MetricFrame`` names.

    The figures follow fairlearn's ``MetricFrame`` conventions: :attr:`overall` (on all
    samples), :attr:`by_group`, :meth:`group_min`, :meth:`group_max`, :meth:`difference`
    (``max - min``) and :meth:`ratio` (``min / max``). The paper's names stay: :attr:`worst`
    is :meth:`group_min` (``F_std``/``F_rob`` of Eq. 1), :attr:`disparity` is
    :meth:`difference` and :attr:`average` the unweighted mean over groups.

    A group with no sample (declared by ``num_groups`` but absent from the data) has NaN in
    :attr:`per_group` and :attr:`by_group` and is left out of every summary; fairlearn, which
    only knows the groups it sees, leaves it out too.

    Attributes
    ----------
    name : str
        ``"accuracy"`` or ``"f1"`` (macro-F1).
    per_group : torch.Tensor, shape (G,), float64
        The metric of each group, in [0, 1]; NaN for a group with no sample.
    counts : torch.Tensor, shape (G,), int64
        Samples per group.
    overall : float
        The metric on all samples together (NaN when built without it).
    group_names : tuple of str, optional
        Names of the ``G`` groups, used as the keys of :attr:`by_group` and the rows of
        :meth:`to_frame`; ids where absent.
    samples : tuple of torch.Tensor, optional
        ``(predictions, labels, groups)``, each of shape (N,), int64: what
        :meth:`bootstrap` resamples. :func:`group_accuracy` and :func:`group_f1` keep them.
    """

    name: str
    per_group: torch.Tensor
    counts: torch.Tensor = field(repr=False)
    overall: float = math.nan
    group_names: tuple[str, ...] | None = field(default=None, repr=False)
    samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.group_names is not None:
            names = tuple(str(name) for name in self.group_names)
            if len(names) != self.per_group.numel():
                raise ValueError(
                    f"group_names holds {len(names)} names for {self.per_group.numel()} groups; "
                    "give one name per group id"
                )
            object.__setattr__(self, "group_names", names)

    def _present(self) -> torch.Tensor:
        present = self.per_group[self.counts > 0]
        if present.numel() == 0:
            raise ValueError("no group has any sample")
        return present

    def _label(self, group: int) -> int | str:
        return group if self.group_names is None else self.group_names[group]

    @property
    def by_group(self) -> dict[int | str, float]:
        """The metric of each group, keyed by group name (or id without names); NaN for a
        group with no sample."""
        return {self._label(g): float(v) for g, v in enumerate(self.per_group.tolist())}

    def group_min(self) -> float:
        """Minimum over groups with samples (fairlearn's ``group_min``; the paper's worst
        group, ``F_std``/``F_rob`` of Eq. 1)."""
        return float(self._present().min())

    def group_max(self) -> float:
        """Maximum over groups with samples (fairlearn's ``group_max``)."""
        return float(self._present().max())

    def difference(self, method: str = BETWEEN_GROUPS) -> float:
        """fairlearn's ``difference``: ``group_max - group_min`` (``"between_groups"``), or
        the largest ``|group - overall|`` (``"to_overall"``); groups with samples only."""
        present = self._present()
        if _check_method(method) == BETWEEN_GROUPS:
            return float(present.max() - present.min())
        return float((present - self._overall()).abs().max())

    def ratio(self, method: str = BETWEEN_GROUPS) -> float:
        """fairlearn's ``ratio``: ``group_min / group_max`` (``"between_groups"``), or the
        smallest ``min(group / overall, overall / group)`` (``"to_overall"``); groups with
        samples only.

        Where a denominator is 0 (every group at 0 for ``"between_groups"``; a group or the
        overall figure at 0 for ``"to_overall"``), the ratio is NaN (0/0 is undefined) or 0
        (a positive figure against 0), never an error.
        """
        present = self._present()
        if _check_method(method) == BETWEEN_GROUPS:
            return _safe_ratio(float(present.min()), float(present.max()))
        overall = self._overall()
        values = [min(_safe_ratio(v, overall), _safe_ratio(overall, v)) for v in present.tolist()]
        return float("nan") if any(math.isnan(v) for v in values) else min(values)

    def _overall(self) -> float:
        if math.isnan(self.overall):
            raise ValueError(
                f"this {self.name} GroupMetric was built without its overall figure; "
                "compute it with group_accuracy or group_f1"
            )
        return self.overall

    @property
    def worst(self) -> float:
        """Minimum over groups with samples (``F_std``/``F_rob`` of Eq. 1): :meth:`group_min`."""
        return self.group_min()

    @property
    def worst_group(self) -> int:
        """Id of the worst group (the lowest id on ties)."""
        values = torch.where(self.counts > 0, self.per_group, torch.inf)
        return int(torch.argmin(values))

    @property
    def disparity(self) -> float:
        """Best minus worst group: :meth:`difference`."""
        return self.difference()

    @property
    def average(self) -> float:
        """Unweighted mean over groups with samples (the paper's "Grp. Avg.")."""
        return float(self._present().mean())

    def bootstrap(
        self,
        n_resamples: int = 1000,
        confidence_level: float = 0.95,
        random_state: RandomState = 0,
    ) -> ConfidenceIntervals:
        """Percentile-bootstrap confidence intervals of the group figures.

        Method: stratified percentile bootstrap. Each resample draws, within every group, as
        many samples as the group holds, with replacement, from that group's
        ``(prediction, label)`` pairs (so group sizes are fixed and no group goes empty);
        the metric is recomputed per group and summarised. The interval is the
        ``(1 - confidence_level) / 2`` and ``(1 + confidence_level) / 2`` quantiles of the
        resampled figures (linear interpolation, resamples where a figure is NaN left out).
        The predictions are resampled, the model is not run again: the interval covers the
        sampling of the evaluation set, not the randomness of training or of the attack.

        The draw is exact and cheap: resampling ``n`` pairs with replacement gives
        multinomial counts over the group's confusion cells, drawn as a chain of binomials
        from one seeded generator (cost independent of the number of samples).

        Parameters
        ----------
        n_resamples : int, default 1000
            Bootstrap resamples (>= 1).
        confidence_level : float, default 0.95
            In (0, 1).
        random_state : int, torch.Generator or None, default 0
            Seed of the resampling.

        Returns
        -------
        ConfidenceIntervals
        """
        from fral.protocol import check_int, check_real  # fral.protocol imports this module

        n_resamples = check_int(n_resamples, "n_resamples", 1)
        confidence_level = check_real(
            confidence_level, "confidence_level", 0.0, 1.0, low_open=True, high_open=True
        )
        if self.samples is None:
            raise ValueError(
                f"this {self.name} GroupMetric holds no samples to resample; compute it with "
                "group_accuracy, group_f1 or evaluate"
            )
        generator = make_generator(resolve_seed(random_state))
        per_group, overall = _resample(
            self.name, *self.samples, self.counts.numel(), n_resamples, generator
        )
        present = self.counts > 0
        values = per_group[:, present]
        low, high = values.min(1).values, values.max(1).values
        figures = {
            "overall": overall,
            "group_min": low,
            "group_max": high,
            "difference": high - low,
            "ratio": torch.where(high > 0, low / high.clamp_min(1e-300), torch.nan),
        }
        q = torch.tensor(
            [(1 - confidence_level) / 2, (1 + confidence_level) / 2], dtype=torch.float64
        )
        intervals = {name: _interval(value, q) for name, value in figures.items()}
        by_group = torch.full((self.counts.numel(), 2), torch.nan, dtype=torch.float64)
        for g in torch.nonzero(present).flatten().tolist():
            by_group[g] = torch.tensor(_interval(per_group[:, g], q), dtype=torch.float64)
        return ConfidenceIntervals(
            metric=self.name,
            confidence_level=float(confidence_level),
            n_resamples=n_resamples,
            by_group=by_group,
            group_names=self.group_names,
            **intervals,
        )

    def to_frame(self) -> Any:
        """The per-group figures as a ``pandas.DataFrame`` (needs pandas, not a dependency
        of fral): one row per group (named where names are known), columns ``self.name``
        and ``count``."""
        pandas = _pandas()
        return pandas.DataFrame(
            {self.name: self.per_group.tolist(), "count": self.counts.tolist()},
            index=pandas.Index([self._label(g) for g in range(self.counts.numel())], name="group"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary (JSON-ready; NaN written as ``None``)."""
        return {
            "per_group": [_json_float(v) for v in self.per_group.tolist()],
            "counts": self.counts.tolist(),
            "worst": self.worst,
            "worst_group": self.worst_group,
            "disparity": self.disparity,
            "average": self.average,
            "overall": _json_float(self.overall),
            "group_max": self.group_max(),
            "ratio": _json_float(self.ratio()),
        }


def _check_method(method: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS} (as in fairlearn), got {method!r}")
    return method


def _safe_ratio(numerator: float, denominator: float) -> float:
    if denominator == 0:
        return float("nan") if numerator == 0 else 0.0
    return numerator / denominator


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            "to_frame needs pandas, which fral does not install: pip install pandas"
        ) from error
    return pandas


@dataclass(frozen=True)
class ConfidenceIntervals:
    """Bootstrap confidence intervals of a :class:`GroupMetric`'s figures.

    Made by :meth:`GroupMetric.bootstrap` (stratified percentile bootstrap; see there).
    Every interval is a ``(low, high)`` pair of floats.

    Attributes
    ----------
    metric : str
        ``"accuracy"`` or ``"f1"``.
    confidence_level : float
    n_resamples : int
    overall, group_min, group_max, difference, ratio : tuple of float
        Intervals of the figures of the same names (``ratio``: resamples where every group
        is at 0 left out).
    by_group : torch.Tensor, shape (G, 2), float64
        Interval of each group's metric; NaN for a group with no sample.
    group_names : tuple of str, optional
    """

    metric: str
    confidence_level: float
    n_resamples: int
    overall: tuple[float, float]
    group_min: tuple[float, float]
    group_max: tuple[float, float]
    difference: tuple[float, float]
    ratio: tuple[float, float]
    by_group: torch.Tensor = field(repr=False)
    group_names: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def worst(self) -> tuple[float, float]:
        """Interval of the worst group's figure (:attr:`group_min`)."""
        return self.group_min

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every interval as ``[low, high]`` (NaN as ``None``)."""
        out: dict[str, Any] = {
            "method": "stratified percentile bootstrap",
            "confidence_level": self.confidence_level,
            "n_resamples": self.n_resamples,
        }
        for name in ("overall", "group_min", "group_max", "difference", "ratio"):
            out[name] = [_json_float(v) for v in getattr(self, name)]
        out["by_group"] = [[_json_float(v) for v in row] for row in self.by_group.tolist()]
        return out


def _interval(values: torch.Tensor, quantiles: torch.Tensor) -> tuple[float, float]:
    low, high = torch.nanquantile(values.double(), quantiles).tolist()
    return float(low), float(high)


def _metric_from_counts(
    name: str, true_positive: torch.Tensor, true_count: torch.Tensor, pred_count: torch.Tensor
) -> torch.Tensor:
    """Accuracy or macro-F1 from per-class counts of shape ``(..., C)``; shape ``(...)``.

    Macro-F1 averages over the classes that occur among the labels or the predictions, F1
    being 0 where precision and recall are both undefined (scikit-learn's
    ``zero_division=0``)."""
    if name == "accuracy":
        return true_positive.sum(-1) / true_count.sum(-1)
    denominator = true_count + pred_count
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp_min(1), 0.0)
    present = (denominator > 0).double()
    return (f1 * present).sum(-1) / present.sum(-1)


def _multinomial_counts(
    counts: torch.Tensor, n_resamples: int, generator: torch.Generator
) -> torch.Tensor:
    """Counts of ``counts.sum()`` draws with replacement from cells weighted by ``counts``,
    ``n_resamples`` times: a multinomial drawn as a chain of conditional binomials.

    Returns
    -------
    torch.Tensor, shape (n_resamples, K), float64
    """
    counts = counts.double()
    draws = torch.zeros(n_resamples, counts.numel(), dtype=torch.float64)
    remaining = torch.full((n_resamples,), float(counts.sum()), dtype=torch.float64)
    mass = float(counts.sum())
    for cell in range(counts.numel() - 1):
        share = min(max(float(counts[cell]) / mass, 0.0), 1.0) if mass > 0 else 0.0
        drawn = torch.binomial(remaining, torch.full_like(remaining, share), generator=generator)
        draws[:, cell] = drawn
        remaining = remaining - drawn
        mass -= float(counts[cell])
    draws[:, -1] = remaining
    return draws


def _resample(
    name: str,
    predictions: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    n_resamples: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified bootstrap of ``name``: per-group figures ``(n_resamples, G)`` (NaN for empty
    groups) and the overall figure ``(n_resamples,)``."""
    num_classes = int(max(predictions.max(), labels.max())) + 1
    per_group = torch.full((n_resamples, num_groups), torch.nan, dtype=torch.float64)
    pooled = torch.zeros(3, n_resamples, num_classes, dtype=torch.float64)
    for group in range(num_groups):
        mask = groups == group
        if not bool(mask.any()):
            continue
        cells, cell_counts = torch.unique(
            labels[mask] * num_classes + predictions[mask], return_counts=True
        )
        draws = _multinomial_counts(cell_counts, n_resamples, generator)
        true_class, pred_class = cells // num_classes, cells % num_classes
        hits = (true_class == pred_class).double()
        counts = torch.zeros(3, n_resamples, num_classes, dtype=torch.float64)
        counts[0].index_add_(1, true_class, draws * hits)
        counts[1].index_add_(1, true_class, draws)
        counts[2].index_add_(1, pred_class, draws)
        per_group[:, group] = _metric_from_counts(name, *counts)
        pooled += counts
    return per_group, _metric_from_counts(name, *pooled)


def _check_triplet(
    predictions: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, num_groups: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    tensors = []
    for name, value in (("predictions", predictions), ("labels", labels), ("groups", groups)):
        tensor = torch.as_tensor(value)
        if tensor.dim() != 1 or tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise ValueError(
                f"{name} must be a 1-D integer tensor, got {tensor.dtype} of shape "
                f"{tuple(tensor.shape)}"
            )
        tensors.append(tensor.to("cpu", torch.int64))
    predictions, labels, groups = tensors
    if not predictions.shape == labels.shape == groups.shape:
        raise ValueError("predictions, labels and groups must have the same length")
    if predictions.numel() == 0:
        raise ValueError("no samples to evaluate")
    if int(groups.min()) < 0 or int(labels.min()) < 0 or int(predictions.min()) < 0:
        raise ValueError("predictions, labels and groups must be non-negative ids")
    observed = int(groups.max()) + 1
    if num_groups is None:
        num_groups = observed
    elif num_groups < observed:
        raise ValueError(f"num_groups={num_groups} but groups holds ids up to {observed - 1}")
    return predictions, labels, groups, num_groups


def group_accuracy(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int | None = None,
    *,
    group_names: Sequence[str] | None = None,
) -> GroupMetric:
    """Accuracy per group, and over all samples (:attr:`GroupMetric.overall`).

    Parameters
    ----------
    predictions, labels, groups : torch.Tensor, shape (N,), integer
        Predicted classes, true classes and group ids.
    num_groups : int, optional
        ``G``; defaults to ``max(groups) + 1``.
    group_names : sequence of str, optional
        One name per group id, for :attr:`GroupMetric.by_group` and tables.

    Returns
    -------
    GroupMetric
        Holding the samples, for :meth:`GroupMetric.bootstrap`.
    """
    predictions, labels, groups, num_groups = _check_triplet(
        predictions, labels, groups, num_groups
    )
    counts = torch.bincount(groups, minlength=num_groups)
    hits = (predictions == labels).double()
    correct = torch.bincount(groups, weights=hits, minlength=num_groups)
    return GroupMetric(
        "accuracy",
        correct / counts.double(),
        counts,
        overall=float(hits.mean()),
        group_names=None if group_names is None else tuple(group_names),
        samples=(predictions, labels, groups),
    )


def group_f1(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int | None = None,
    *,
    group_names: Sequence[str] | None = None,
) -> GroupMetric:
    """Macro-F1 per group, as ``sklearn.metrics.f1_score(average="macro")`` on each group.

    Within a group, the classes averaged over are those that occur among its labels or its
    predictions; a class with no true and no predicted sample is left out, and F1 is 0 where
    precision and recall are both undefined. :attr:`GroupMetric.overall` is the same on all
    samples together.

    Parameters
    ----------
    predictions, labels, groups : torch.Tensor, shape (N,), integer
    num_groups : int, optional
    group_names : sequence of str, optional

    Returns
    -------
    GroupMetric
        Holding the samples, for :meth:`GroupMetric.bootstrap`.
    """
    predictions, labels, groups, num_groups = _check_triplet(
        predictions, labels, groups, num_groups
    )
    num_classes = int(max(predictions.max(), labels.max())) + 1
    size = num_groups * num_classes
    hit = (predictions == labels).double()
    true_positive = torch.bincount(groups * num_classes + labels, weights=hit, minlength=size)
    true_count = torch.bincount(groups * num_classes + labels, minlength=size).double()
    pred_count = torch.bincount(groups * num_classes + predictions, minlength=size).double()
    per_class = [
        tensor.view(num_groups, num_classes) for tensor in (true_positive, true_count, pred_count)
    ]
    per_group = _metric_from_counts("f1", *per_class)
    overall = float(_metric_from_counts("f1", *(tensor.sum(0) for tensor in per_class)))
    counts = torch.bincount(groups, minlength=num_groups)
    return GroupMetric(
        "f1",
        per_group,
        counts,
        overall=overall,
        group_names=None if group_names is None else tuple(group_names),
        samples=(predictions, labels, groups),
    )


_METRIC_FUNCTIONS = {"accuracy": group_accuracy, "f1": group_f1}


def rank_groups(
    clean: torch.Tensor, robust: torch.Tensor | None = None, criterion: str = "mean"
) -> torch.Tensor:
    """Order groups from worst to best by per-group clean and robust scores.

    Parameters
    ----------
    clean : torch.Tensor, shape (G,)
        Per-group clean metric (NaN for groups without validation samples, which are left out).
    robust : torch.Tensor, shape (G,), optional
        Per-group metric under attack; needed unless ``criterion="clean"``.
    criterion : {"mean", "clean", "robust"}, default "mean"
        ``"mean"``: by ``(clean + robust) / 2``, FRAL's two goals weighted equally;
        ``"clean"``: by the clean metric (``F_std``); ``"robust"``: by the robust metric
        (``F_rob``). Ties go to the lowest group id.

    Returns
    -------
    torch.Tensor, int64
        Group ids, worst first, only groups with samples.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if criterion != "clean" and robust is None:
        raise ValueError(f"criterion={criterion!r} needs the robust per-group metric")
    if criterion == "clean":
        values = clean.double()
    elif criterion == "robust":
        values = robust.double()
    else:
        values = (clean.double() + robust.double()) / 2
    values = values.cpu()
    order = torch.sort(values, stable=True).indices
    order = order[~torch.isnan(values[order])]
    if order.numel() == 0:
        raise ValueError("no group has validation samples")
    return order


def select_worst_group(
    clean: torch.Tensor, robust: torch.Tensor | None = None, criterion: str = "mean"
) -> int:
    """The worst group: the first of :func:`rank_groups`."""
    return int(rank_groups(clean, robust, criterion)[0])


@dataclass(frozen=True)
class Evaluation:
    """Clean and robust group metrics of one model on one labelled set.

    Attributes
    ----------
    clean : dict[str, GroupMetric]
        ``{"accuracy": ..., "f1": ...}`` on clean inputs.
    robust : dict[str, GroupMetric]
        The same under the attack; empty when evaluated with ``robust=False``.
    attack : str, optional
        What ``robust`` was measured under, e.g. ``"PGD(eps=0.0157, steps=5)"`` or
        ``"AutoAttack(...) after PGD(...)"``; ``None`` without an attack or where unknown.
    """

    clean: dict[str, GroupMetric]
    robust: dict[str, GroupMetric]
    attack: str | None = None

    def summary(self) -> dict[str, float]:
        """Flat JSON-ready figures: ``{clean,robust}_{metric}_{worst,disparity,average}``."""
        out: dict[str, float] = {}
        for setting, metrics in (("clean", self.clean), ("robust", self.robust)):
            for name, metric in metrics.items():
                out[f"{setting}_{name}_worst"] = metric.worst
                out[f"{setting}_{name}_disparity"] = metric.disparity
                out[f"{setting}_{name}_average"] = metric.average
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every per-group figure, JSON-ready."""
        return {
            setting: {name: metric.to_dict() for name, metric in metrics.items()}
            for setting, metrics in (("clean", self.clean), ("robust", self.robust))
        }

    def bootstrap(
        self,
        n_resamples: int = 1000,
        confidence_level: float = 0.95,
        random_state: RandomState = 0,
    ) -> dict[str, dict[str, ConfidenceIntervals]]:
        """Confidence intervals of every metric, clean and robust, by
        :meth:`GroupMetric.bootstrap` (stratified percentile bootstrap of the predictions; the
        model is not run again).

        Parameters
        ----------
        n_resamples : int, default 1000
        confidence_level : float, default 0.95
        random_state : int, torch.Generator or None, default 0
            One seed for all: each metric draws from it in turn, so the result repeats.

        Returns
        -------
        dict
            ``{"clean": {"accuracy": ConfidenceIntervals, ...}, "robust": {...}}``.
        """
        generator = make_generator(resolve_seed(random_state))
        return {
            setting: {
                name: metric.bootstrap(n_resamples, confidence_level, generator)
                for name, metric in metrics.items()
            }
            for setting, metrics in (("clean", self.clean), ("robust", self.robust))
        }

    def to_frame(self) -> Any:
        """Per-group figures as a ``pandas.DataFrame`` (needs pandas, not a dependency of
        fral: ``pip install pandas``): one row per group (named where names are known),
        columns ``clean_accuracy``, ``robust_accuracy``, ... and ``count``."""
        pandas = _pandas()
        first = next(iter(self.clean.values()))
        columns: dict[str, list[float]] = {}
        for setting, metrics in (("clean", self.clean), ("robust", self.robust)):
            for name, metric in metrics.items():
                columns[f"{setting}_{name}"] = metric.per_group.tolist()
        columns["count"] = first.counts.tolist()
        index = [first._label(group) for group in range(first.counts.numel())]
        return pandas.DataFrame(columns, index=pandas.Index(index, name="group"))


def clean_and_adversarial_logits(
    model: nn.Module,
    data: Pool,
    *,
    attack: Any,
    robust: bool,
    batch_size: int,
    amp: bool | torch.dtype,
    generator: torch.Generator | None,
    skipped_batches: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]]:
    """Logits of ``model`` on a labelled pool, clean and under ``attack``, batch by batch.

    Runs an eval-mode copy of ``model`` (not modified); the attack targets the true labels.

    Parameters
    ----------
    model : nn.Module
        Classifier.
    data : Pool
        Labelled samples with groups.
    attack : optional
        As in :func:`evaluate` (see :func:`fral.attacks.as_attack`); unused without ``robust``.
    robust : bool
        Also attack each batch.
    batch_size : int
    amp : bool or torch.dtype
        Autocast the forward passes.
    generator : torch.Generator, optional
        Source of the attack's random start, on the model's device.
    skipped_batches : int, default 0
        Advance ``generator`` first over the attack's draws on this many full batches (a
        rank evaluating a shard; see :func:`fral.distributed.advance_attack_stream`).

    Yields
    ------
    tuple
        ``(clean_logits (b, C), adversarial_logits (b, C) or None, labels (b,), groups (b,))``,
        on the model's device.
    """
    attack = as_attack(attack, names=True) if robust else None
    if len(data) == 0:
        raise ValueError("the evaluation data is empty: there is nothing to measure")
    seeds = None
    if isinstance(attack, AutoAttack) and generator is not None:
        # AutoAttack's seeds come from their own stream: PGD's random starts stay those of a
        # PGD-only evaluation under the same generator.
        seeds = make_generator((generator.initial_seed() + 1) % 2**63, generator.device)
    with evaluation_view(model) as view:
        for batch, (x, y, g) in enumerate(data.labeled_batches(batch_size, device=view.device)):
            check_input_batch(x)
            if batch == 0 and attack is not None:
                advance_attack_stream(attack, generator, skipped_batches, batch_size, x)
            with torch.no_grad(), autocast(view.device, amp):
                clean = view(x)
            _check_logits(clean, "clean")
            check_labels(y, clean.shape[1], "the labels")
            adversarial = None
            if isinstance(attack, AutoAttack):
                adversarial = attack.worst_case_logits(
                    model, view, x, y, clean, generator=generator, seeds=seeds, amp=amp
                )
            elif attack is not None:
                x_adv = run_attack(
                    attack, model, view, x, y, clean_logits=clean, generator=generator
                )
                with torch.no_grad(), autocast(view.device, amp):
                    adversarial = view(x_adv)
                _check_logits(adversarial, "attacked")
            yield clean, adversarial, y, g


def _check_logits(logits: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(
            f"the model returns NaN or infinite logits on the {what} inputs; no metric can be "
            "made from them"
        )


def evaluate(
    model: nn.Module,
    data: Pool,
    *,
    attack: Any = None,
    robust: bool = True,
    metrics: tuple[str, ...] = METRICS,
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
    random_state: RandomState = 0,
    group_names: Sequence[str] | None = None,
) -> Evaluation:
    """Group metrics of ``model`` on a labelled pool, clean and under ``attack``.

    Parameters
    ----------
    model : nn.Module
        Classifier. Not modified.
    data : Pool
        Labelled samples with groups (e.g. the test set).
    attack : optional
        The white-box attack: ``None`` or ``"pgd"`` for the paper's PGD-5 at 4/255 (CE on the
        true labels); ``"autoattack"`` for :class:`fral.AutoAttack` at 4/255 (torchattacks'
        standard AutoAttack, images in [0, 1]); a :class:`fral.PGD` or
        :class:`fral.AutoAttack` (for another ``eps`` or bounds); a torchattacks attack bound
        to ``model``; or a callable. With AutoAttack the robust figures are the worst case
        of PGD and AutoAttack per sample: robust = correct under PGD **and** under
        AutoAttack, AutoAttack running only on the samples still correct after PGD (see
        :class:`fral.AutoAttack`).
    robust : bool, default True
        Also evaluate under the attack.
    metrics : tuple of {"accuracy", "f1"}
        Which metrics to compute.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None, default 0
        Seed of the attack's random start (and of AutoAttack's, unless it has its own).
    group_names : sequence of str, optional
        One name per group id, for :attr:`GroupMetric.by_group` and ``to_frame``.

    Returns
    -------
    Evaluation
        Each :class:`GroupMetric` keeps its predictions, so :meth:`Evaluation.bootstrap`
        gives confidence intervals without running the model again.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics!r}")
    check_module(model, "model")
    if not isinstance(data, Pool):
        raise TypeError(f"data must be a labelled fral.Pool, got {type(data).__name__}")
    data.require_labels("the evaluation data")
    attack = as_attack(attack, names=True) if robust else None
    generator = make_generator(resolve_seed(random_state), model_device(model))

    def predictions(rows: torch.Tensor | None, skipped: int) -> tuple[torch.Tensor, ...]:
        clean_chunks, adv_chunks = [], []
        for clean, adversarial, _, _ in clean_and_adversarial_logits(
            model,
            data if rows is None else data.subset(rows),
            attack=attack,
            robust=robust,
            batch_size=batch_size,
            amp=amp,
            generator=generator,
            skipped_batches=skipped,
        ):
            clean_chunks.append(clean.argmax(1))
            if adversarial is not None:
                adv_chunks.append(adversarial.argmax(1))
        clean = torch.cat(clean_chunks).cpu()
        return (clean, torch.cat(adv_chunks).cpu()) if adv_chunks else (clean,)

    # Under a process group each rank predicts its shard; the predictions are gathered.
    predicted = map_batches(predictions, len(data), batch_size)
    clean = predicted[0]
    adversarial = predicted[1] if len(predicted) > 1 else None
    labels, groups = data.labels, data.groups

    def measure(predictions: torch.Tensor) -> dict[str, GroupMetric]:
        return {
            name: _METRIC_FUNCTIONS[name](
                predictions, labels, groups, data.num_groups, group_names=group_names
            )
            for name in metrics
        }

    return Evaluation(
        clean=measure(clean),
        robust={} if adversarial is None else measure(adversarial),
        attack=None if attack is None else repr(attack),
    )


def group_ranking(
    model: nn.Module,
    validation: Pool,
    *,
    attack: Any = None,
    criterion: str = "mean",
    metric: str = "accuracy",
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
    random_state: RandomState = 0,
) -> torch.Tensor:
    """Groups ordered from worst to best for ``model`` on ``validation``.

    Parameters
    ----------
    model : nn.Module
        The robust model ``M_R``. Not modified.
    validation : Pool
        Labelled validation samples with groups.
    attack : optional
        As in :func:`evaluate`; not run when ``criterion="clean"``.
    criterion : {"mean", "clean", "robust"}, default "mean"
        See :func:`rank_groups`. The default weighs clean and robust accuracy equally, since
        FRAL asks for both ``F_std`` and ``F_rob``.
    metric : {"accuracy", "f1"}, default "accuracy"
        Per-group metric (the paper uses macro-F1 on imbalanced HAM-10000).
    batch_size, amp, random_state :
        As in :func:`evaluate`.

    Returns
    -------
    torch.Tensor, int64
        Group ids, worst first; groups without validation samples are left out.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    result = evaluate(
        model,
        validation,
        attack=attack,
        robust=criterion != "clean",
        metrics=(metric,),
        batch_size=batch_size,
        amp=amp,
        random_state=random_state,
    )
    robust = result.robust[metric].per_group if result.robust else None
    return rank_groups(result.clean[metric].per_group, robust, criterion)


def worst_group(model: nn.Module, validation: Pool, **options: Any) -> int:
    """The worst-performing group of ``model`` on ``validation`` (Algorithm 1, line 5).

    Takes the options of :func:`group_ranking` (``attack``, ``criterion="mean"``,
    ``metric="accuracy"``, ...) and returns its first group id.
    """
    return int(group_ranking(model, validation, **options)[0])


def group_risks(
    model: nn.Module,
    validation: Pool,
    *,
    risk: str = "error",
    criterion: str = "mean",
    attack: Any = None,
    num_groups: int | None = None,
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean per-group risk of ``model`` on a labelled validation pool, clean and/or attacked.

    Parameters
    ----------
    model : nn.Module
        The robust model ``M_R``. Not modified (it runs as an eval-mode copy).
    validation : Pool
        Labelled samples with groups.
    risk : {"error", "ce"}, default "error"
        Per-sample risk: misclassification (``1 - accuracy``) or cross-entropy.
    criterion : {"mean", "clean", "robust"}, default "mean"
        Risk on clean inputs, under ``attack`` (true labels), or the mean of both, as in
        :func:`rank_groups`.
    attack : optional
        As in :func:`evaluate` (default PGD-5 at 4/255); unused for ``"clean"``.
    num_groups : int, optional
        ``G`` (default ``validation.num_groups``).
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    generator : torch.Generator, optional
        Source of the attack's random start, on the model's device.

    Returns
    -------
    torch.Tensor, shape (G,), float64, on the CPU
        Mean risk of each group; NaN for a group without validation samples.
    """
    if risk not in RISKS:
        raise ValueError(f"risk must be one of {RISKS}, got {risk!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    num_groups = validation.num_groups if num_groups is None else num_groups

    def per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if risk == "error":
            return (logits.argmax(1) != y).float()
        return F.cross_entropy(logits.float(), y, reduction="none")

    device = model_device(model)
    totals = torch.zeros(2, num_groups, device=device)
    counts = torch.zeros(num_groups, device=device)
    for clean, adversarial, y, g in clean_and_adversarial_logits(
        model,
        validation,
        attack=attack,
        robust=criterion != "clean",
        batch_size=batch_size,
        amp=amp,
        generator=generator,
    ):
        totals[0].index_add_(0, g, per_sample(clean, y))
        counts.index_add_(0, g, torch.ones_like(y, dtype=counts.dtype))
        if adversarial is not None:
            totals[1].index_add_(0, g, per_sample(adversarial, y))
    means = (totals / counts).cpu().double()  # 0 / 0 leaves NaN for empty groups
    if criterion == "clean":
        return means[0]
    if criterion == "robust":
        return means[1]
    return means.mean(0)
