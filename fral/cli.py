"""The ``fral`` command (also ``python -m fral``): demo, run, report.

- ``fral demo``: a real, small FRAL run on ``digits_domains``, JIN against RAND, one seed,
  about five minutes on 2 CPU cores; prints a per-round table, writes the results JSON and a
  PNG of worst-group accuracy per round. ``--tiny`` shrinks it to seconds (for CI).
- ``fral run``: any data set, strategies, seeds and loop options; every (seed, strategy) run
  checkpoints after each round and ``--resume`` continues them. ``--dataset`` is a name of
  :data:`fral.datasets.DATASETS` or a path to a data set file (the ``.npz`` form of
  :func:`fral.datasets.load_npz`); the paper's data sets (utkface, cinic10, ham10000) are read
  from the local copy ``--data-dir`` names and run with the paper's settings
  (:mod:`fral.presets`) wherever the command line does not set an option.
- ``fral report``: the paper's Table 1 (mean ± std over seeds) and the plot, from saved runs.

``torchrun --nproc_per_node=N -m fral run ...`` runs ``fral run`` on ``N`` processes (and
across nodes): the command initialises the process group torchrun asks for (gloo on CPUs,
NCCL with ``--device cuda``, each rank on GPU ``LOCAL_RANK``), every rank runs the loop
sharded (:func:`fral.loop.run_experiment`), and rank 0 alone prints and writes ``--out``
(the other ranks need no access to it). Every rank loads the data set (the first rank of each
node first, so that a cache is decoded once per node). ``fral demo`` and ``fral report`` run
in one process.

Bad arguments print one line and exit with status 2; any failure of a command prints one
line (``fral: error: ...``) and exits with status 1 (``fral --traceback ...`` shows the
traceback instead). An output folder is locked while a command writes to it (a second
``fral run`` on it fails at once), and ``--resume`` refuses options, data (``--dataset``,
``--limit``, ``--split-seed``) or a model that differ from the ones the runs were started
with, naming them.

Where each setting comes from: an option given on the command line wins; else the paper's
preset for the data set (:data:`fral.presets.PAPER_PRESETS`); else the data set's own value
(its threat model ``eps``/``alpha``/``bounds``, ``metric``, ``oversample``); else the generic
default shown by ``--help``. ``fral run`` prints the values that did not come from the
generic defaults and writes every value with its source to ``OUT/settings.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from fral import __version__, distributed
from fral._io import (
    atomic_write,
    check_writable,
    clean_temporary_files,
    folder_lock,
    read_json,
    write_json,
)
from fral.datasets import DATASETS, FairDataset, load_dataset, load_npz
from fral.loop import (
    Initialization,
    _check_sync_batchnorm,
    default_model_fn,
    initialize,
    run_experiment,
    strategy_for,
)
from fral.models import MODELS
from fral.presets import PAPER_PRESETS, PaperPreset, paper_preset
from fral.report import (
    final_table,
    group_table,
    interval_table,
    labelled_table,
    load_results,
    plot_worst_group,
    round_line,
    round_table_header,
    timing_table,
)
from fral.strategies import ABLATIONS, STRATEGIES, strategy_key
from fral.training import TrainConfig

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _bounds_argument(text: str) -> list[float] | str:
    """``LOW,HIGH`` as ``[low, high]``, or ``none`` (unbounded features) as ``"none"``."""
    if text.strip().lower() == "none":
        return "none"
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be LOW,HIGH (e.g. 0,1) or none (unbounded features), got {text!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"must be two finite numbers LOW < HIGH, got {text!r}")
    return [low, high]


def _dataset_argument(text: str) -> str:
    """A name of :data:`DATASETS`, else the path of an existing data set file."""
    if text in DATASETS or Path(text).is_file():
        return text
    if Path(text).suffix == ".npz" or Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} is not a file (a data set file is an .npz)")
    raise argparse.ArgumentTypeError(
        f"unknown data set {text!r}: give a name ({', '.join(sorted(DATASETS))}) or the path "
        "of an .npz data set file"
    )


#: The options a paper preset may set, with their generic defaults (used where neither the
#: command line nor a preset gives a value). ``None``: the data set's own value (``metric``,
#: ``oversample``, the threat model), the data set's kind (``model``: smallcnn for images, mlp
#: for tabular) or, for ``warmup_epochs``, ``min(1, epochs / 5)`` per phase (0.5 for
#: fine-tuning).
GENERIC_DEFAULTS: dict[str, Any] = {
    "rounds": 5,
    "initial_fraction": 0.2,
    "budget_fraction": 0.02,
    "standard_mode": "finetune",
    "attack_steps": 5,
    "model": None,
    "width": 0.5,
    "epochs": 30,
    "finetune_epochs": 10,
    "standard_epochs": 10,
    "lr": 0.05,
    "finetune_lr": 0.02,
    "warmup_epochs": None,
    "batch_size": 64,
    "momentum": 0.9,
    "weight_decay": 2e-4,
    "beta": 6.0,
    "oversample": None,
    "metric": None,
    "eps": None,
    "alpha": None,
    "bounds": None,
}
_PRESET_NOTE = " (default {}, or the preset's)"


def _add_loop_options(parser: argparse.ArgumentParser) -> None:
    def default(name: str) -> str:
        return _PRESET_NOTE.format(GENERIC_DEFAULTS[name])

    bars = parser.add_mutually_exclusive_group()
    bars.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        default=None,
        help="progress bars (rounds, training epochs, oracle); by default shown only when "
        "standard error is a terminal, or as FRAL_PROGRESS=1/0 says",
    )
    bars.add_argument(
        "--no-progress", dest="progress", action="store_const", const=False, help="no bars"
    )
    group = parser.add_argument_group("loop (Algorithm 1)")
    group.add_argument("--rounds", type=int, help="active rounds K" + default("rounds"))
    group.add_argument(
        "--initial-fraction",
        type=_fraction,
        help="share of the training split labelled at start" + default("initial_fraction"),
    )
    group.add_argument(
        "--budget-fraction",
        type=_fraction,
        help="labels per round as a share of the training split" + default("budget_fraction"),
    )
    group.add_argument(
        "--standard-mode",
        choices=["finetune", "scratch"],
        help="M_S each round: continue the last one or retrain from scratch as the paper"
        + default("standard_mode"),
    )
    group.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    group.add_argument(
        "--attack-steps",
        type=_positive_int,
        help="PGD steps of the evaluation, worst-group and strategy attacks"
        + default("attack_steps"),
    )
    train = parser.add_argument_group("training (SGD, warm-up + cosine, TRADES)")
    train.add_argument(
        "--model",
        choices=sorted(MODELS),
        help="network (default: the preset's, else smallcnn for images, mlp for tabular)",
    )
    train.add_argument(
        "--width",
        type=_positive,
        help="MobileNetV2's width multiplier (ResNet18 is built at full width)" + default("width"),
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        help="initial adversarial training epochs" + default("epochs"),
    )
    train.add_argument(
        "--finetune-epochs",
        type=_positive_int,
        help="adversarial fine-tuning epochs per round" + default("finetune_epochs"),
    )
    train.add_argument(
        "--standard-epochs",
        type=_positive_int,
        help="M_S training epochs (first round / from scratch)" + default("standard_epochs"),
    )
    train.add_argument("--lr", type=_positive, help="initial training peak lr" + default("lr"))
    train.add_argument(
        "--finetune-lr", type=_positive, help="fine-tuning peak lr" + default("finetune_lr")
    )
    train.add_argument(
        "--warmup-epochs",
        type=_non_negative,
        help="linear warm-up epochs of every phase, at most its epochs (default min(1, "
        "epochs/5), 0.5 for fine-tuning; or the preset's, shrunk in proportion where a "
        "phase is shortened)",
    )
    train.add_argument(
        "--batch-size", type=_positive_int, help="mini-batch size" + default("batch_size")
    )
    train.add_argument("--momentum", type=_non_negative, help="SGD momentum" + default("momentum"))
    train.add_argument(
        "--weight-decay", type=_non_negative, help="SGD weight decay" + default("weight_decay")
    )
    train.add_argument("--beta", type=_non_negative, help="TRADES beta" + default("beta"))
    train.add_argument(
        "--oversample",
        action=argparse.BooleanOptionalAction,
        help="oversample minority classes in training (default: the preset's, else the data "
        "set's own choice)",
    )
    train.add_argument("--amp", action="store_true", help="bfloat16 autocast")


def _resolve(args: argparse.Namespace, preset: PaperPreset | None) -> dict[str, str]:
    """Fill the options the command line left unset from ``preset``, else the generic
    defaults; return each option's source ("command line", "preset NAME", "default")."""
    preset_values = preset.options() if preset is not None else {}
    sources = {}
    for name, generic in GENERIC_DEFAULTS.items():
        if not hasattr(args, name):  # an option of ``run`` only
            continue
        if getattr(args, name) is not None:
            sources[name] = "command line"
        elif name in preset_values:
            setattr(args, name, preset_values[name])
            sources[name] = f"preset {preset.dataset}"  # type: ignore[union-attr]
        else:
            setattr(args, name, generic)
            sources[name] = "default"
    return sources


