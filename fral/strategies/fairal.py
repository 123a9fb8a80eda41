"""FairAL: entropy plus expected fairness gain (after Anahideh et al. 2022), nested variant."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fral._modules import EvalView
from fral._progress import check_progress, progress_bar
from fral._random import RandomState, make_generator
from fral.attacks import as_attack, run_attack
from fral.metrics import CRITERIA
from fral.pool import Pool
from fral.predict import logits
from fral.protocol import (
    Request,
    Strategy,
    check_batch_size,
    check_flag,
    check_int,
    check_real,
    draw_by_group,
    group_order,
    top_budget,
)
from fral.scores import entropy

__all__ = ["FairAL", "fairal_scores", "label_weights", "min_max_normalise"]


def min_max_normalise(values: torch.Tensor) -> torch.Tensor:
    """``(v - min) / (max - min)``; all zeros when the values are constant."""
    spread = values.max() - values.min()
    if not spread > 0:
        return torch.zeros_like(values)
    return (values - values.min()) / spread


def fairal_scores(entropies: torch.Tensor, gains: torch.Tensor, alpha: float) -> torch.Tensor:
    """FairAL's score: ``alpha * N(entropy) + (1 - alpha) * N(expected fairness gain)``.

    Parameters
    ----------
    entropies, gains : torch.Tensor, shape (K,)
        Predictive entropy and expected gain in worst-group accuracy of each candidate.
    alpha : float
        Weight of the entropy term, in [0, 1].

    Returns
    -------
    torch.Tensor, shape (K,)
        Each term min-max normalised over the candidates (a constant term counts 0).
    """
    if entropies.shape != gains.shape or entropies.dim() != 1:
        raise ValueError(
            f"entropies {tuple(entropies.shape)} and gains {tuple(gains.shape)} must be 1-D "
            "tensors of one length"
        )
    return alpha * min_max_normalise(entropies) + (1 - alpha) * min_max_normalise(gains)


def label_weights(
    probabilities: torch.Tensor, label_mass: float, max_labels: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels to try for each candidate, most probable first, with their weights.

    A label is kept while the probability of the more probable labels is below
    ``label_mass``, up to ``max_labels`` labels; the kept probabilities are renormalised.

    Parameters
    ----------
    probabilities : torch.Tensor, shape (K, C)
    label_mass : float
        In (0, 1]; 1 keeps every label with non-zero probability.
    max_labels : int or None
        Most labels per candidate (``None``: no cap).

    Returns
    -------
    labels : torch.Tensor, shape (K, L), int64
        Candidate labels, most probable first.
    weights : torch.Tensor, shape (K, L)
        Their renormalised probabilities; 0 for labels not tried.
    """
    ordered, labels = probabilities.sort(dim=1, descending=True, stable=True)
    before = ordered.cumsum(1) - ordered
    keep = (before < label_mass) & (ordered > 0)
    keep[:, 0] = True
    if max_labels is not None:
        keep[:, max_labels:] = False
    width = int(keep.sum(1).max())
    weights = (ordered * keep)[:, :width]
    return labels[:, :width], weights / weights.sum(1, keepdim=True)


