"""Group metrics: per-group accuracy and macro-F1, clean and under attack, and their summaries.

FRAL's quality is minimax fairness (Eq. 1): ``F_std`` is the worst group's clean accuracy and
``F_rob`` its accuracy under a white-box PGD attack. The paper also reports the disparity
(best minus worst group) and the group average (unweighted mean over groups); HAM-10000 uses
macro-F1 instead of accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fral._modules import autocast, check_input_batch, check_module, evaluation_view, model_device
from fral._random import RandomState, make_generator, resolve_seed
from fral.attacks import as_attack, check_labels, run_attack
from fral.pool import Pool

__all__ = [
    "CRITERIA",
    "METRICS",
    "RISKS",
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


@dataclass(frozen=True)
class GroupMetric:
    """A metric per group, with the paper's summaries.

    Attributes
    ----------
    name : str
        ``"accuracy"`` or ``"f1"`` (macro-F1).
    per_group : torch.Tensor, shape (G,), float64
        The metric of each group, in [0, 1]; NaN for a group with no sample.
    counts : torch.Tensor, shape (G,), int64
        Samples per group.
    """

    name: str
    per_group: torch.Tensor
    counts: torch.Tensor = field(repr=False)

    def _present(self) -> torch.Tensor:
        present = self.per_group[self.counts > 0]
        if present.numel() == 0:
            raise ValueError("no group has any sample")
        return present

    @property
    def worst(self) -> float:
        """Minimum over groups with samples (``F_std``/``F_rob`` of Eq. 1)."""
        return float(self._present().min())

    @property
    def worst_group(self) -> int:
        """Id of the worst group (the lowest id on ties)."""
        values = torch.where(self.counts > 0, self.per_group, torch.inf)
        return int(torch.argmin(values))

    @property
    def disparity(self) -> float:
        """Best minus worst group."""
        present = self._present()
        return float(present.max() - present.min())

    @property
    def average(self) -> float:
        """Unweighted mean over groups with samples (the paper's "Grp. Avg.")."""
        return float(self._present().mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary (JSON-ready)."""
        return {
            "per_group": [None if math.isnan(v) else v for v in self.per_group.tolist()],
            "counts": self.counts.tolist(),
            "worst": self.worst,
            "worst_group": self.worst_group,
            "disparity": self.disparity,
            "average": self.average,
        }


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
) -> GroupMetric:
    """Accuracy per group.

    Parameters
    ----------
    predictions, labels, groups : torch.Tensor, shape (N,), integer
        Predicted classes, true classes and group ids.
    num_groups : int, optional
        ``G``; defaults to ``max(groups) + 1``.

    Returns
    -------
    GroupMetric
    """
    predictions, labels, groups, num_groups = _check_triplet(
        predictions, labels, groups, num_groups
    )
    counts = torch.bincount(groups, minlength=num_groups)
    correct = torch.bincount(groups, weights=(predictions == labels).double(), minlength=num_groups)
    return GroupMetric("accuracy", correct / counts.double(), counts)


def group_f1(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int | None = None,
) -> GroupMetric:
    """Macro-F1 per group, as ``sklearn.metrics.f1_score(average="macro")`` on each group.

    Within a group, the classes averaged over are those that occur among its labels or its
    predictions; a class with no true and no predicted sample is left out, and F1 is 0 where
    precision and recall are both undefined.

    Parameters
    ----------
    predictions, labels, groups : torch.Tensor, shape (N,), integer
    num_groups : int, optional

    Returns
    -------
    GroupMetric
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
    denominator = true_count + pred_count
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp_min(1), 0.0)
    present = (denominator > 0).double().view(num_groups, num_classes)
    per_group = (f1.view(num_groups, num_classes) * present).sum(1) / present.sum(1)
    counts = torch.bincount(groups, minlength=num_groups)
    return GroupMetric("f1", per_group, counts)


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
    """

    clean: dict[str, GroupMetric]
    robust: dict[str, GroupMetric]

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


def clean_and_adversarial_logits(
    model: nn.Module,
    data: Pool,
    *,
    attack: Any,
    robust: bool,
    batch_size: int,
    amp: bool | torch.dtype,
    generator: torch.Generator | None,
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

    Yields
    ------
    tuple
        ``(clean_logits (b, C), adversarial_logits (b, C) or None, labels (b,), groups (b,))``,
        on the model's device.
    """
    attack = as_attack(attack) if robust else None
    if len(data) == 0:
        raise ValueError("the evaluation data is empty: there is nothing to measure")
    with evaluation_view(model) as view:
        for x, y, g in data.labeled_batches(batch_size, device=view.device):
            check_input_batch(x)
            with torch.no_grad(), autocast(view.device, amp):
                clean = view(x)
            _check_logits(clean, "clean")
            check_labels(y, clean.shape[1], "the labels")
            adversarial = None
            if attack is not None:
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
) -> Evaluation:
    """Group metrics of ``model`` on a labelled pool, clean and under ``attack``.

    Parameters
    ----------
    model : nn.Module
        Classifier. Not modified.
    data : Pool
        Labelled samples with groups (e.g. the test set).
    attack : optional
        The white-box attack: ``None`` for the paper's PGD-5 at 4/255 (CE on the true labels),
        a :class:`fral.PGD`, a torchattacks attack bound to ``model``, or a callable.
    robust : bool, default True
        Also evaluate under the attack.
    metrics : tuple of {"accuracy", "f1"}
        Which metrics to compute.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
    random_state : int, torch.Generator or None, default 0
        Seed of the attack's random start.

    Returns
    -------
    Evaluation
    """
    unknown = set(metrics) - set(METRICS)
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics!r}")
    check_module(model, "model")
    if not isinstance(data, Pool):
        raise TypeError(f"data must be a labelled fral.Pool, got {type(data).__name__}")
    data.require_labels("the evaluation data")
    generator = make_generator(resolve_seed(random_state), model_device(model))
    clean_chunks, adv_chunks = [], []
    for clean, adversarial, _, _ in clean_and_adversarial_logits(
        model,
        data,
        attack=attack,
        robust=robust,
        batch_size=batch_size,
        amp=amp,
        generator=generator,
    ):
        clean_chunks.append(clean.argmax(1))
        if adversarial is not None:
            adv_chunks.append(adversarial.argmax(1))
    clean = torch.cat(clean_chunks).cpu()
    adversarial = torch.cat(adv_chunks).cpu() if adv_chunks else None
    labels, groups = data.labels, data.groups

    def measure(predictions: torch.Tensor) -> dict[str, GroupMetric]:
        return {
            name: _METRIC_FUNCTIONS[name](predictions, labels, groups, data.num_groups)
            for name in metrics
        }

    return Evaluation(
        clean=measure(clean), robust={} if adversarial is None else measure(adversarial)
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
