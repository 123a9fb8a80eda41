"""Algorithm 1 of the paper as a resumable experiment.

::

    M_R <- Adv-TRAIN(D_L)                                   (round 0, "Initialization")
    for k in 1..K:
        [M_S <- TRAIN(D_L)  only if the strategy needs it]
        X* <- strategy.select(M_R, M_S, D_U, labeled=D_L, validation=D_V)
              (a group-aware strategy finds the worst group z* of M_R on D_V by its own rule)
        Y* <- oracle(X*);  D_L <- D_L + (X*, Y*);  D_U <- D_U - X*
        M_R <- Adv-TRAIN(D_L)   (fine-tuning from the current weights and optimiser)
        evaluate M_R on D_T, clean and under PGD, per group

:func:`run_experiment` runs it on a :class:`~fral.datasets.FairDataset` with any strategy of
the :class:`~fral.protocol.QueryStrategy` protocol. Nothing is lost: after each round the
labelled set, both models, the optimiser states, the strategy's state and every random
generator are written atomically to ``checkpoint_dir``, each file with a checksum; the round's
picks and each answer of the oracle are written as soon as they exist. ``resume=True``
continues a killed run and ends with the labelled set, metrics and ``history.json`` of the
uninterrupted run. A run is tied to its data by content (a SHA-256 fingerprint of every
split), not by the data set's name.

Under ``torchrun`` (a process group of several ranks) every rank runs the loop, sharded and
data-parallel; rank 0 alone owns the run folder and the oracle (see :func:`run_experiment`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import math
import numbers
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fral import distributed
from fral._io import (
    CheckpointError,
    read_torch,
    write_torch,
)
from fral._modules import check_module
from fral._progress import check_progress, progress_bar
from fral.attacks import PGD
from fral.autoattack import AutoAttack, _torchattacks
from fral.datasets import FairDataset, load_dataset
from fral.metrics import evaluate
from fral.models import MLP, MobileNetV2, ResNet18, SmallCNN
from fral.pool import Pool, initial_split
from fral.protocol import QueryStrategy, Strategy, check_int
from fral.run_folder import (
    CHECKPOINT_VERSION,
    _check_same,
    _Checkpoint,
    _differences,
    _json_ready,
    data_fingerprint,
    model_signature,
)
from fral.strategies import build_strategy, strategy_class
from fral.training import TrainConfig, Trainer

__all__ = [
    "DatasetOracle",
    "ExperimentResult",
    "Initialization",
    "data_fingerprint",
    "default_model_fn",
    "initialize",
    "model_signature",
    "run_experiment",
    "strategy_for",
]

Oracle = Callable[[torch.Tensor], Any]


class DatasetOracle:
    """The default oracle: the labels the data set already holds (a simulated annotator).

    Parameters
    ----------
    labels : torch.Tensor, shape (N,), int64
        Labels of the training split.
    """

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        return self.labels[indices]


def default_model_fn(
    dataset: FairDataset, name: str | None = None, *, width: float = 0.5
) -> Callable[[], nn.Module]:
    """``model_fn`` for the data set: ``name`` in ``{"smallcnn", "mobilenetv2", "resnet18",
    "mlp"}``, default :class:`~fral.models.SmallCNN` for images and :class:`~fral.models.MLP`
    for tabular rows; ``width`` is MobileNetV2's width multiplier (ResNet18 is built at full
    width, as in the paper's Table 4). MobileNetV2 and ResNet18 get the image size, so that
    their stem suits it (:func:`fral.models.resolve_stem`: the CIFAR stem below 64 px, the
    ImageNet stem from 64 px, e.g. the paper's 112 px)."""
    image = len(dataset.input_shape) == 3
    name = name or ("smallcnn" if image else "mlp")
    classes = dataset.num_classes
    if name == "mlp":
        return lambda: MLP(math.prod(dataset.input_shape), classes)
    if not image:
        raise ValueError(f"model {name!r} needs image data; {dataset.name} is tabular")
    channels, size = dataset.input_shape[0], min(dataset.input_shape[1:])
    if name == "mobilenetv2":
        return lambda: MobileNetV2(classes, channels, width=width, input_size=size)
    if name == "resnet18":
        return lambda: ResNet18(classes, channels, input_size=size)
    if name == "smallcnn":
        return lambda: SmallCNN(classes, channels, channels=(16, 32))
    raise ValueError(f"unknown model {name!r}; choose from smallcnn, mobilenetv2, resnet18, mlp")


def _synchronised(build: Callable[[], nn.Module], group: Any) -> Callable[[], nn.Module]:
    """``build`` whose BatchNorm layers become ``nn.SyncBatchNorm`` over ``group``."""

    def build_synchronised() -> nn.Module:
        return nn.SyncBatchNorm.convert_sync_batchnorm(build(), group)

    return build_synchronised


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with torch's global RNG seeded, leaving the caller's RNG stream alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return check_module(model, "model_fn()")


@dataclass
class Initialization:
    """Round 0, shared by every strategy compared on one seed.

    Attributes
    ----------
    model : nn.Module
        ``M_R`` after the initial adversarial training.
    trainer : Trainer
        Its trainer (optimiser state continues into the rounds).
    labeled : torch.Tensor, int64
        Initially labelled training indices (sorted).
    record : dict
        Round 0's test metrics and timing.
    settings : dict
        What produced it, checked when a run uses it: data set name and content fingerprint
        (:func:`data_fingerprint`), seed, initial fraction, training options and the model's
        :func:`model_signature`.
    """

    model: nn.Module
    trainer: Trainer
    labeled: torch.Tensor
    record: dict[str, Any]
    settings: dict[str, Any]

    def save(self, path: str | Path) -> None:
        """Write it atomically, with a checksum, to share round 0 across processes or resume
        a comparison.

        Under a process group of several ranks (:mod:`fral.distributed`) rank 0 writes it
        and the other ranks write nothing; a failure to write is an error on every rank.
        """
        state = {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "trainer": self.trainer.state_dict(),
            "labeled": self.labeled,
            "record": self.record,
            "settings": self.settings,
        }
        distributed.on_rank(distributed.current(), lambda: write_torch(path, state))

    @classmethod
    def load(
        cls,
        path: str | Path,
        model_fn: Callable[[], nn.Module],
        device: torch.device | str = "cpu",
        *,
        dataset: FairDataset | None = None,
    ) -> Initialization:
        """Read what :meth:`save` wrote; ``model_fn`` must build the same architecture.

        Parameters
        ----------
        path : str or Path
        model_fn : callable
            Builds the model; its :func:`model_signature` must match the saved one.
        device : torch.device or str, default "cpu"
        dataset : FairDataset, optional
            When given, the file must have been made on this data (same fingerprint).

        Raises
        ------
        fral._io.CheckpointError
            The file is missing, truncated or corrupted (its checksum does not match).
        ValueError
            The file was made for another model or other data.

        Notes
        -----
        Under a process group of several ranks (:mod:`fral.distributed`) rank 0 alone reads
        the file and sends its content to the other ranks (which need no access to it); every
        rank must call this.
        """

        def read() -> dict[str, Any]:
            state = read_torch(path, map_location="cpu")
            if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
                raise CheckpointError(f"{path} is not an initialization of this fral version")
            return state

        state = distributed.on_rank(distributed.current(), read, share=True)
        settings = state["settings"]
        model = check_module(model_fn(), "model_fn()")
        current = {"model_signature": model_signature(model)}
        if dataset is not None:
            current["data"] = data_fingerprint(dataset)
        _check_same(f"the initialization {path}", {k: settings.get(k) for k in current}, current)
        model = model.to(device)
        model.load_state_dict(state["model"])
        trainer = Trainer(model, TrainConfig.from_dict(settings["train"]), random_state=0)
        trainer.load_state_dict(state["trainer"])
        return cls(model, trainer, state["labeled"], state["record"], settings)


def _evaluation(
    model: nn.Module,
    data: Pool,
    attack: PGD | AutoAttack,
    seed: int,
    group_names: tuple[str, ...] | None = None,
    intervals: bool = False,
) -> dict[str, Any]:
    """A record's test figures; with ``intervals``, bootstrap intervals (``ci``) of every
    figure, from the predictions (the model is not run again)."""
    result = evaluate(model, data, attack=attack, random_state=seed, group_names=group_names)
    record: dict[str, Any] = {"summary": result.summary(), "groups": result.to_dict()}
    if group_names is not None:
        record["group_names"] = list(group_names)
    if intervals:
        record["attack"] = result.attack
        record["ci"] = {
            setting: {name: ci.to_dict() for name, ci in metrics.items()}
            for setting, metrics in result.bootstrap(FINAL_RESAMPLES, random_state=seed).items()
        }
    return record


#: Bootstrap resamples of the final evaluation's confidence intervals (95%).
FINAL_RESAMPLES = 1000
#: Evaluation attacks of the final round: ``"pgd"`` (the rounds' PGD) or ``"autoattack"``.
EVAL_ATTACKS = ("pgd", "autoattack")


def _eval_autoattack(dataset: FairDataset, pgd: PGD) -> AutoAttack:
    """AutoAttack with the data set's threat model, after the evaluation's own PGD."""
    return AutoAttack(
        eps=dataset.eps, bounds=dataset.bounds, pgd=pgd, n_classes=dataset.num_classes
    )


def _attack_for(dataset: FairDataset, steps: int) -> PGD:
    return PGD(eps=dataset.eps, alpha=dataset.alpha, steps=steps, bounds=dataset.bounds)


def strategy_for(
    name: str,
    budget: int,
    dataset: FairDataset,
    *,
    seed: int = 0,
    attack_steps: int = 5,
    progress: bool | None = None,
) -> Strategy:
    """A strategy by paper name for ``dataset``: seeded, and where it attacks (JIN, G-RAND,
    G-ENT, MinMax, OPT, FairAL) with the data set's threat model (``eps``, ``alpha``,
    ``bounds``), not the image default; ``progress`` reaches those that show a bar (FairAL)."""
    options: dict[str, Any] = {"random_state": seed}
    parameters = inspect.signature(strategy_class(name)).parameters
    if "attack" in parameters:
        options["attack"] = _attack_for(dataset, attack_steps)
    if "progress" in parameters:
        options["progress"] = progress
    return build_strategy(name, budget, **options)


def _train_config(dataset: FairDataset, config: TrainConfig | None) -> TrainConfig:
    """The given options (or the loop's defaults, with the data set's ``oversample``), with the
    data set's threat model wherever they leave ``eps``, ``alpha`` or ``bounds`` unset."""
    if config is None:
        config = TrainConfig(
            epochs=10, batch_size=64, lr=0.1, warmup_epochs=1, oversample=dataset.oversample
        )
    if not isinstance(config, TrainConfig):
        raise TypeError(f"training options must be a fral.TrainConfig, got {type(config).__name__}")
    return config.inherit(dataset.eps, dataset.alpha, dataset.bounds)


def _check_fraction(name: str, value: Any, *, upper_closed: bool) -> float:
    """``value`` as a float in (0, 1) (or (0, 1] with ``upper_closed``), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    upper = "1]" if upper_closed else "1)"
    if not math.isfinite(value) or value <= 0 or value > 1 or (value == 1 and not upper_closed):
        raise ValueError(f"{name} must lie in (0, {upper}, got {value!r}")
    return value


def _initialization_settings(
    dataset: FairDataset,
    fingerprint: dict[str, Any],
    seed: int,
    initial_fraction: float,
    train: TrainConfig,
    signature: str,
) -> dict[str, Any]:
    return {
        "dataset": dataset.name,
        "data": fingerprint,
        "seed": seed,
        "initial_fraction": initial_fraction,
        "train": train.to_dict(),
        "model": signature.split(":")[0],
        "model_signature": signature,
    }


def initialize(
    dataset: FairDataset,
    *,
    model_fn: Callable[[], nn.Module] | None = None,
    train: TrainConfig | None = None,
    initial_fraction: float = 0.2,
    seed: int = 0,
    device: torch.device | str = "cpu",
    attack_steps: int = 5,
    progress: bool | None = None,
    sync_batchnorm: bool = False,
) -> Initialization:
    """Algorithm 1, line 3: label ``initial_fraction`` of the training split uniformly at
    random and adversarially train ``M_R`` on it; evaluate on the test split (round 0).

    The result's ``settings`` carry the data's fingerprint and the model's signature, so that
    :func:`run_experiment` refuses it for other data or another model. Under a process group
    of several ranks every rank calls it (the training is data-parallel, the evaluation
    sharded; rank 0 alone shows progress); ``sync_batchnorm`` is
    :func:`run_experiment`'s, for the model ``model_fn`` builds here."""
    if not isinstance(dataset, FairDataset):
        raise TypeError(f"dataset must be a FairDataset, got {type(dataset).__name__}")
    initial_fraction = _check_fraction("initial_fraction", initial_fraction, upper_closed=False)
    seed = check_int(seed, "seed", -(2**63))
    attack_steps = check_int(attack_steps, "attack_steps", 1)
    model_fn = model_fn or default_model_fn(dataset)
    if not isinstance(sync_batchnorm, bool):
        raise TypeError(f"sync_batchnorm must be True or False, got {sync_batchnorm!r}")
    context = distributed.current()
    if context is not None and context.rank != 0:
        progress = False  # rank 0 alone shows progress
    if sync_batchnorm:
        _check_sync_batchnorm(context, torch.device(device))
        model_fn = _synchronised(model_fn, None if context is None else context.group)
    train = _train_config(dataset, train)
    labeled, _ = initial_split(
        len(dataset.train), initial_fraction, generator=torch.Generator().manual_seed(seed)
    )
    model = _seeded(seed, model_fn).to(device)
    settings = _initialization_settings(
        dataset, data_fingerprint(dataset), seed, initial_fraction, train, model_signature(model)
    )
    trainer = Trainer(model, train, random_state=seed, progress=progress)
    start = time.perf_counter()
    data = dataset.train.pool().subset(labeled)
    trainer.fit(data)
    seconds = time.perf_counter() - start
    attack = _attack_for(dataset, attack_steps)
    record = {
        "round": 0,
        "labeled": int(labeled.numel()),
        "training_seconds": seconds,
        "test": _evaluation(model, dataset.test.pool(), attack, seed, dataset.group_names),
    }
    return Initialization(model, trainer, labeled, _json_ready(record), settings)


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns.

    Attributes
    ----------
    strategy : str
        The strategy's name.
    history : list of dict
        One record per round (round 0 is the initialization), as in ``history.json``: test
        metrics (``summary``: worst / disparity / group average, clean and robust, accuracy and
        macro-F1; ``groups``: per-group figures); ``labeled`` (labelled count after the round);
        ``picked`` and ``budget``; ``groups`` (the groups the strategy drew from, in order,
        ``None`` for the whole pool) and ``groups_from`` (``"strategy"`` when the strategy
        reported them in ``last_selection``, ``"picks"`` when derived from the picks' groups
        in order of first appearance); ``picked_per_group`` and ``picked_per_class``; in
        ``test``, ``group_names`` and, for the final round, ``attack`` and ``ci`` (bootstrap
        intervals, see ``eval_attack`` of :func:`run_experiment`), and there
        ``test_autoattack`` where asked; and the wall time of selection
        (``selection_seconds``: ``M_S`` training and the strategy's own worst-group search
        included) and of the adversarial fine-tuning (``training_seconds``).
    labeled : torch.Tensor, int64
        Final labelled training indices, in labelling order.
    labels : torch.Tensor, int64
        Their labels as the oracle gave them.
    model : nn.Module
        The final ``M_R``.
    settings : dict
        The run's settings.
    """

    strategy: str
    history: list[dict[str, Any]]
    labeled: torch.Tensor
    labels: torch.Tensor
    model: nn.Module
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, history and the labelled indices."""
        return {
            "strategy": self.strategy,
            "settings": self.settings,
            "history": self.history,
            "labeled": self.labeled.tolist(),
        }


def _callable_name(function: Any) -> str:
    """A function's qualified name, or a callable object's class name."""
    if inspect.isfunction(function) or inspect.ismethod(function):
        return str(function.__qualname__)
    return type(function).__name__


def _check_labels(answer: Any, count: int, num_classes: int, oracle: Any) -> torch.Tensor:
    """The oracle's ``answer`` for ``count`` indices as int64 labels, or a clear error."""
    name = f"the oracle {_callable_name(oracle)}"
    fix = (
        f"it must return {count} integer labels in 0..{num_classes - 1}, one per index "
        "(a list, NumPy array or int64 tensor)"
    )
    if answer is None:
        raise TypeError(f"{name} returned None for {count} indices; {fix}")
    try:
        tensor = torch.as_tensor(answer)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} returned a {type(answer).__name__}; {fix}") from None
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} returned {tensor.dtype} values; {fix}")
    if tensor.shape != (count,):
        raise ValueError(
            f"{name} returned labels of shape {tuple(tensor.shape)} for {count} indices; {fix}"
        )
    tensor = tensor.to("cpu", torch.int64)
    outside = tensor[(tensor < 0) | (tensor >= num_classes)]
    if outside.numel():
        raise ValueError(
            f"{name} returned labels outside 0..{num_classes - 1}: {outside[:5].tolist()}; {fix}"
        )
    return tensor