def _threat_model(
    args: argparse.Namespace, dataset: FairDataset, sources: dict[str, str]
) -> FairDataset:
    """``dataset`` with the threat model the command line or the preset sets, if any."""
    changes: dict[str, Any] = {}
    if getattr(args, "eps", None) is not None:
        changes["eps"] = args.eps
        changes["alpha"] = None  # eps / 2, unless --alpha (below)
    if getattr(args, "alpha", None) is not None:
        changes["alpha"] = args.alpha
    if getattr(args, "bounds", None) is not None:
        changes["bounds"] = None if args.bounds == "none" else tuple(args.bounds)
    for name in ("eps", "alpha", "bounds"):
        if sources.get(name) == "default":
            sources[name] = "data set" if name not in changes else "eps / 2"
    return replace(dataset, **changes) if changes else dataset


def _warmup(
    args: argparse.Namespace,
    sources: dict[str, str],
    epochs: int,
    generic: float,
    option: str,
) -> float:
    """The warm-up of a phase of ``epochs`` epochs (``option`` names its epochs flag)."""
    source = sources.get("warmup_epochs", "default")
    if args.warmup_epochs is None:
        return min(generic, epochs / 5)
    if source.startswith("preset"):
        preset = PAPER_PRESETS[source.split(" ", 1)[1]]
        return args.warmup_epochs * epochs / preset.train.epochs
    if args.warmup_epochs > epochs:
        raise ValueError(
            f"--warmup-epochs {args.warmup_epochs:g} is longer than {option} {epochs}: "
            "the warm-up must fit in every training phase"
        )
    return float(args.warmup_epochs)


