"""The ``fral`` command (also ``python -m fral``): demo, run, report.

- ``fral demo``: a real, small FRAL run on ``digits_domains``, JIN against RAND, one seed,
  about five minutes on 2 CPU cores; prints a per-round table, writes the results JSON and a
  PNG of worst-group accuracy per round. ``--tiny`` shrinks it to seconds (for CI).
- ``fral run``: any data set, strategies, seeds and loop options; every (seed, strategy) run
  checkpoints after each round and ``--resume`` continues them.
- ``fral report``: the paper's Table 1 (mean ± std over seeds) and the plot, from saved runs.

Bad arguments print one line and exit with status 2; any failure of a command prints one
line (``fral: error: ...``) and exits with status 1 (``fral --traceback ...`` shows the
traceback instead). An output folder is locked while a command writes to it (a second
``fral run`` on it fails at once), and ``--resume`` refuses options, data (``--dataset``,
``--limit``, ``--split-seed``) or a model that differ from the ones the runs were started
with, naming them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fral import __version__
from fral._io import (
    atomic_write,
    check_writable,
    clean_temporary_files,
    folder_lock,
    read_json,
    write_json,
)
from fral.datasets import DATASETS, FairDataset, load_dataset
from fral.loop import Initialization, default_model_fn, initialize, run_experiment, strategy_for
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


def _add_loop_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("loop (Algorithm 1)")
    group.add_argument("--rounds", type=int, default=5, help="active rounds K (default 5)")
    group.add_argument(
        "--initial-fraction",
        type=_fraction,
        default=0.2,
        help="share of the training split labelled at start (default 0.2)",
    )
    group.add_argument(
        "--budget-fraction",
        type=_fraction,
        default=0.02,
        help="labels per round as a share of the training split (default 0.02)",
    )
    group.add_argument(
        "--standard-mode",
        choices=["finetune", "scratch"],
        default="finetune",
        help="M_S each round: continue the last one (default) or retrain from scratch as the paper",
    )
    group.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    group.add_argument(
        "--attack-steps",
        type=_positive_int,
        default=5,
        help="PGD steps of the evaluation, worst-group and strategy attacks (default 5)",
    )
    train = parser.add_argument_group("training (SGD, warm-up + cosine, TRADES)")
    train.add_argument(
        "--model",
        choices=["smallcnn", "mobilenetv2", "mlp"],
        default=None,
        help="network (default: smallcnn for images, mlp for tabular)",
    )
    train.add_argument("--width", type=float, default=0.5, help="MobileNetV2 width multiplier")
    train.add_argument(
        "--epochs", type=_positive_int, default=30, help="initial adversarial training epochs"
    )
    train.add_argument(
        "--finetune-epochs",
        type=_positive_int,
        default=10,
        help="adversarial fine-tuning epochs per round",
    )
    train.add_argument(
        "--standard-epochs",
        type=_positive_int,
        default=10,
        help="M_S training epochs (first round / from scratch)",
    )
    train.add_argument("--lr", type=float, default=0.05, help="initial training peak lr")
    train.add_argument("--finetune-lr", type=float, default=0.02, help="fine-tuning peak lr")
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--beta", type=float, default=6.0, help="TRADES beta")
    train.add_argument(
        "--oversample",
        action="store_true",
        help="oversample minority classes (the paper's HAM-10000 setting)",
    )
    train.add_argument("--amp", action="store_true", help="bfloat16 autocast")


def _configs(args: argparse.Namespace, dataset: FairDataset) -> dict[str, TrainConfig]:
    common = {
        "batch_size": args.batch_size,
        "beta": args.beta,
        "eps": dataset.eps,
        "alpha": dataset.alpha,
        "bounds": dataset.bounds,
        "oversample": args.oversample,
        "amp": args.amp,
    }

    def schedule(epochs: int, lr: float, warmup: float, **extra: Any) -> TrainConfig:
        return TrainConfig(
            epochs=epochs, lr=lr, warmup_epochs=min(warmup, epochs / 5), **common, **extra
        )

    return {
        "train": schedule(args.epochs, args.lr, 1.0),
        "finetune": schedule(args.finetune_epochs, args.finetune_lr, 0.5),
        "standard": schedule(args.standard_epochs, args.lr, 1.0, adversarial=False),
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
    }
)
COMMAND_FILE = "command.json"


def _command_options(args: argparse.Namespace) -> dict[str, Any]:
    return {key: value for key, value in sorted(vars(args).items()) if key not in _RESUMABLE}


@contextlib.contextmanager
def _output_folder(out: Path, args: argparse.Namespace) -> Iterator[None]:
    """Create and lock ``out``; check (``--resume``) or record the options that made it."""
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
            differ = [
                f"--{key.replace('_', '-')} ({stored.get(key)!r} then, {options.get(key)!r} now)"
                for key in sorted(set(stored) | set(options))
                if stored.get(key) != options.get(key)
            ]
            if differ:
                raise ValueError(
                    f"cannot resume the runs in {out} with other options: {'; '.join(differ)}"
                )
            for folder in [out, *out.glob("seed*")]:  # what a killed command left writing
                clean_temporary_files(folder)
        else:
            write_json(path, options, checksum=True)
        yield


def _compare(
    dataset: FairDataset,
    strategies: Sequence[str],
    seeds: Sequence[int],
    args: argparse.Namespace,
    out: Path,
) -> list[dict[str, Any]]:
    """Every strategy on every seed, round 0 shared per seed; returns the result dicts."""
    configs = _configs(args, dataset)
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
        if args.resume and init_path.exists():
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
    if args.tiny:
        args.rounds, args.epochs, args.finetune_epochs, args.standard_epochs = 2, 2, 1, 2
        args.budget_fraction = 0.05
    out = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    with _output_folder(out, args):
        dataset = load_dataset("digits_domains", seed=args.seed)
        if args.tiny:
            dataset = dataset.subsample(train=600, validation=120, test=300, seed=args.seed)
        print(f"writing to {out}", flush=True)
        start = time.perf_counter()
        results = _compare(dataset, ["RAND", "JIN"], [args.seed], args, out)
        _write_outputs(results, out, "accuracy")
        print(f"demo wall time: {time.perf_counter() - start:.1f} s")


def _run(args: argparse.Namespace) -> None:
    for name in args.strategy:  # fail on a typo before any training
        strategy_key(name)
    out = Path(args.out)
    with _output_folder(out, args):
        dataset = load_dataset(args.dataset, seed=args.split_seed)
        if args.limit is not None:
            dataset = dataset.subsample(train=args.limit, seed=args.split_seed)
        results = _compare(dataset, args.strategy, args.seeds, args, out)
        _write_outputs(results, out, args.metric, args.eval_attack)


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
    demo.add_argument("--progress", action="store_true", help="progress bars (rounds, epochs)")
    _add_loop_options(demo)

    run = commands.add_parser("run", help="any data set, strategies and seeds")
    run.add_argument("--dataset", choices=sorted(DATASETS), default="digits_domains")
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
    run.add_argument("--metric", choices=["accuracy", "f1"], default="accuracy")
    run.add_argument(
        "--eval-attack",
        choices=["pgd", "autoattack"],
        default="pgd",
        help="final round's evaluation: PGD (default) or also AutoAttack (slow; worst case of "
        "both; needs torchattacks and data in bounds)",
    )
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--resume", action="store_true", help="continue the runs saved in --out")
    run.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (rounds, training epochs, oracle)",
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
    try:
        handlers[args.command](args)
    except KeyboardInterrupt:
        print("fral: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as error:
        if args.traceback:
            raise
        print(f"fral: error: {_one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
