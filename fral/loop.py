"""Algorithm 1 of the paper as a resumable experiment.

::

    M_R <- Adv-TRAIN(D_L)                                   (round 0, "Initialization")
    for k in 1..K:
        z* <- worst group of M_R on D_V (clean and PGD accuracy)
        [M_S <- TRAIN(D_L)  only if the strategy needs it]
        X* <- strategy.select(M_R, M_S, D_U, labeled=D_L, validation=D_V, group=z*)
        Y* <- oracle(X*);  D_L <- D_L + (X*, Y*);  D_U <- D_U - X*
        M_R <- Adv-TRAIN(D_L)   (fine-tuning from the current weights and optimiser)
        evaluate M_R on D_T, clean and under PGD, per group

:func:`run_experiment` runs it on a :class:`~fral.datasets.FairDataset` with any strategy of
the :class:`~fral.protocol.QueryStrategy` protocol. Nothing is lost: after each round the
labelled set, both models, the optimiser states, the strategy's state and every random
generator are written atomically to ``checkpoint_dir``; the round's picks and each answer of
the oracle are written as soon as they exist. ``resume=True`` continues a killed run and ends
with the labelled set and metrics of the uninterrupted run.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fral._io import write_json, write_torch
from fral._modules import check_module
from fral.attacks import PGD
from fral.datasets import FairDataset, load_dataset
from fral.metrics import evaluate, group_ranking
from fral.models import MLP, MobileNetV2, SmallCNN
from fral.pool import Pool, initial_split
from fral.protocol import QueryStrategy, Strategy
from fral.strategies import build_strategy, strategy_class
from fral.training import TrainConfig, Trainer

__all__ = [
    "DatasetOracle",
    "ExperimentResult",
    "Initialization",
    "default_model_fn",
    "initialize",
    "run_experiment",
    "strategy_for",
]

Oracle = Callable[[torch.Tensor], Any]
CHECKPOINT_VERSION = 1


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
    """``model_fn`` for the data set: ``name`` in ``{"smallcnn", "mobilenetv2", "mlp"}``,
    default :class:`~fral.models.SmallCNN` for images and :class:`~fral.models.MLP` for
    tabular rows; ``width`` is MobileNetV2's width multiplier."""
    image = len(dataset.input_shape) == 3
    name = name or ("smallcnn" if image else "mlp")
    classes = dataset.num_classes
    if name == "mlp":
        return lambda: MLP(math.prod(dataset.input_shape), classes)
    if not image:
        raise ValueError(f"model {name!r} needs image data; {dataset.name} is tabular")
    channels = dataset.input_shape[0]
    if name == "mobilenetv2":
        return lambda: MobileNetV2(classes, channels, width=width)
    if name == "smallcnn":
        return lambda: SmallCNN(classes, channels, channels=(16, 32))
    raise ValueError(f"unknown model {name!r}; choose from smallcnn, mobilenetv2, mlp")


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
        What produced it (checked when a run reuses it).
    """

    model: nn.Module
    trainer: Trainer
    labeled: torch.Tensor
    record: dict[str, Any]
    settings: dict[str, Any]

    def save(self, path: str | Path) -> None:
        """Write it atomically, to share round 0 across processes or resume a comparison."""
        write_torch(path, {
            "model": self.model.state_dict(),
            "trainer": self.trainer.state_dict(),
            "labeled": self.labeled,
            "record": self.record,
            "settings": self.settings,
        })  # fmt: skip

    @classmethod
    def load(
        cls, path: str | Path, model_fn: Callable[[], nn.Module], device: torch.device | str = "cpu"
    ) -> Initialization:
        """Read what :meth:`save` wrote; ``model_fn`` must build the same architecture."""
        state = torch.load(path, weights_only=False)
        model = check_module(model_fn(), "model_fn()").to(device)
        model.load_state_dict(state["model"])
        trainer = Trainer(model, TrainConfig.from_dict(state["settings"]["train"]), random_state=0)
        trainer.load_state_dict(state["trainer"])
        return cls(model, trainer, state["labeled"], state["record"], state["settings"])


def _evaluation(model: nn.Module, data: Pool, attack: PGD, seed: int) -> dict[str, Any]:
    result = evaluate(model, data, attack=attack, random_state=seed)
    return {"summary": result.summary(), "groups": result.to_dict()}


def _attack_for(dataset: FairDataset, steps: int) -> PGD:
    return PGD(eps=dataset.eps, alpha=dataset.alpha, steps=steps, bounds=dataset.bounds)


def strategy_for(
    name: str,
    budget: int,
    dataset: FairDataset,
    *,
    seed: int = 0,
    attack_steps: int = 5,
    progress: bool = False,
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
    """The given options (or the loop's defaults), with the data set's threat model wherever
    they leave ``eps``, ``alpha`` or ``bounds`` unset."""
    if config is None:
        config = TrainConfig(epochs=10, batch_size=64, lr=0.1, warmup_epochs=1)
    return config.inherit(dataset.eps, dataset.alpha, dataset.bounds)


def initialize(
    dataset: FairDataset,
    *,
    model_fn: Callable[[], nn.Module] | None = None,
    train: TrainConfig | None = None,
    initial_fraction: float = 0.2,
    seed: int = 0,
    device: torch.device | str = "cpu",
    attack_steps: int = 5,
    progress: bool = False,
) -> Initialization:
    """Algorithm 1, line 3: label ``initial_fraction`` of the training split uniformly at
    random and adversarially train ``M_R`` on it; evaluate on the test split (round 0)."""
    model_fn = model_fn or default_model_fn(dataset)
    train = _train_config(dataset, train)
    labeled, _ = initial_split(
        len(dataset.train), initial_fraction, generator=torch.Generator().manual_seed(seed)
    )
    model = _seeded(seed, model_fn).to(device)
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
        "test": _evaluation(model, dataset.test.pool(), attack, seed),
    }
    settings = {
        "dataset": dataset.name,
        "seed": seed,
        "initial_fraction": initial_fraction,
        "train": train.to_dict(),
        "model": type(model).__name__,
    }
    return Initialization(model, trainer, labeled, record, settings)


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns.

    Attributes
    ----------
    strategy : str
        The strategy's name.
    history : list of dict
        One record per round (round 0 is the initialization): test metrics (``summary``:
        worst / disparity / group average, clean and robust, accuracy and macro-F1; ``groups``:
        per-group figures), the worst validation group, picks per group and class, and the wall
        time of selection (``selection_seconds``, ``M_S`` training included) and of the
        adversarial fine-tuning (``training_seconds``).
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


def _check_labels(labels: Any, count: int, num_classes: int) -> torch.Tensor:
    tensor = torch.as_tensor(labels)
    if tensor.shape != (count,) or tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ValueError(
            f"the oracle must return {count} integer labels, got {tuple(tensor.shape)} "
            f"{tensor.dtype}"
        )
    tensor = tensor.to("cpu", torch.int64)
    if count and (int(tensor.min()) < 0 or int(tensor.max()) >= num_classes):
        raise ValueError(f"the oracle returned labels outside 0..{num_classes - 1}")
    return tensor


class _Checkpoint:
    """The files of one run: settings, the state after the last finished round, the open round."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / name

    def check_settings(self, settings: dict[str, Any], resume: bool) -> None:
        if self.folder is None:
            return
        path = self.path("settings.json")
        if path.exists():
            stored = json.loads(path.read_text())
            if not resume:
                raise FileExistsError(
                    f"{self.folder} holds a run already: resume it (resume=True, fral --resume) "
                    "or choose another folder"
                )
            mismatch = {
                key for key in set(stored) | set(settings)
                if key != "rounds" and stored.get(key) != settings.get(key)
            }  # fmt: skip
            if mismatch:
                raise ValueError(
                    f"the checkpoint in {self.folder} was written with other settings: "
                    f"{sorted(mismatch)} differ"
                )
        write_json(path, settings)

    def load(self, name: str) -> Any:
        if self.folder is None or not self.path(name).exists():
            return None
        if name.endswith(".json"):
            return json.loads(self.path(name).read_text())
        return torch.load(self.path(name), weights_only=False)

    def save(self, name: str, data: Any) -> None:
        if self.folder is None:
            return
        if name.endswith(".json"):
            write_json(self.path(name), data)
        else:
            write_torch(self.path(name), data)


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
    progress: bool = False,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> ExperimentResult:
    """Run Algorithm 1 (FRAL) with ``strategy`` on ``dataset``.

    Parameters
    ----------
    strategy : QueryStrategy or str
        A strategy object, or a paper name (``"JIN"``, ``"RAND"``, ``"G-ENT"``...) built by
        :func:`strategy_for` with budget ``round(budget_fraction * |D|)``, ``random_state=seed``
        and the data set's threat model. An object keeps its own budget and options.
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
        Budget per round as a share of ``D`` (the paper: 2%).
    oracle : callable, optional
        ``oracle(indices) -> labels`` for training-split indices (int64 tensor): your
        annotation tool. Default: the data set's own labels (:class:`DatasetOracle`).
    oracle_batch_size : int, default 16
        Indices per oracle call; every answer is written to disk before the next call.
    checkpoint_dir : str or Path, optional
        Where the run is saved: ``settings.json``; after every round ``state.pt`` (labelled
        set, models, optimisers, strategy and generator states) and ``history.json``; during
        a round ``open_round.json`` (its picks and each oracle answer so far) and
        ``open_round.pt`` (``M_S`` and the strategy right after selecting). Without it
        nothing is written.
    resume : bool, default False
        Continue the run saved in ``checkpoint_dir`` (same settings; ``rounds`` may grow).
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
        ``standard.epochs``, at least 1).
    attack_steps : int, default 5
        PGD steps of the evaluation and worst-group attacks (the paper: PGD-5).
    device : torch.device or str, default "cpu"
    initialization : Initialization, optional
        A shared round 0 from :func:`initialize` (copied, never modified), so that several
        strategies start from the same ``M_R``. Must match ``dataset``, ``seed``,
        ``initial_fraction`` and ``train``.
    progress : bool, default False
        Progress bars for rounds, training epochs and the oracle.
    on_round : callable, optional
        Called with each round's record after it is saved.

    Returns
    -------
    ExperimentResult
    """
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, seed=seed)
    if not isinstance(dataset, FairDataset):
        raise TypeError(f"dataset must be a FairDataset or a name, got {type(dataset).__name__}")
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
    if standard_mode not in ("finetune", "scratch"):
        raise ValueError(f"standard_mode must be 'finetune' or 'scratch', got {standard_mode!r}")
    if not isinstance(oracle_batch_size, int) or oracle_batch_size < 1:
        raise ValueError(f"oracle_batch_size must be a positive integer, got {oracle_batch_size}")
    size = len(dataset.train)
    if isinstance(strategy, str):
        budget = max(1, round(budget_fraction * size))
        strategy = strategy_for(
            strategy, budget, dataset, seed=seed, attack_steps=attack_steps, progress=progress
        )
    if not isinstance(strategy, QueryStrategy):
        raise TypeError("strategy must follow fral.QueryStrategy (budget, requires, select)")
    model_fn = model_fn or default_model_fn(dataset)
    train = _train_config(dataset, train)
    standard = replace(train, adversarial=False) if standard is None else standard
    standard = _train_config(dataset, standard)
    finetune = train if finetune is None else _train_config(dataset, finetune)
    if standard_finetune_epochs is None:
        standard_finetune_epochs = max(1, standard.epochs // 4)
    name = getattr(strategy, "name", type(strategy).__name__)
    settings = {
        "version": CHECKPOINT_VERSION,
        "strategy": name,
        "strategy_repr": repr(strategy),
        "dataset": dataset.name,
        "seed": seed,
        "rounds": rounds,
        "initial_fraction": initial_fraction,
        "budget": strategy.budget,
        "train": train.to_dict(),
        "finetune": finetune.to_dict(),
        "standard": standard.to_dict(),
        "standard_mode": standard_mode,
        "standard_finetune_epochs": standard_finetune_epochs,
        "attack_steps": attack_steps,
    }
    run = _Run(
        strategy, dataset, settings, model_fn=model_fn, train=train, finetune=finetune,
        standard=standard,
        oracle=oracle or DatasetOracle(dataset.train.y), oracle_batch_size=oracle_batch_size,
        checkpoint=_Checkpoint(None if checkpoint_dir is None else Path(checkpoint_dir)),
        device=torch.device(device), progress=progress, on_round=on_round,
    )  # fmt: skip
    run.checkpoint.check_settings(settings, resume)
    if not (resume and run.restore()):
        run.start(initialization, initial_fraction)
    return run.finish()


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
        progress: bool,
        on_round: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.strategy, self.dataset, self.settings = strategy, dataset, settings
        self.model_fn, self.train, self.finetune = model_fn, train, finetune
        self.standard = standard
        self.oracle, self.oracle_batch_size = oracle, oracle_batch_size
        self.checkpoint, self.device = checkpoint, device
        self.progress, self.on_round = progress, on_round
        self.seed = int(settings["seed"])
        self.attack = _attack_for(dataset, int(settings["attack_steps"]))
        self.validation = dataset.validation.pool()
        self.test = dataset.test.pool()
        self.model_s: nn.Module | None = None
        self.trainer_s: Trainer | None = None
        self.history: list[dict[str, Any]] = []

    # -- state -------------------------------------------------------------------------------
    def start(self, initialization: Initialization | None, initial_fraction: float) -> None:
        if initialization is None:
            initialization = initialize(
                self.dataset, model_fn=self.model_fn, train=self.train,
                initial_fraction=initial_fraction, seed=self.seed, device=self.device,
                attack_steps=int(self.settings["attack_steps"]), progress=self.progress,
            )  # fmt: skip
        expected = {
            "dataset": self.dataset.name,
            "seed": self.seed,
            "initial_fraction": initial_fraction,
            "train": self.train.to_dict(),
        }
        if {k: initialization.settings.get(k) for k in expected} != expected:
            raise ValueError("the initialization was made with other settings than this run")
        self.model_r = copy.deepcopy(initialization.model).to(self.device)
        # The generator's seed is irrelevant: the state loaded next replaces it.
        self.trainer_r = Trainer(self.model_r, self.train, random_state=0, progress=self.progress)
        self.trainer_r.load_state_dict(initialization.trainer.state_dict())
        self.labeled = initialization.labeled.clone()
        self.labels = self.dataset.train.y[self.labeled].clone()
        self.history = [copy.deepcopy(initialization.record)]
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
            self.trainer_s = Trainer(self.model_s, self.standard, random_state=0,
                                     progress=self.progress)  # fmt: skip
            self.trainer_s.load_state_dict(state["trainer_s"])
        if hasattr(self.strategy, "load_state_dict"):
            self.strategy.load_state_dict(state["strategy"])

    def state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "round": len(self.history) - 1,
            "labeled": self.labeled,
            "labels": self.labels,
            "model_r": self.model_r.state_dict(),
            "trainer_r": self.trainer_r.state_dict(),
            **self.selection_state(),
            "history": self.history,
        }

    def save_round(self) -> None:
        self.checkpoint.save("state.pt", self.state())
        self.checkpoint.save("history.json", {"settings": self.settings, "history": self.history})

    def restore(self) -> bool:
        state = self.checkpoint.load("state.pt")
        if state is None:
            return False
        self.model_r = _seeded(self.seed, self.model_fn).to(self.device)
        self.model_r.load_state_dict(state["model_r"])
        self.trainer_r = Trainer(self.model_r, self.train, random_state=0, progress=self.progress)
        self.trainer_r.load_state_dict(state["trainer_r"])
        self.load_selection_state(state)
        self.labeled, self.labels = state["labeled"], state["labels"]
        self.history = state["history"]
        return True

    # -- a round -----------------------------------------------------------------------------
    def finish(self) -> ExperimentResult:
        done = len(self.history) - 1
        rounds = int(self.settings["rounds"])
        bar = tqdm(range(done + 1, rounds + 1), desc=f"{self.settings['strategy']} rounds",
                   disable=not self.progress, initial=done, total=rounds)  # fmt: skip
        for number in bar:
            record = self.round(number)
            if self.on_round is not None:
                self.on_round(record)
        return ExperimentResult(
            strategy=str(self.settings["strategy"]), history=self.history,
            labeled=self.labeled, labels=self.labels, model=self.model_r,
            settings=self.settings,
        )  # fmt: skip

    def round(self, number: int) -> dict[str, Any]:
        open_round = self.checkpoint.load("open_round.json")
        record: dict[str, Any] = {"round": number}
        if open_round is not None and open_round["round"] == number:
            # Selected before the interruption: keep those picks and the answers given, and
            # the models and strategy state as they were right after selecting.
            self.load_selection_state(self.checkpoint.load("open_round.pt"))
            picks = torch.tensor(open_round["picks"], dtype=torch.int64)
            record.update(open_round["record"])
            answers = open_round["labels"]
        else:
            picks = self.select(record)
            answers = []
            open_round = {"round": number, "picks": picks.tolist(), "labels": answers,
                          "record": dict(record)}  # fmt: skip
            self.checkpoint.save("open_round.pt", self.selection_state())
            self.checkpoint.save("open_round.json", open_round)
        labels = self.ask_oracle(picks, answers, open_round)
        self.labeled = torch.cat([self.labeled, picks])
        self.labels = torch.cat([self.labels, labels])
        start = time.perf_counter()
        self.trainer_r.fit(self.labeled_pool(), config=self.finetune)
        record["training_seconds"] = time.perf_counter() - start
        record["labeled"] = int(self.labeled.numel())
        record.update(_describe_picks(picks, labels, self.dataset))
        record["test"] = _evaluation(self.model_r, self.test, self.attack, self.seed + number)
        self.history.append(record)
        self.save_round()
        if self.checkpoint.folder is not None:
            self.checkpoint.path("open_round.json").unlink(missing_ok=True)
            self.checkpoint.path("open_round.pt").unlink(missing_ok=True)
        return record

    def labeled_pool(self) -> Pool:
        return Pool(
            self.dataset.train.x[self.labeled], self.dataset.train.z[self.labeled],
            labels=self.labels, ids=self.labeled, num_groups=self.dataset.num_groups,
        )  # fmt: skip

    def unlabeled_indices(self) -> torch.Tensor:
        mask = torch.ones(len(self.dataset.train), dtype=torch.bool)
        mask[self.labeled] = False
        return torch.nonzero(mask).flatten()

    def select(self, record: dict[str, Any]) -> torch.Tensor:
        """Worst group, ``M_S`` if needed, then the strategy's picks as training indices."""
        number = record["round"]
        start = time.perf_counter()
        ranking = group_ranking(
            self.model_r, self.validation, attack=self.attack, random_state=self.seed + number
        )
        worst_seconds = time.perf_counter() - start
        worst = int(ranking[0])
        record["worst_group_validation"] = worst
        standard_seconds = 0.0
        model_s = None
        if "model_s" in self.strategy.requires:
            start = time.perf_counter()
            model_s = self.train_standard(number)
            standard_seconds = time.perf_counter() - start
        unlabeled = self.unlabeled_indices()
        train = self.dataset.train
        pool = Pool(train.x[unlabeled], train.z[unlabeled], ids=unlabeled,
                    num_groups=self.dataset.num_groups)  # fmt: skip
        group_aware = getattr(self.strategy, "group_aware", False)
        start = time.perf_counter()
        picks = self.strategy.select(
            self.model_r, model_s, pool, labeled=self.labeled_pool(),
            validation=self.validation,
            group=worst if group_aware and pool.group_counts()[worst] > 0 else None,
        )  # fmt: skip
        select_seconds = time.perf_counter() - start
        picks = unlabeled[picks]
        record["standard_training_seconds"] = standard_seconds
        record["worst_group_seconds"] = worst_seconds
        record["select_seconds"] = select_seconds
        record["selection_seconds"] = (
            select_seconds + standard_seconds + (worst_seconds if group_aware else 0.0)
        )
        return picks

    def train_standard(self, number: int) -> nn.Module:
        scratch = self.settings["standard_mode"] == "scratch" or self.model_s is None
        if scratch:
            self.model_s = _seeded(self.seed + 1000 + number, self.model_fn).to(self.device)
            self.trainer_s = Trainer(self.model_s, self.standard, random_state=self.seed + number,
                                     progress=self.progress)  # fmt: skip
            self.trainer_s.fit(self.labeled_pool())
        else:
            self.trainer_s.fit(
                self.labeled_pool(), epochs=int(self.settings["standard_finetune_epochs"])
            )
        return self.model_s

    def ask_oracle(
        self, picks: torch.Tensor, answers: list[int], open_round: dict[str, Any]
    ) -> torch.Tensor:
        """Labels for ``picks``; each answer is on disk before the next question."""
        bar = tqdm(total=picks.numel(), initial=len(answers), desc="oracle", unit="label",
                   disable=not self.progress, leave=False)  # fmt: skip
        while len(answers) < picks.numel():
            chunk = picks[len(answers) : len(answers) + self.oracle_batch_size]
            labels = _check_labels(self.oracle(chunk.clone()), chunk.numel(),
                                   self.dataset.num_classes)  # fmt: skip
            answers.extend(labels.tolist())
            self.checkpoint.save("open_round.json", open_round)
            bar.update(chunk.numel())
        bar.close()
        return torch.tensor(answers, dtype=torch.int64)