def _check_picks(picks: Any, size: int, budget: int, name: str) -> torch.Tensor:
    """A strategy's output as checked int64 pool indices, or an error naming the strategy."""
    what = f"strategy {name}'s select"
    rule = (
        f"it must return a 1-D int64 torch.Tensor of unique indices in [0, {size}), "
        f"at most {budget}"
    )
    if not isinstance(picks, torch.Tensor):
        raise TypeError(f"{what} returned a {type(picks).__name__}; {rule}")
    if picks.dtype != torch.int64:
        raise TypeError(f"{what} returned {picks.dtype} indices; {rule} (use .long())")
    if picks.dim() != 1:
        raise ValueError(f"{what} returned a tensor of shape {tuple(picks.shape)}; {rule}")
    picks = picks.detach().to("cpu")
    if picks.numel() > budget:
        raise ValueError(f"{what} returned {picks.numel()} indices, over its budget; {rule}")
    if picks.numel() and (int(picks.min()) < 0 or int(picks.max()) >= size):
        raise ValueError(f"{what} returned indices outside the pool of {size}; {rule}")
    if torch.unique(picks).numel() != picks.numel():
        raise ValueError(f"{what} returned the same index twice; {rule}")
    return picks


def _groups_used(
    before: Any, after: Any, picks: torch.Tensor, groups: torch.Tensor
) -> tuple[list[int] | None, str]:
    """The groups a selection drew from, in order, and where that comes from.

    ``after`` is the strategy's ``last_selection`` after the call; when it is a fresh
    ``{"groups": [...] or None}`` it is used, else the picks' groups in order of first
    appearance."""
    if after is not None and after is not before and isinstance(after, dict):
        reported = after.get("groups", "missing")
        if reported is None:
            return None, "strategy"
        if isinstance(reported, (list, tuple)) and all(
            isinstance(group, numbers.Integral) for group in reported
        ):
            return [int(group) for group in reported], "strategy"
    seen: list[int] = []
    for group in groups[picks].tolist():
        if group not in seen:
            seen.append(group)
    return seen, "picks"