def _configs(
    args: argparse.Namespace, dataset: FairDataset, sources: dict[str, str] | None = None
) -> dict[str, TrainConfig]:
    """Initial training, per-round fine-tuning and ``M_S``'s training, from the options."""
    sources = sources or {}
    common = {
        "batch_size": args.batch_size,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "beta": args.beta,
        "eps": dataset.eps,
        "alpha": dataset.alpha,
        "bounds": dataset.bounds,
        "oversample": dataset.oversample if args.oversample is None else args.oversample,
        "amp": args.amp,
    }

    def schedule(epochs: int, lr: float, warmup: float, option: str, **extra: Any) -> TrainConfig:
        return TrainConfig(
            epochs=epochs,
            lr=lr,
            warmup_epochs=_warmup(args, sources, epochs, warmup, option),
            **common,
            **extra,
        )

    return {
        "train": schedule(args.epochs, args.lr, 1.0, "--epochs"),
        "finetune": schedule(args.finetune_epochs, args.finetune_lr, 0.5, "--finetune-epochs"),
        "standard": schedule(
            args.standard_epochs, args.lr, 1.0, "--standard-epochs", adversarial=False
        ),
    }


#: Options that may change on ``--resume``: more rounds, more seeds or strategies, another
#: device or display; every other option must be the one the runs were started with.
_RESUMABLE = frozenset(
    {
        "command",
        "resume",
        "progress",
        "traceback",
        "out",
        "rounds",
        "seeds",
        "strategy",
        "device",
        "metric",
        "handler",
        "eval_attack",
        "sync_batchnorm",
    }
)
COMMAND_FILE = "command.json"


def _command_options(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in sorted(vars(args).items()) if key not in _RESUMABLE}


@contextlib.contextmanager
def _output_folder(out: Path, args: argparse.Namespace) -> Iterator[Callable[[], None]]:
    """Create and lock ``out``; check (``--resume``) the options that made it.

    Yields the function that records the options in ``command.json``: call it once the data
    has loaded, so that a command failing before (a malformed data file, a missing
    ``--data-dir``) leaves no run behind and can simply be run again. Under a process group
    rank 0 alone does all this (a failure is an error on every rank).
    """
    context = distributed.current()
    if context is None:
        with _own_output_folder(out, args) as record:
            yield record
        return
    with contextlib.ExitStack() as stack:
        record = distributed.on_rank(
            context, lambda: stack.enter_context(_own_output_folder(out, args))
        )
        yield lambda: distributed.on_rank(context, record)