class _Probe:
    """A working copy of ``M_R`` that is fine-tuned on one hypothetical label, then reset.

    The copy runs in eval mode throughout (BatchNorm statistics frozen, Dropout off); plain SGD
    updates every floating-point parameter. The validation subsample and the replay batch are
    fixed for the call, and every attack restarts from the same seed, so candidates differ only
    by their own effect.
    """

    def __init__(
        self,
        model: nn.Module,
        validation: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        num_groups: int,
        replay: tuple[torch.Tensor, torch.Tensor] | None,
        strategy: FairAL,
        seed: int,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        self.params = [p for p in self.model.parameters() if p.is_floating_point()]
        for parameter in self.params:
            parameter.grad = None
            parameter.requires_grad_(True)
        self.initial = [p.detach().clone() for p in self.params]
        self.device = self.initial[0].device if self.initial else torch.device("cpu")
        self.view = EvalView(self.model, channels_last=False, device=self.device)
        size = strategy.batch_size
        self.batches = list(zip(*(tensor.split(size) for tensor in validation), strict=True))
        self.num_groups = num_groups
        self.replay = replay
        self.strategy = strategy
        self.seed = seed

    def _attack(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        generator = make_generator(self.seed, self.device)
        return run_attack(self.strategy.attack, self.model, self.view, x, y, generator=generator)

    def worst_accuracy(self) -> float:
        """Worst-group accuracy of the copy on the validation subsample (per ``criterion``)."""
        criterion = self.strategy.criterion
        correct = torch.zeros(2, self.num_groups, device=self.device)
        counts = torch.zeros(self.num_groups, device=self.device)
        for x, y, g in self.batches:
            counts.index_add_(0, g, torch.ones_like(g, dtype=counts.dtype))
            if criterion != "robust":
                with torch.no_grad():
                    correct[0].index_add_(0, g, (self.view(x).argmax(1) == y).float())
            if criterion != "clean":
                x_adv = self._attack(x, y)
                with torch.no_grad():
                    correct[1].index_add_(0, g, (self.view(x_adv).argmax(1) == y).float())
        per_group = correct / counts
        if criterion == "clean":
            per_group = per_group[0]
        elif criterion == "robust":
            per_group = per_group[1]
        else:
            per_group = per_group.mean(0)
        return float(per_group[counts > 0].min())

    def finetune(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """``finetune_steps`` SGD steps on ``(x, y)`` plus the replay batch, from ``M_R``."""
        with torch.no_grad():
            for parameter, start in zip(self.params, self.initial, strict=True):
                parameter.copy_(start)
        if self.replay is not None:
            x = torch.cat([x, self.replay[0]])
            y = torch.cat([y, self.replay[1]])
        with torch.enable_grad():
            for _ in range(self.strategy.finetune_steps):
                inputs = self._attack(x, y) if self.strategy.adversarial else x
                loss = F.cross_entropy(self.model(inputs), y)
                grads = torch.autograd.grad(loss, self.params, allow_unused=True)
                with torch.no_grad():
                    for parameter, grad in zip(self.params, grads, strict=True):
                        if grad is not None:
                            parameter.sub_(grad, alpha=self.strategy.lr)


class FairAL(Strategy):
    """Rank entropy-filtered candidates by entropy and expected worst-group accuracy gain.

    1. Predictive entropy of ``M_R`` on every candidate; keep the ``top_k`` most uncertain
       (the "nested" variant of Anahideh et al.).
    2. For each kept candidate ``x`` and each label ``y`` it may have (most probable first,
       see ``label_mass`` and ``max_labels``): reset a working copy to ``M_R``, fine-tune it
       ``finetune_steps`` SGD steps on ``(x, y)`` and measure its worst-group validation
       accuracy. The expected worst-group accuracy averages these over ``y``, weighted by
       ``M_R``'s ``p(y | x)`` (renormalised over the labels tried); the gain is that minus the
       worst-group accuracy of ``M_R`` itself on the same validation samples.
    3. Score ``alpha * N(entropy) + (1 - alpha) * N(gain)``, min-max normalised over the
       ``top_k`` (:func:`fairal_scores`); return the top ``budget`` (ties: the more
       uncertain first).

    With ``group=k`` the candidates are group ``k``'s; when it has fewer than ``budget``,
    the other groups top it up in ascending id order, each ranked by the same three steps
    among its own candidates (``fill=True``).

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    alpha : float, default 0.5
        Weight of the entropy term, in [0, 1] (0: fairness gain only, 1: entropy only).
    top_k : int, optional
        Candidates kept by the entropy filter (default ``2 * budget``); at least ``budget``.
    label_mass : float, default 0.95
        Labels tried per candidate cover this much of ``p(y | x)``.
    max_labels : int, optional
        At most this many labels per candidate (default: no cap).
    finetune_steps : int, default 5
        SGD steps per hypothetical label.
    lr : float, default 0.05
        SGD step size (no momentum, no weight decay). One sample moves a network little:
        match it to the training's learning rate.
    validation_size : int or None, default 1024
        Validation samples drawn at random (once per call) to measure worst-group accuracy;
        ``None`` uses all of them.
    replay : int, default 0
        Labelled samples drawn at random (once per call) from ``labeled`` and added to every
        fine-tuning batch, so the update does not forget the rest of the data; needs a
        labelled ``labeled`` pool when > 0.
    criterion : {"clean", "robust", "mean"}, default "clean"
        Worst group by clean accuracy (Anahideh et al.), accuracy under ``attack``, or their
        mean. The attacked ones cost an attack of the validation subsample per evaluation.
    adversarial : bool, default False
        Fine-tune on ``attack(x)`` instead of ``x`` (adversarial fine-tuning, as FRAL's
        evaluation of FairAL describes); an attack per fine-tuning step.
    fill : bool, default True
        With ``group=k``: top up from the other groups (by id) when group ``k`` runs short;
        ``False`` returns group ``k``'s candidates only (all of them, with a warning, when
        fewer than ``budget``). Without ``group`` the whole pool is ranked.
    attack : optional
        PGD by default (4/255, 5 steps); a :class:`fral.PGD` or a callable
        ``fn(model, x, y)``. A torchattacks object bound to ``model_r`` cannot attack the
        working copy.
    batch_size : int, default 256
        Samples per forward pass (entropy, validation).
    progress : bool or None, default None
        A bar over the candidates: ``True``/``False`` as asked; ``None`` in a terminal only
        (see :func:`fral.show_progress`).
    random_state : int, torch.Generator or None
        Seed of the validation subsample, the replay batch and the attacks' random starts.

    Notes
    -----
    Cost: one forward pass over the pool, then ``top_k x L`` fine-tunings (``L`` labels per
    candidate, at most ``max_labels``), each ``finetune_steps`` forward-backward passes on
    ``1 + replay`` samples and one evaluation of ``validation_size`` samples, i.e. about
    ``top_k * L * validation_size`` forward passes: by far the slowest strategy, as Table 2
    of the FRAL paper reports. The copy stays in eval mode while fine-tuned: BatchNorm running
    statistics cannot be estimated from one sample, and a train-mode step on one sample would
    overwrite them.

    Differences from the original nested variant (Anahideh et al., ``FAL_sklearn_Nested.py``
    of the official code), each a simplification or an adaptation to FRAL:

    - **Retraining.** The original refits its model (a logistic regression) from scratch on
      ``D_L`` plus the one hypothetical sample; fral approximates the retrained model by
      ``finetune_steps`` plain SGD steps (step ``lr``) from ``M_R`` on that sample, plus
      ``replay`` labelled samples if asked, with the copy in eval mode.
    - **Fairness measure.** The original scores the expected *unfairness* (mutual information
      between group and prediction, a demographic-parity gap, or a ratio, on a held-out set)
      and picks the lowest; fral scores the expected *worst-group accuracy* on a random
      ``validation_size`` subsample of ``validation`` (clean by default, FRAL's minimax
      fairness; ``criterion`` adds robust accuracy) and picks the highest gain.
    - **Labels.** The original is binary and tries both labels, weighted by ``p(y|x)``; fral
      tries the most probable labels covering ``label_mass`` of ``p(y|x)`` (at most
      ``max_labels``), weights renormalised over them.
    - **Selection.** The nested original picks the candidate of lowest expected unfairness
      among the ``top_k`` most uncertain and ignores ``alpha``; fral ranks them by
      ``alpha * N(entropy) + (1 - alpha) * N(gain)``. ``alpha=0`` is the original's rule
      exactly (ties to the more uncertain, as the original's first-index ``argsort``); the
      default 0.5 blends in the entropy as the original's non-nested variant does.
    - **Batch.** The original labels one sample per iteration and refits between picks;
      fral picks ``budget`` samples from one model per call, as the other strategies do.
    - Entropy in nats rather than bits (the same ranking); a group without validation
      samples is left out of the worst group rather than counted as 0.
    """

    def __init__(
        self,
        budget: int,
        *,
        alpha: float = 0.5,
        top_k: int | None = None,
        label_mass: float = 0.95,
        max_labels: int | None = None,
        finetune_steps: int = 5,
        lr: float = 0.05,
        validation_size: int | None = 1024,
        replay: int = 0,
        criterion: str = "clean",
        adversarial: bool = False,
        attack: Any = None,
        fill: bool = True,
        batch_size: int = 256,
        progress: bool | None = None,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        self.alpha = check_real(alpha, "alpha", 0.0, 1.0)
        self.top_k = check_int(2 * self.budget if top_k is None else top_k, "top_k", self.budget)
        self.label_mass = check_real(label_mass, "label_mass", 0.0, 1.0, low_open=True)
        self.max_labels = None if max_labels is None else check_int(max_labels, "max_labels")
        self.finetune_steps = check_int(finetune_steps, "finetune_steps")
        self.lr = check_real(lr, "lr", 0.0, low_open=True)
        self.validation_size = (
            None if validation_size is None else check_int(validation_size, "validation_size")
        )
        self.replay = check_int(replay, "replay", 0)
        if not isinstance(criterion, str) or criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.criterion = criterion
        self.adversarial = check_flag(adversarial, "adversarial")
        self.attack = as_attack(attack)
        self.fill = check_flag(fill, "fill")
        self.batch_size = check_batch_size(batch_size)
        self.progress = check_progress(progress)

    def __repr__(self) -> str:
        return (
            f"FairAL(budget={self.budget}, alpha={self.alpha}, top_k={self.top_k}, "
            f"finetune_steps={self.finetune_steps})"
        )

    @property
    def requires(self) -> frozenset[str]:
        """``{"validation"}``, plus ``"labeled"`` when fine-tuning replays labelled samples."""
        return frozenset({"validation", "labeled"}) if self.replay else frozenset({"validation"})

    @staticmethod
    def _sample(
        data: Pool, name: str, size: int | None, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, labels and groups of ``size`` random samples of ``data``, on ``device``."""
        chosen = torch.randperm(len(data), generator=generator)[:size].sort().values
        labels = data.require_labels(name)
        return (
            data.get_inputs(chosen).to(device),
            labels[chosen].to(device),
            data.groups[chosen].to(device),
        )

    def expected_gains(
        self,
        probe: _Probe,
        inputs: torch.Tensor,
        probabilities: torch.Tensor,
    ) -> torch.Tensor:
        """Expected worst-group accuracy gain of labelling each candidate.

        Parameters
        ----------
        probe : _Probe
            The working copy of ``M_R`` with the validation subsample.
        inputs : torch.Tensor, shape (K, ...)
            Candidates, on the model's device.
        probabilities : torch.Tensor, shape (K, C)
            ``p(y | x)`` of ``M_R``.

        Returns
        -------
        torch.Tensor, shape (K,), float64, on the CPU
        """
        baseline = probe.worst_accuracy()
        labels, weights = label_weights(probabilities, self.label_mass, self.max_labels)
        gains = torch.zeros(inputs.shape[0], dtype=torch.float64)
        for position in progress_bar(range(inputs.shape[0]), desc="FairAL", progress=self.progress):
            expected = 0.0
            for label, weight in zip(
                labels[position].tolist(), weights[position].tolist(), strict=True
            ):
                if weight > 0:
                    target = torch.tensor([label], device=inputs.device)
                    probe.finetune(inputs[position : position + 1], target)
                    expected += weight * probe.worst_accuracy()
            gains[position] = expected - baseline
        return gains

    def _select(self, request: Request) -> torch.Tensor:
        pool, device = request.pool, request.device
        generator = make_generator(request.seed)
        validation = self._sample(
            request.validation, "validation", self.validation_size, generator, device
        )
        replay = None
        if self.replay:
            if len(request.labeled) == 0:
                raise ValueError("FairAL(replay > 0) needs a non-empty labelled set `labeled`")
            replay = self._sample(
                request.labeled, "labeled (for replay)", self.replay, generator, device
            )[:2]
        num_groups = request.validation.num_groups
        probe = _Probe(request.model_r, validation, num_groups, replay, self, request.seed)

        def rank(candidates: torch.Tensor, count: int) -> torch.Tensor:
            outputs = logits(request.model_r, pool, indices=candidates, batch_size=self.batch_size)
            entropies = entropy(outputs)
            kept = top_budget(entropies, min(self.top_k, candidates.numel()))
            inputs = pool.get_inputs(candidates[kept.cpu()]).to(device)
            gains = self.expected_gains(probe, inputs, outputs[kept].softmax(1))
            # K numbers: ranked on the CPU in float64 (also where the device lacks float64).
            scores = fairal_scores(entropies[kept].cpu().double(), gains, self.alpha)
            return candidates[kept.cpu()][top_budget(scores, count).cpu()]

        order = group_order(request, None, fill=self.fill)
        return draw_by_group(request, order, self.budget, rank)