def _describe_picks(
    picks: torch.Tensor, labels: torch.Tensor, dataset: FairDataset
) -> dict[str, list[int]]:
    return {
        "picked_per_group": torch.bincount(
            dataset.train.z[picks], minlength=dataset.num_groups
        ).tolist(),
        "picked_per_class": torch.bincount(labels, minlength=dataset.num_classes).tolist(),
    }


def run_experiment(
    strategy: QueryStrategy | str,
    dataset: FairDataset | str,
    *,
    model_fn: Callable[[], nn.Module] | None = None,
    rounds: int = 5,
    initial_fraction: float = 0.2,
    budget_fraction: float = 0.02,
    oracle: Oracle | None = None,
    oracle_batch_size: int = 16,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    train: TrainConfig | None = None,
    finetune: TrainConfig | None = None,
    standard: TrainConfig | None = None,
    standard_mode: str = "finetune",
    standard_finetune_epochs: int | None = None,
    attack_steps: int = 5,
    device: torch.device | str = "cpu",
    initialization: Initialization | None = None,
    progress: bool | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    eval_attack: str = "pgd",
    sync_batchnorm: bool = False,
) -> ExperimentResult:
    """Run Algorithm 1 (FRAL) with ``strategy`` on ``dataset``.

    Parameters
    ----------
    strategy : QueryStrategy or str
        A strategy object, or a paper name (``"JIN"``, ``"RAND"``, ``"G-ENT"``...) built by
        :func:`strategy_for` with budget ``round(budget_fraction * |D|)``, ``random_state=seed``
        and the data set's threat model. An object keeps its own budget and options. Each
        round it gets the validation set and ``group=None``: a group-aware strategy finds the
        worst group by its own rule (criterion, metric, attack, and its top-up order); the
        loop imposes no ranking. Its output is checked (1-D int64, unique, within the pool, at
        most ``budget``); a violation is an error naming the strategy.
    dataset : FairDataset or str
        The data (its train split is ``D = D_L + D_U``), or a name for
        :func:`fral.datasets.load_dataset` (split with ``seed``).
    model_fn : callable, optional
        ``model_fn() -> nn.Module`` builds ``M_R`` (and ``M_S``); called under a fixed seed.
        Defaults to :func:`default_model_fn`.
    rounds : int, default 5
        Active rounds ``K``.
    initial_fraction : float, default 0.2
        Share of ``D`` labelled at random before round 1 (the paper: 20%).
    budget_fraction : float, default 0.02
        Budget per round as a share of ``D`` (the paper: 2%), in (0, 1]. A run whose rounds
        would empty the pool before the last one (every round spending its budget) is refused
        at the start.
    oracle : callable, optional
        ``oracle(indices) -> labels`` for training-split indices (int64 tensor): your
        annotation tool. It must return one integer label in ``[0, num_classes)`` per index
        (list, NumPy array or tensor); anything else (``None``, another length, floats,
        labels out of range) is an error naming the oracle, and the answers it gave before
        stay on disk. Default: the data set's own labels (:class:`DatasetOracle`).
    oracle_batch_size : int, default 16
        Indices per oracle call; every answer is written to disk before the next call.
    checkpoint_dir : str or Path, optional
        Where the run is saved: ``settings.json`` (written once, with the data's
        :func:`data_fingerprint` and the model's :func:`model_signature`); after every round
        ``state-<round>.pt`` (labelled set, models, optimisers, strategy and generator
        states, and the world size) and ``history.json`` (the records, naming that state file
        and its checksum: the commit point; ``notes`` where a resume changed the world size);
        during a round ``open_round.json`` (its picks and each oracle answer so far) and
        ``open_round.pt`` (``M_S`` and the strategy right after selecting). Every file is
        written atomically and carries a SHA-256; a truncated or corrupted one is a
        :class:`fral._io.CheckpointError` naming it. The folder is locked while the run
        writes (a second run on it fails at once with :class:`fral._io.FolderLockedError`),
        and a folder that cannot be written is a ``ValueError`` before any training. Without
        it nothing is written.
    resume : bool, default False
        Continue the run saved in ``checkpoint_dir``. Everything but ``rounds`` (which may
        grow) must match ``settings.json``, the data by content: another data set, subsample,
        split, model or option is refused, naming the settings that differ. ``settings.json``
        is never rewritten. On a folder without a run it starts one.
    seed : int, default 0
        Seeds the initial split, the models' initialisation, training, the strategy (when
        built from a name) and the evaluation attacks.
    train : TrainConfig, optional
        Adversarial training of ``M_R`` (initial). Defaults: 10 epochs, batch 64, lr 0.1,
        one warm-up epoch, TRADES with the data set's ``eps``/``alpha``/``bounds``.
    finetune : TrainConfig, optional
        Each round's adversarial fine-tuning (default ``train``: the paper retrains for ``E``
        epochs every round). It continues from the current weights and momentum buffers.
    standard : TrainConfig, optional
        Training of ``M_S`` (cross-entropy), for strategies that need it. Defaults to
        ``train`` without the attack.
    standard_mode : {"finetune", "scratch"}, default "finetune"
        ``"scratch"`` trains ``M_S`` anew every round (the paper); ``"finetune"`` trains it
        fully in the first round and then continues it for ``standard_finetune_epochs``,
        which makes JIN's selection far cheaper.
    standard_finetune_epochs : int, optional
        Epochs of ``M_S`` fine-tuning per round after the first (default: a quarter of
        ``standard.epochs``, at least 1). Where it is shorter than ``standard``'s warm-up, the
        warm-up of these fine-tuning calls is clipped to it (the whole call then warms up).
    attack_steps : int, default 5
        PGD steps of the evaluation and worst-group attacks (the paper: PGD-5).
    device : torch.device or str, default "cpu"
    initialization : Initialization, optional
        A shared round 0 from :func:`initialize` (copied, never modified), so that several
        strategies start from the same ``M_R``. Must match ``dataset`` (by content),
        ``seed``, ``initial_fraction``, ``train`` and the model, else a ``ValueError`` names
        what differs.
    progress : bool or None, default None
        Progress bars for rounds, training epochs and the oracle: ``True``/``False`` as
        asked; ``None`` in a terminal only, quiet in logs and notebooks (or as the
        environment variable ``FRAL_PROGRESS`` says; see :func:`fral.show_progress`).
    on_round : callable, optional
        Called with each round's record after it is saved. Under a process group it is
        called on every rank, with the same record (check ``torch.distributed.get_rank()``
        to act on one rank only); if it raises on any rank, every rank raises.
    eval_attack : {"pgd", "autoattack"}, default "pgd"
        The final round's evaluation: ``"autoattack"`` adds ``test_autoattack`` to its
        record, the test figures under :class:`fral.AutoAttack` (torchattacks' standard
        version, the data set's ``eps`` and ``bounds``) as the worst case with the rounds'
        PGD: robust = correct under PGD and under AutoAttack. Slow (minutes on CPU for a
        few thousand images); needs ``pip install torchattacks`` and image data in bounds
        (refused at the start for ``bounds=None``, e.g. Adult). Every round is evaluated
        under PGD either way. The final round's ``test`` (and ``test_autoattack``) also
        carry ``ci``: 95% stratified percentile-bootstrap intervals of every figure
        (:meth:`fral.Evaluation.bootstrap`, 1000 resamples of the predictions, seeded).
        Not a setting of the run: it may change on ``resume`` (it applies to the final
        round evaluated after that).
    sync_batchnorm : bool, default False
        Under a process group of several ranks on GPUs: convert the loop's own models (those
        ``model_fn`` builds, and its copy of ``initialization``'s model; never a model you
        hand in) with ``nn.SyncBatchNorm.convert_sync_batchnorm``, so that BatchNorm
        normalises each training batch with the statistics of the whole global batch, as
        one process does. Refused (``ValueError``) without such a process group and on the
        CPU (torch's ``SyncBatchNorm`` runs on GPUs only). Like ``device``, not a setting of
        the run.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    TypeError, ValueError
        Bad arguments, settings that differ from the run being resumed or the initialization,
        a strategy output or an oracle answer that breaks its contract.
    FileExistsError
        ``checkpoint_dir`` holds a run and ``resume`` is false.
    fral._io.FolderLockedError
        Another run holds ``checkpoint_dir``.
    fral._io.CheckpointError
        A file of the run folder is missing, truncated or corrupted.
    fral.distributed.RankFailedError
        Under a process group: a step failed on another rank (that rank raises the error).

    Notes
    -----
    Under ``torchrun`` (a process group of several ranks; :mod:`fral.distributed`) every
    rank calls ``run_experiment`` with the same arguments and runs the loop: selection,
    training (data-parallel) and evaluation are sharded across the ranks. Rank 0 alone owns
    the run folder (it alone reads and writes ``checkpoint_dir``; the other ranks ignore
    theirs) and the oracle (called on rank 0 only; its labels are sent to every rank).
    Each round the ranks check that they picked the same samples (a ``ValueError`` on every
    rank if not), and every rank returns the same history (rank 0's records, timings
    included). A failure on one rank (the oracle raising, a folder that cannot be written)
    is an error on every rank. Each state file records the world size; ``resume=True`` with
    another world size continues the run but warns (the data-parallel training then differs
    from an uninterrupted run: float rounding, and for BatchNorm without SyncBatchNorm each
    rank's batch statistics) and notes it in ``history.json``
    (``notes``). Rank 0's saved state is what every rank restores. The oracle's labels reach
    the other ranks in one collective after its last answer: with an oracle that takes long
    (a person), give ``torch.distributed.init_process_group`` a ``timeout`` that covers it.
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, seed=seed)
    if not isinstance(dataset, FairDataset):
        raise TypeError(f"dataset must be a FairDataset or a name, got {type(dataset).__name__}")
    rounds = check_int(rounds, "rounds", 0)
    seed = check_int(seed, "seed", -(2**63))
    attack_steps = check_int(attack_steps, "attack_steps", 1)
    oracle_batch_size = check_int(oracle_batch_size, "oracle_batch_size", 1)
    check_progress(progress)
    initial_fraction = _check_fraction("initial_fraction", initial_fraction, upper_closed=False)
    budget_fraction = _check_fraction("budget_fraction", budget_fraction, upper_closed=True)
    if standard_mode not in ("finetune", "scratch"):
        raise ValueError(f"standard_mode must be 'finetune' or 'scratch', got {standard_mode!r}")
    for name, function in (("model_fn", model_fn), ("oracle", oracle), ("on_round", on_round)):
        if function is not None and not callable(function):
            raise TypeError(f"{name} must be callable, got {type(function).__name__}")
    if initialization is not None and not isinstance(initialization, Initialization):
        raise TypeError(
            "initialization must come from fral.loop.initialize, got "
            f"{type(initialization).__name__}"
        )
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
    if not isinstance(sync_batchnorm, bool):
        raise TypeError(f"sync_batchnorm must be True or False, got {sync_batchnorm!r}")
    context = distributed.current()
    if context is not None and context.rank != 0:
        progress = False  # rank 0 alone shows progress
    if eval_attack not in EVAL_ATTACKS:
        raise ValueError(f"eval_attack must be one of {EVAL_ATTACKS}, got {eval_attack!r}")
    if eval_attack == "autoattack":  # refuse unbounded data or a missing torchattacks now
        _eval_autoattack(dataset, _attack_for(dataset, attack_steps))
        _torchattacks()
    size = len(dataset.train)
    if isinstance(strategy, str):
        budget = max(1, round(budget_fraction * size))
        strategy = strategy_for(
            strategy, budget, dataset, seed=seed, attack_steps=attack_steps, progress=progress
        )
    if not isinstance(strategy, QueryStrategy):
        raise TypeError("strategy must follow fral.QueryStrategy (budget, requires, select)")
    name = str(getattr(strategy, "name", type(strategy).__name__))
    budget = strategy.budget
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1:
        raise ValueError(f"strategy {name} has budget {budget!r}; it must be an integer >= 1")
    model_fn = model_fn or default_model_fn(dataset)
    train = _train_config(dataset, train)
    standard = replace(train, adversarial=False) if standard is None else standard
    standard = _train_config(dataset, standard)
    finetune = train if finetune is None else _train_config(dataset, finetune)
    if standard_finetune_epochs is None:
        standard_finetune_epochs = max(1, standard.epochs // 4)
    standard_finetune_epochs = check_int(standard_finetune_epochs, "standard_finetune_epochs", 1)
    initial = (
        max(1, round(size * initial_fraction))
        if initialization is None
        else int(initialization.labeled.numel())
    )
    if rounds and initial + (rounds - 1) * budget >= size:
        raise ValueError(
            f"{rounds} rounds of {budget} labels after {initial} initial ones leave no "
            f"candidate for the last round ({size} training samples): lower rounds or "
            "budget_fraction (or the strategy's budget)"
        )
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must name a torch device ('cpu', 'cuda'...), got {device!r}"
        ) from None
    if sync_batchnorm:
        _check_sync_batchnorm(context, device)
    signature = model_signature(_seeded(seed, model_fn))
    settings = {
        "version": CHECKPOINT_VERSION,
        "strategy": name,
        "strategy_repr": repr(strategy),
        "dataset": dataset.name,
        "data": data_fingerprint(dataset),
        "model": signature.split(":")[0],
        "model_signature": signature,
        "seed": seed,
        "rounds": rounds,
        "initial_fraction": initial_fraction,
        "budget": int(budget),
        "train": train.to_dict(),
        "finetune": finetune.to_dict(),
        "standard": standard.to_dict(),
        "standard_mode": standard_mode,
        "standard_finetune_epochs": standard_finetune_epochs,
        "attack_steps": attack_steps,
    }
    run = _Run(
        strategy,
        dataset,
        settings,
        model_fn=model_fn,
        train=train,
        finetune=finetune,
        standard=standard,
        oracle=oracle or DatasetOracle(dataset.train.y),
        oracle_batch_size=oracle_batch_size,
        checkpoint=_Checkpoint(None if checkpoint_dir is None else Path(checkpoint_dir)),
        device=device,
        progress=progress,
        on_round=on_round,
        eval_attack=eval_attack,
        context=context,
        sync_batchnorm=sync_batchnorm,
    )
    with run.opened(resume):
        if not (resume and run.restore()):
            run.start(initialization, initial_fraction)
        return run.finish()


def _check_sync_batchnorm(context: distributed.Context | None, device: torch.device) -> None:
    """Refuse ``sync_batchnorm=True`` where there is nothing to synchronise or no GPU."""
    if context is None:
        raise ValueError(
            "sync_batchnorm=True needs a process group of several ranks (torchrun, or "
            "torch.distributed.init_process_group): in one process BatchNorm already sees "
            "the whole batch; drop sync_batchnorm"
        )
    if device.type != "cuda":
        raise ValueError(
            f"sync_batchnorm=True needs device='cuda', got {str(device)!r}: torch's "
            "nn.SyncBatchNorm runs on GPUs only (it refuses CPU inputs in training); on CPUs "
            "drop sync_batchnorm (BatchNorm then normalises each rank's part of the batch)"
        )


def _picks_digest(picks: torch.Tensor) -> str:
    return hashlib.sha256(picks.to("cpu", torch.int64).numpy().tobytes()).hexdigest()[:16]


def _check_same_picks(
    context: distributed.Context | None, picks: torch.Tensor, number: int
) -> None:
    """A ``ValueError`` on every rank unless every rank picked the same samples."""
    if context is None:
        return
    digests = context.all_gather_object(_picks_digest(picks))
    if any(digest != digests[0] for digest in digests):
        raise ValueError(
            f"round {number}: the ranks picked different samples (digests of the picks by "
            f"rank: {digests}); every rank must run the same strategy, seed, data and "
            "models: build them identically on every rank (a strategy drawing from an "
            "unseeded generator gives each rank its own draws)"
        )


class _Run:
    """The state of one experiment between rounds, and the steps of a round."""

    def __init__(
        self,
        strategy: QueryStrategy,
        dataset: FairDataset,
        settings: dict[str, Any],
        *,
        model_fn: Callable[[], nn.Module],
        train: TrainConfig,
        finetune: TrainConfig,
        standard: TrainConfig,
        oracle: Oracle,
        oracle_batch_size: int,
        checkpoint: _Checkpoint,
        device: torch.device,
        progress: bool | None,
        on_round: Callable[[dict[str, Any]], None] | None,
        eval_attack: str = "pgd",
        context: distributed.Context | None = None,
        sync_batchnorm: bool = False,
    ) -> None:
        self.strategy, self.dataset, self.settings = strategy, dataset, settings
        self.name = str(settings["strategy"])
        # Under a process group rank 0 alone owns the run folder; the others never touch it.
        self.context = context
        self.world_size = 1 if context is None else context.world_size
        if context is not None and context.rank != 0:
            checkpoint = _Checkpoint(None)
        self.sync_batchnorm = sync_batchnorm
        if sync_batchnorm:
            model_fn = _synchronised(model_fn, None if context is None else context.group)
        self.model_fn, self.train, self.finetune = model_fn, train, finetune
        self.standard = standard
        epochs = int(settings["standard_finetune_epochs"])
        self.standard_finetune = replace(
            standard, epochs=epochs, warmup_epochs=min(standard.warmup_epochs, epochs)
        )
        self.oracle, self.oracle_batch_size = oracle, oracle_batch_size
        self.checkpoint, self.device = checkpoint, device
        self.progress, self.on_round = progress, on_round
        self.seed = int(settings["seed"])
        self.attack = _attack_for(dataset, int(settings["attack_steps"]))
        self.final_attack = (
            _eval_autoattack(dataset, self.attack) if eval_attack == "autoattack" else None
        )
        self.validation = dataset.validation.pool()
        self.test = dataset.test.pool()
        self.model_s: nn.Module | None = None
        self.trainer_s: Trainer | None = None
        self.history: list[dict[str, Any]] = []

    # -- state -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def opened(self, resume: bool) -> Any:
        """The run folder checked, locked and tidied (on rank 0) for the block; under a
        process group, first a check that every rank runs with rank 0's settings."""
        if self.context is not None:
            # A strategy object's repr may hold its address, which differs between processes.
            mine = {k: v for k, v in self.settings.items() if k != "strategy_repr"}
            first = distributed.broadcast_object(self.context, mine)
            differences = self.context.all_gather_object(
                _differences(_json_ready(first), _json_ready(mine))
            )
            ranks = [rank for rank, differ in enumerate(differences) if differ]
            if ranks:  # the same error on every rank
                raise ValueError(
                    f"the ranks called run_experiment with other settings than rank 0: ranks "
                    f"{ranks} differ in {'; '.join(differences[ranks[0]])} (rank {ranks[0]}); "
                    "every rank must make the same call, with the same data and seed"
                )
        with contextlib.ExitStack() as stack:
            distributed.on_rank(
                self.context,
                lambda: stack.enter_context(self.checkpoint.opened(self.settings, resume)),
            )
            yield

    def start(self, initialization: Initialization | None, initial_fraction: float) -> None:
        if initialization is None:
            initialization = initialize(
                self.dataset,
                model_fn=self.model_fn,
                train=self.train,
                initial_fraction=initial_fraction,
                seed=self.seed,
                device=self.device,
                attack_steps=int(self.settings["attack_steps"]),
                progress=self.progress,
            )
        expected = _initialization_settings(
            self.dataset,
            self.settings["data"],
            self.seed,
            initial_fraction,
            self.train,
            self.settings["model_signature"],
        )
        _check_same(
            "the initialization", {k: initialization.settings.get(k) for k in expected}, expected
        )
        self.model_r = copy.deepcopy(initialization.model).to(self.device)
        if self.sync_batchnorm:  # the loop's own copy; the caller's model stays as it was
            self.model_r = nn.SyncBatchNorm.convert_sync_batchnorm(
                self.model_r, None if self.context is None else self.context.group
            )
        # The generator's seed is irrelevant: the state loaded next replaces it.
        self.trainer_r = Trainer(self.model_r, self.train, random_state=0, progress=self.progress)
        self.trainer_r.load_state_dict(initialization.trainer.state_dict())
        self.labeled = initialization.labeled.clone()
        self.labels = self.dataset.train.y[self.labeled].clone()
        # Rank 0's record (its timings) on every rank: the ranks return the same history.
        record = distributed.broadcast_object(self.context, _json_ready(initialization.record))
        self.history = [record]
        if int(self.settings["rounds"]) == 0:  # round 0 is the final one
            self.history[0] = _json_ready({**self.history[0], **self.evaluation(0, final=True)})
        self.save_round()

    def selection_state(self) -> dict[str, Any]:
        """What selecting changes: ``M_S``, its trainer and the strategy's state."""
        return {
            "model_s": None if self.model_s is None else self.model_s.state_dict(),
            "trainer_s": None if self.trainer_s is None else self.trainer_s.state_dict(),
            "strategy": getattr(self.strategy, "state_dict", dict)(),
        }

    def load_selection_state(self, state: dict[str, Any]) -> None:
        if state["model_s"] is not None:
            self.model_s = _seeded(self.seed, self.model_fn).to(self.device)
            self.model_s.load_state_dict(state["model_s"])
            self.trainer_s = Trainer(
                self.model_s, self.standard, random_state=0, progress=self.progress
            )
            self.trainer_s.load_state_dict(state["trainer_s"])
        if hasattr(self.strategy, "load_state_dict"):
            self.strategy.load_state_dict(state["strategy"])

    def state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "round": len(self.history) - 1,
            "world_size": self.world_size,
            "labeled": self.labeled,
            "labels": self.labels,
            "model_r": self.model_r.state_dict(),
            "trainer_r": self.trainer_r.state_dict(),
            **self.selection_state(),
        }

    def save_round(self) -> None:
        state = self.state()
        distributed.on_rank(
            self.context,
            lambda: self.checkpoint.commit(
                len(self.history) - 1, state, self.settings, self.history
            ),
        )

    def restore(self) -> bool:
        """Continue from the committed round, as rank 0 reads it (every rank gets its state)."""

        def read() -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
            committed = self.checkpoint.committed()
            if committed is None:
                return None
            state = self.checkpoint.load_state(committed)
            history = committed["history"]
            if state.get("round") != len(history) - 1:
                raise CheckpointError(
                    f"{self.checkpoint.path(committed['state']['file'])} holds round "
                    f"{state.get('round')} but history.json ends at round {len(history) - 1}"
                )
            return history, state

        found = distributed.on_rank(self.context, read, share=True)
        if found is None:
            return False
        history, state = found
        saved = int(state.get("world_size", 1))  # older folders: one process
        if saved != self.world_size:
            note = (
                f"round {len(history)} on: resumed at world size {self.world_size} from a run "
                f"saved at world size {saved}; the data-parallel training may differ from an "
                "uninterrupted run (float rounding; BatchNorm without SyncBatchNorm normalises "
                "with each rank's part of a batch)"
            )
            self.checkpoint.notes.append(note)
            if self.context is None or self.context.rank == 0:
                warnings.warn(
                    f"resuming the run in {self.checkpoint.folder} with world size "
                    f"{self.world_size}; it was saved at world size {saved}: the results may "
                    "differ from an uninterrupted run (float rounding; BatchNorm without "
                    "SyncBatchNorm normalises with each rank's part of a batch; noted in "
                    "history.json)",
                    stacklevel=3,
                )
        self.model_r = _seeded(self.seed, self.model_fn).to(self.device)
        self.model_r.load_state_dict(state["model_r"])
        self.trainer_r = Trainer(self.model_r, self.train, random_state=0, progress=self.progress)
        self.trainer_r.load_state_dict(state["trainer_r"])
        self.load_selection_state(state)
        self.labeled, self.labels = state["labeled"], state["labels"]
        self.history = history
        return True

    # -- a round -----------------------------------------------------------------------------
    def finish(self) -> ExperimentResult:
        done = len(self.history) - 1
        rounds = int(self.settings["rounds"])
        bar = progress_bar(
            range(done + 1, rounds + 1),
            progress=self.progress,
            desc=f"{self.name} rounds",
            initial=done,
            total=rounds,
        )
        for number in bar:
            record = self.round(number)
            if self.on_round is not None:
                with distributed.all_or_none(self.context):
                    self.on_round(record)
        return ExperimentResult(
            strategy=self.name,
            history=self.history,
            labeled=self.labeled,
            labels=self.labels,
            model=self.model_r,
            settings=self.settings,
        )

    def round(self, number: int) -> dict[str, Any]:
        opened = distributed.on_rank(
            self.context, lambda: self.checkpoint.open_round(number), share=True
        )
        record: dict[str, Any] = {"round": number}
        if opened is not None:
            # Selected before the interruption: keep those picks and the answers given, and
            # the models and strategy state as they were right after selecting.
            open_round, selection_state = opened
            self.load_selection_state(selection_state)
            picks = torch.tensor(open_round["picks"], dtype=torch.int64)
            record.update(open_round["record"])
        else:
            picks = self.select(record)
            _check_same_picks(self.context, picks, number)
            open_round = {
                "round": number,
                "picks": picks.tolist(),
                "labels": [],
                "record": _json_ready(record),
            }
            selection_state = self.selection_state()
            distributed.on_rank(
                self.context,
                lambda: self.checkpoint.save_open_round(open_round, selection_state),
            )
        # Rank 0 asks the oracle; every rank gets its labels (or its failure).
        labels = distributed.on_rank(
            self.context, lambda: self.ask_oracle(picks, open_round), share=True
        )
        self.labeled = torch.cat([self.labeled, picks])
        self.labels = torch.cat([self.labels, labels])
        start = time.perf_counter()
        self.trainer_r.fit(self.labeled_pool(), config=self.finetune)
        record["training_seconds"] = time.perf_counter() - start
        record["labeled"] = int(self.labeled.numel())
        record.update(_describe_picks(picks, labels, self.dataset))
        record.update(self.evaluation(number, final=number == int(self.settings["rounds"])))
        # Rank 0's record (its timings) on every rank: the ranks return the same history.
        record = distributed.broadcast_object(self.context, _json_ready(record))
        self.history.append(record)
        self.save_round()
        return record

    def evaluation(self, number: int, final: bool) -> dict[str, Any]:
        """Round ``number``'s test figures; the final round's with bootstrap intervals, and
        under AutoAttack too where asked (``test_autoattack``)."""
        names = self.dataset.group_names
        seed = self.seed + number
        out = {"test": _evaluation(self.model_r, self.test, self.attack, seed, names, final)}
        if final and self.final_attack is not None:
            out["test_autoattack"] = _evaluation(
                self.model_r, self.test, self.final_attack, seed, names, intervals=True
            )
        return out

    def labeled_pool(self) -> Pool:
        """The labelled samples with the oracle's labels (Dataset inputs stay lazy)."""
        samples = self.dataset.train.pool(labeled=False).subset(self.labeled)
        return Pool(
            samples.inputs,
            samples.groups,
            labels=self.labels,
            ids=self.labeled,
            num_groups=self.dataset.num_groups,
            num_workers=samples.num_workers,
        )

    def unlabeled_indices(self) -> torch.Tensor:
        mask = torch.ones(len(self.dataset.train), dtype=torch.bool)
        mask[self.labeled] = False
        return torch.nonzero(mask).flatten()

    def select(self, record: dict[str, Any]) -> torch.Tensor:
        """``M_S`` if needed, then the strategy's picks as training indices.

        The strategy gets the validation set and no group: a group-aware one ranks the
        groups by its own rule (its ``worst_group`` options) and tops up in its own order.
        """
        number = record["round"]
        standard_seconds = 0.0
        model_s = None
        if "model_s" in self.strategy.requires:
            start = time.perf_counter()
            model_s = self.train_standard(number)
            standard_seconds = time.perf_counter() - start
        unlabeled = self.unlabeled_indices()
        pool = self.dataset.train.pool(labeled=False).subset(unlabeled)
        if isinstance(self.strategy, Strategy):
            # fral strategies set last_selection on every call: clear it so a stale one from
            # a strategy that did not report this time cannot be mistaken for this call's.
            with contextlib.suppress(AttributeError, TypeError):
                self.strategy.last_selection = None  # type: ignore[attr-defined]
        before = getattr(self.strategy, "last_selection", None)
        start = time.perf_counter()
        picks = self.strategy.select(
            self.model_r,
            model_s,
            pool,
            labeled=self.labeled_pool(),
            validation=self.validation,
            group=None,
        )
        select_seconds = time.perf_counter() - start
        picks = unlabeled[_check_picks(picks, len(pool), self.strategy.budget, self.name)]
        after = getattr(self.strategy, "last_selection", None)
        groups, source = _groups_used(before, after, picks, self.dataset.train.z)
        record["budget"] = int(self.strategy.budget)
        record["picked"] = int(picks.numel())
        record["groups"] = groups
        record["groups_from"] = source
        record["standard_training_seconds"] = standard_seconds
        record["select_seconds"] = select_seconds
        record["selection_seconds"] = select_seconds + standard_seconds
        return picks

    def train_standard(self, number: int) -> nn.Module:
        """``M_S`` for round ``number``: trained from scratch, or its fine-tuning continued."""
        scratch = self.settings["standard_mode"] == "scratch" or self.model_s is None
        if scratch:
            self.model_s = _seeded(self.seed + 1000 + number, self.model_fn).to(self.device)
            self.trainer_s = Trainer(
                self.model_s, self.standard, random_state=self.seed + number, progress=self.progress
            )
            self.trainer_s.fit(self.labeled_pool())
        else:
            assert self.trainer_s is not None
            self.trainer_s.fit(self.labeled_pool(), config=self.standard_finetune)
        return self.model_s

    def ask_oracle(self, picks: torch.Tensor, open_round: dict[str, Any]) -> torch.Tensor:
        """Labels for ``picks``; each answer is on disk before the next question."""
        answers: list[int] = open_round["labels"]
        bar = progress_bar(
            total=picks.numel(),
            initial=len(answers),
            desc="oracle",
            unit="label",
            progress=self.progress,
            leave=False,
        )
        while len(answers) < picks.numel():
            chunk = picks[len(answers) : len(answers) + self.oracle_batch_size]
            labels = _check_labels(
                self.oracle(chunk.clone()), chunk.numel(), self.dataset.num_classes, self.oracle
            )
            answers.extend(labels.tolist())
            self.checkpoint.save_open_round(open_round, None)
            bar.update(chunk.numel())
        bar.close()
        return torch.tensor(answers, dtype=torch.int64)