@contextlib.contextmanager
def _own_output_folder(out: Path, args: argparse.Namespace) -> Iterator[Callable[[], None]]:
    """:func:`_output_folder` in this process."""
    check_writable(out, "--out")
    with folder_lock(out):
        path = out / COMMAND_FILE
        options = _command_options(args)
        holds_runs = path.exists() or any(out.glob("seed*"))
        if holds_runs and not args.resume:
            raise ValueError(
                f"{out} already holds runs: add --resume to continue them, or choose another --out"
            )
        if path.exists():
            stored = read_json(path, checksum=True)
            # An option a folder made by an older fral lacks had its generic default then.
            then = {key: stored.get(key, GENERIC_DEFAULTS.get(key)) for key in options}
            then.update(stored)
            differ = [
                f"--{key.replace('_', '-')} ({then.get(key)!r} then, {options.get(key)!r} now)"
                for key in sorted(set(then) | set(options))
                if then.get(key) != options.get(key)
            ]
            if differ:
                raise ValueError(
                    f"cannot resume the runs in {out} with other options: {'; '.join(differ)}"
                )
            for folder in [out, *out.glob("seed*")]:  # what a killed command left writing
                clean_temporary_files(folder)

        def record() -> None:
            if not path.exists():
                write_json(path, options, checksum=True)

        yield record


def _compare(
    dataset: FairDataset,
    strategies: Sequence[str],
    seeds: Sequence[int],
    args: argparse.Namespace,
    out: Path,
    sources: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every strategy on every seed, round 0 shared per seed; returns the result dicts."""
    configs = _configs(args, dataset, sources)
    model_fn = default_model_fn(dataset, args.model, width=args.width)
    budget = max(1, round(args.budget_fraction * len(dataset.train)))
    results = []
    print(
        f"{dataset.name}: {len(dataset.train)} train / {len(dataset.validation)} validation / "
        f"{len(dataset.test)} test, {dataset.num_groups} groups {dataset.group_names}; "
        f"budget {budget} per round, {args.rounds} rounds",
        flush=True,
    )
    for seed in seeds:
        folder = out / f"seed{seed}"
        init_path = folder / "initialization.pt"
        context = distributed.current()
        if args.resume and distributed.on_rank(context, init_path.exists, share=True):
            initialization = Initialization.load(init_path, model_fn, args.device, dataset=dataset)
        else:
            start = time.perf_counter()
            initialization = initialize(
                dataset,
                model_fn=model_fn,
                train=configs["train"],
                seed=seed,
                initial_fraction=args.initial_fraction,
                device=args.device,
                progress=args.progress,
                attack_steps=args.attack_steps,
                sync_batchnorm=getattr(args, "sync_batchnorm", False),
            )
            initialization.save(init_path)
            print(
                f"seed {seed}: initial adversarial training took "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
        print(round_table_header())
        print(round_line("init", initialization.record, dataset.group_names), flush=True)
        for name in strategies:
            strategy = strategy_for(
                name,
                budget,
                dataset,
                seed=seed,
                attack_steps=args.attack_steps,
                progress=args.progress,
            )
            label = strategy.name
            result = run_experiment(
                strategy,
                dataset,
                model_fn=model_fn,
                rounds=args.rounds,
                seed=seed,
                initial_fraction=args.initial_fraction,
                train=configs["train"],
                finetune=configs["finetune"],
                standard=configs["standard"],
                standard_mode=args.standard_mode,
                device=args.device,
                attack_steps=args.attack_steps,
                checkpoint_dir=folder / label,
                resume=args.resume,
                initialization=initialization,
                progress=args.progress,
                on_round=lambda record, label=label: print(
                    round_line(label, record, dataset.group_names), flush=True
                ),
                eval_attack=getattr(args, "eval_attack", "pgd"),
                sync_batchnorm=getattr(args, "sync_batchnorm", False),
            )
            results.append(result.to_dict())
    return results


def _result_tables(results: list[dict[str, Any]], metric: str, attack: str) -> str:
    """Table 1 (under PGD, and under AutoAttack where asked), per group by name, and the
    worst group's confidence intervals."""
    tables = [final_table(results, metric)]
    if attack != "pgd":
        tables.append(f"Under {attack}:\n" + final_table(results, metric, attack))
    if results:
        tables.append("Per group, final round:\n" + group_table(results, metric, attack))
        tables.append("Worst group, final round:\n" + interval_table(results, metric, attack))
    return "\n\n".join(tables)


def _write_outputs(
    results: list[dict[str, Any]], out: Path, metric: str, attack: str = "pgd"
) -> None:
    write_json(out / "results.json", results)
    table = _result_tables(results, metric, attack)
    written = [out / "results.json", out / "table.md"]
    try:
        written.append(plot_worst_group(results, out / "worst_group.png", metric))
    except ImportError as error:  # matplotlib is optional (fral-learn[plot]); the tables are not
        print(f"no plot: {error}", file=sys.stderr)
    timing = timing_table(results)
    labelled = labelled_table(results)
    text = f"{table}\n\n{labelled}\n\n{timing}\n"
    atomic_write(out / "table.md", lambda handle: handle.write(text.encode()))
    print("\nFinal round, test set (mean ± std over seeds, %):\n" + table)
    print("\nLabelled samples per round:\n" + labelled)
    print("\nWall time per round:\n" + timing)
    print(f"\nwrote {', '.join(map(str, written))}")


def _demo(args: argparse.Namespace) -> None:
    _resolve(args, None)
    if args.tiny:
        args.rounds, args.epochs, args.finetune_epochs, args.standard_epochs = 2, 2, 1, 2
        args.budget_fraction = 0.05
    out = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    with _output_folder(out, args) as record:
        dataset = load_dataset("digits_domains", seed=args.seed)
        if args.tiny:
            dataset = dataset.subsample(train=600, validation=120, test=300, seed=args.seed)
        record()
        print(f"writing to {out}", flush=True)
        start = time.perf_counter()
        results = _compare(dataset, ["RAND", "JIN"], [args.seed], args, out)
        _write_outputs(results, out, "accuracy")
        print(f"demo wall time: {time.perf_counter() - start:.1f} s")


def _takes_data_dir(name: str) -> bool:
    return "data_dir" in inspect.signature(DATASETS[name]).parameters


def _check_data_dir(args: argparse.Namespace) -> None:
    """``--data-dir`` given exactly for the data sets read from local copies."""
    local = sorted(name for name in DATASETS if _takes_data_dir(name)) or sorted(PAPER_PRESETS)
    if args.dataset not in DATASETS:  # a data set file
        if args.data_dir is not None:
            raise ValueError(
                f"--data-dir is for the data sets read from local copies ({', '.join(local)}); "
                f"the data set file {args.dataset} holds its data itself: drop --data-dir"
            )
        return
    if _takes_data_dir(args.dataset):
        if args.data_dir is None:
            preset = paper_preset(args.dataset)
            holding = f" holding {preset.data_layout}" if preset and preset.data_layout else ""
            raise ValueError(
                f"{args.dataset} is read from a local copy (fral never downloads it): give "
                f"--data-dir DIR, the folder{holding}; see docs/paper-datasets.md"
            )
    elif args.data_dir is not None:
        raise ValueError(
            f"--data-dir is for the data sets read from local copies ({', '.join(local)}); "
            f"{args.dataset} comes with fral: drop --data-dir"
        )


def _load(args: argparse.Namespace) -> FairDataset:
    if args.dataset not in DATASETS:
        return load_npz(args.dataset, seed=args.split_seed)
    options: dict[str, Any] = {"seed": args.split_seed}
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    return load_dataset(args.dataset, **options)


def _record_settings(
    out: Path, args: argparse.Namespace, dataset: FairDataset, sources: dict[str, str]
) -> None:
    """Print the settings that are not generic defaults; write all to ``OUT/settings.json``."""
    values = {name: getattr(args, name) for name in sources}
    values.update(eps=dataset.eps, alpha=dataset.alpha, bounds=dataset.bounds)
    values["metric"] = args.metric
    values["oversample"] = dataset.oversample if args.oversample is None else args.oversample
    if args.oversample is None:
        sources["oversample"] = "data set"
    if values["model"] is None:
        values["model"] = "smallcnn" if len(dataset.input_shape) == 3 else "mlp"
    options = {
        name: {"value": list(value) if isinstance(value, tuple) else value, "from": sources[name]}
        for name, value in values.items()
    }
    write_json(
        out / "settings.json",
        {"dataset": args.dataset, "data_dir": args.data_dir, "options": options},
    )
    by_source: dict[str, list[str]] = {}
    for name, entry in options.items():
        if entry["from"] != "default":
            value = entry["value"]
            text = f"{value:.6g}" if isinstance(value, float) else str(value)
            by_source.setdefault(entry["from"], []).append(f"{name} {text}")
    if by_source:
        print("settings that are not the generic defaults, by source:")
    for source, items in sorted(by_source.items()):
        print(f"  {source}: {', '.join(items)}", flush=True)


def _run(args: argparse.Namespace) -> None:
    for name in args.strategy:  # fail on a typo before any training
        strategy_key(name)
    _check_data_dir(args)
    sources = _resolve(args, paper_preset(args.dataset) if args.dataset in DATASETS else None)
    out = Path(args.out)
    context = distributed.current()
    with _output_folder(out, args) as record:

        def prepare() -> FairDataset:  # once on every rank
            dataset = _load(args)
            if args.limit is not None:
                dataset = dataset.subsample(train=args.limit, seed=args.split_seed)
            dataset = _threat_model(args, dataset, sources)
            if args.metric is None:
                args.metric, sources["metric"] = dataset.metric, "data set"
            _configs(args, dataset, sources)  # a bad schedule fails before anything is written
            return dataset

        dataset = _node_by_node(context, prepare)
        if args.sync_batchnorm:  # refused before anything is written
            _check_sync_batchnorm(context, torch.device(args.device))
        record()
        distributed.on_rank(context, lambda: _record_settings(out, args, dataset, sources))
        results = _compare(dataset, args.strategy, args.seeds, args, out, sources)
        distributed.on_rank(
            context, lambda: _write_outputs(results, out, args.metric, args.eval_attack)
        )


def _node_by_node(context: distributed.Context | None, function: Callable[[], Any]) -> Any:
    """``function()`` on every rank: the first rank of each node (``LOCAL_RANK`` 0) first, then
    the others, so that what it caches on a node's disk is made once; a failure on any rank is
    an error on every rank."""
    if context is None:
        return function()
    first = int(os.environ.get("LOCAL_RANK", context.rank)) == 0
    result = None
    for turn in (True, False):
        with distributed.all_or_none(context):
            if first == turn:
                result = function()
    return result


def _report(args: argparse.Namespace) -> None:
    results = load_results(args.paths)
    print(_result_tables(results, args.metric, args.eval_attack))
    print()
    print(labelled_table(results))
    print()
    print(timing_table(results))
    if args.plot:
        print(f"wrote {plot_worst_group(results, args.plot, args.metric)}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fral", description="Fair Robust Active Learning (JIN and baselines).")
    parser.add_argument(
        "--traceback", action="store_true", help="on failure, show the traceback (for bug reports)"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="JIN vs RAND on digits_domains, about 5 minutes")
    demo.add_argument(
        "--out", default=None, help="output folder (default: a new runs/demo-<date>-<time>)"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--tiny", action="store_true", help="a seconds-long version (for CI)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    _add_loop_options(demo)

    run = commands.add_parser(
        "run",
        help="any data set, strategies and seeds",
        epilog="Presets: for the paper's data sets (utkface, cinic10, ham10000) every option "
        "left out takes the paper's value (fral.presets: SGD lr, epochs, warm-up, batch, "
        "MobileNetV2, PGD-5 at 4/255, ...). An option given wins over the preset; the data "
        "set's own threat model, metric and oversampling come next; the defaults shown "
        "last. Every value and its source are written to OUT/settings.json.",
    )
    run.add_argument(
        "--dataset",
        type=_dataset_argument,
        default="digits_domains",
        help="a data set name, or the path of an .npz data set file (x, y, group and "
        "optional names, split and threat model: see fral.datasets.load_npz); default "
        "digits_domains",
    )
    run.add_argument(
        "--data-dir",
        default=None,
        help="the folder holding your copy of a paper data set (utkface, cinic10, ham10000); "
        "fral never downloads",
    )
    run.add_argument(
        "--strategy",
        nargs="+",
        default=["JIN", "RAND"],
        help=f"one or more of {', '.join([*STRATEGIES, *ABLATIONS])} (case-insensitive; "
        "jin-s and jin-r are the paper's S and R ablations)",
    )
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--split-seed", type=int, default=0, help="seed of the data split")
    run.add_argument(
        "--limit", type=_positive_int, default=None, help="use at most this many training samples"
    )
    run.add_argument(
        "--metric",
        choices=["accuracy", "f1"],
        help="metric of the tables (default: the data set's, e.g. f1 for ham10000)",
    )
    run.add_argument(
        "--eval-attack",
        choices=["pgd", "autoattack"],
        default="pgd",
        help="final round's evaluation: PGD (default) or also AutoAttack (slow; worst case of "
        "both; needs torchattacks and data in bounds)",
    )
    threat = run.add_argument_group("threat model (default: the preset's, else the data set's)")
    threat.add_argument("--eps", type=_non_negative, help="L-inf attack radius, in input units")
    threat.add_argument(
        "--alpha", type=_positive, help="PGD step (default: the data set's, or eps / 2 with --eps)"
    )
    threat.add_argument(
        "--bounds",
        type=_bounds_argument,
        help="valid input range LOW,HIGH (e.g. 0,1), or none for unbounded features",
    )
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--resume", action="store_true", help="continue the runs saved in --out")
    run.add_argument(
        "--sync-batchnorm",
        action="store_true",
        help="under torchrun on GPUs: BatchNorm with the statistics of the whole global batch "
        "(nn.SyncBatchNorm) in the loop's models",
    )
    _add_loop_options(run)

    report = commands.add_parser("report", help="Table 1 and plot from saved runs")
    report.add_argument("paths", nargs="+", help="run folders or history.json files")
    report.add_argument("--metric", choices=["accuracy", "f1"], default="accuracy")
    report.add_argument(
        "--eval-attack",
        choices=["pgd", "autoattack"],
        default="pgd",
        help="robust columns under PGD (default) or AutoAttack (runs made with it)",
    )
    report.add_argument("--plot", default=None, help="also write this PNG")
    return parser


def _one_line(error: BaseException) -> str:
    """``error`` as one line; its type is named where the message alone would be unclear."""
    text = " ".join(str(error).split())
    expected = (ValueError, TypeError, OSError, ImportError, RuntimeError)
    if not text:
        return type(error).__name__
    return text if isinstance(error, expected) else f"{type(error).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fral`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    handlers = {"demo": _demo, "run": _run, "report": _report}
    rank = 0
    try:
        with _torchrun_group(args) as rank, contextlib.ExitStack() as stack:
            if rank:  # rank 0 alone prints
                devnull = stack.enter_context(open(os.devnull, "w"))
                stack.enter_context(contextlib.redirect_stdout(devnull))
            handlers[args.command](args)
    except KeyboardInterrupt:
        print("fral: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as error:
        if args.traceback:
            raise
        # Rank 0 tells the user; another rank only of an error of its own.
        if rank == 0 or not isinstance(error, distributed.RankFailedError):
            where = f" (rank {rank})" if rank else ""
            print(f"fral: error{where}: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _torchrun_group(args: argparse.Namespace) -> Iterator[int]:
    """The process group ``torchrun`` asks for, for the command; yields this process's rank.

    Launched by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) with no group yet: ``fral run``
    initialises it, gloo on CPUs and NCCL with ``--device cuda`` (rank on GPU ``LOCAL_RANK``),
    and destroys it at the end. Other commands run in one process: refused with several ranks.
    Outside torchrun nothing happens; a group already initialised is used as it is.
    """
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if not launched or not dist.is_available() or dist.is_initialized():
        yield dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return
    if args.command != "run":
        if int(os.environ["WORLD_SIZE"]) > 1:
            raise ValueError(
                f"fral {args.command} runs in one process: launch it without torchrun (fral run "
                "is the command that runs under torchrun)"
            )
        yield 0
        return
    device = torch.device(args.device)
    if device.type == "cuda":
        if device.index is None:  # each rank on its own GPU of the node
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            args.device = str(device)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        rank = dist.get_rank()
        if rank:
            args.progress = False  # rank 0 alone shows progress
        yield rank
        # A barrier last: gloo's worker thread can still be releasing the last collective's
        # tensors when the interpreter shuts down, and releasing a tensor then needs the GIL
        # that finalisation holds (the process aborts: "terminate called without an active
        # exception"). While every rank waits here, the collectives before are released.
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
