"""The cost of a whole round of Algorithm 1, part by part, for each strategy (CPU or GPU).

A round is: the worst group (ranked on the validation set), ``M_S`` (for the strategies that
use it), the strategy's selection, the oracle, the adversarial fine-tuning of ``M_R`` on the
grown labelled set, and the test evaluation (clean and PGD). This script runs
:func:`fral.run_experiment` for two rounds per strategy from one shared initialisation
(:func:`fral.loop.initialize`: ``M_R`` trained on a random ``--initial`` share of the data set)
and reports the parts of the **second** round, where ``M_S`` is trained from scratch
(``standard_mode="scratch"``, as the paper does at every round) or fine-tuned from the first
round's (``"finetune"``, fral's default; JIN is run both ways, the other strategies that use
``M_S`` from scratch).

Where each figure comes from: ``M_S``, selection and fine-tuning are the run's own records
(``standard_training_seconds``, ``select_seconds``, ``training_seconds``); the worst group is
the time spent in :func:`fral.metrics.group_ranking` as the strategy calls it (timed by
wrapping the function for the run; it is part of ``select_seconds`` and taken out of the
selection column); the oracle wraps the data set's labels in a timed callable; "evaluation
and rest" is the round's wall time (between the ``on_round`` calls) minus all of these.
Each case runs ``--repeats`` times (JIN's two modes of ``M_S`` taking turns: scratch,
fine-tuned, scratch, ...; every run does the same work, seeded), and the row gives each part's
median seconds, its share of the median round, and the median selection share of the runs
with its [min, max]: one run on a loaded machine cannot tell noise from a change.
The JIN selection share is (M_S + worst group + selection) / fine-tuning; the goals are <= 12%
with ``M_S`` from scratch and <= 8% fine-tuned. JIN's scoring against its bare passes is
``benchmarks/bench_scoring.py``.

Defaults: the embedded ``digits_domains`` (4,281 training images, 1x28x28, 2 domains),
fral's SmallCNN, TRADES with the paper's PGD-5 at 8/255 of the data set, ``--epochs 5`` per
round for both ``M_R`` and ``M_S`` (the loop's default: ``M_S`` gets ``M_R``'s schedule), 20%
initial labels, 2% budget. With ``E`` epochs the training parts grow as ``E`` and the
selection part of a strategy without ``M_S`` does not: a share measured at ``E = 5`` is an
upper bound of the share at the paper's 50-100 epochs. Run:

    .venv/bin/python benchmarks/bench_round.py [--epochs 5] [--strategies jin ent ...]
        [--repeats 3] [--dataset digits_domains] [--model smallcnn] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from _common import write_results

import fral.protocol
from fral.datasets import load_dataset
from fral.loop import default_model_fn, initialize, run_experiment
from fral.strategies import STRATEGIES
from fral.training import TrainConfig


def uses_standard_model(name: str) -> bool:
    """Whether the strategy ``name`` trains ``M_S`` (with its default options)."""
    return "model_s" in STRATEGIES[name](budget=1).requires


PARTS = ("worst group", "M_S", "selection", "oracle", "fine-tuning", "evaluation and rest")


class Clock:
    """Seconds spent in the calls it wraps, summed since the last :meth:`take`."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def round_parts(strategy: str, mode: str, args: argparse.Namespace, context: dict) -> dict:
    """Two rounds of ``strategy``; the seconds of the second round's parts, and its wall time."""
    dataset, init, config = context["dataset"], context["init"], context["config"]
    ranking, oracle_clock = context["ranking"], Clock()
    labels = dataset.train.y
    stamps: list[float] = []
    ranks: list[float] = []
    oracles: list[float] = []

    def on_round(record: dict) -> None:
        stamps.append(time.perf_counter())
        ranks.append(ranking.take())
        oracles.append(oracle_clock.take())

    ranking.take()
    stamps.append(time.perf_counter())
    result = run_experiment(
        strategy,
        dataset,
        model_fn=context["model_fn"],
        rounds=2,
        budget_fraction=args.budget,
        initial_fraction=args.initial,
        oracle=oracle_clock.wrap(lambda indices: labels[indices]),
        seed=0,
        train=config,
        standard_mode=mode,
        device=args.device,
        initialization=init,
        progress=False,
        on_round=on_round,
    )
    record = result.history[-1]
    wall = stamps[2] - stamps[1]
    worst = ranks[1]
    parts = {
        "worst group": worst,
        "M_S": record["standard_training_seconds"],
        "selection": record["select_seconds"] - worst,
        "oracle": oracles[1],
        "fine-tuning": record["training_seconds"],
    }
    parts["evaluation and rest"] = wall - sum(parts.values())
    parts["round"] = wall
    return parts


def share(parts: dict[str, float]) -> float:
    """(worst group + M_S + selection) / fine-tuning, in percent."""
    chosen = parts["worst group"] + parts["M_S"] + parts["selection"]
    return 100 * chosen / parts["fine-tuning"]


def summary(strategy: str, mode: str, repeats: list[dict[str, float]]) -> dict[str, Any]:
    """One row: each part's median seconds over the repeats and its share of the median round,
    and the median selection / fine-tuning share of the repeats with its [min, max]."""
    median = {key: statistics.median(r[key] for r in repeats) for key in repeats[0]}
    shares = [share(r) for r in repeats]
    row: dict[str, Any] = {
        "strategy": strategy.upper(),
        "M_S": (mode if uses_standard_model(strategy) else "-"),
        "repeats": len(repeats),
        "round s": median["round"],
    }
    for part in PARTS:
        row[f"{part} s"] = median[part]
    for part in PARTS:
        row[f"{part} %"] = 100 * median[part] / median["round"]
    row["selection / fine-tuning %"] = statistics.median(shares)
    row["selection / fine-tuning [min, max]"] = f"[{min(shares):.1f}, {max(shares):.1f}]"
    return row


def parser() -> argparse.ArgumentParser:
    """The command-line options (also what :func:`prepare` and :func:`run` read)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits_domains")
    parser.add_argument("--model", default=None, help="smallcnn, mobilenetv2, resnet18 or mlp")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per round (M_R and M_S)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--initial", type=float, default=0.2)
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each case, the modes of M_S taking turns; medians are reported",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="results name (default round-<device>)")
    return parser


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """The data set, model, training options and the shared initialisation."""
    dataset = load_dataset(args.dataset)
    model_fn = default_model_fn(dataset, args.model)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, warmup_epochs=min(1, args.epochs)
    )
    start = time.perf_counter()
    init = initialize(
        dataset,
        model_fn=model_fn,
        train=config,
        initial_fraction=args.initial,
        seed=0,
        device=args.device,
        progress=False,
    )
    print(
        f"device={args.device} threads={torch.get_num_threads()} dataset={args.dataset} "
        f"model={type(model_fn()).__name__} |D|={len(dataset.train)} epochs={args.epochs} "
        f"initial={args.initial} budget={args.budget}; initialisation "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    return {"dataset": dataset, "init": init, "config": config, "model_fn": model_fn}


def run(args: argparse.Namespace, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured rows of ``args.strategies`` (JIN with M_S from scratch and fine-tuned)."""
    unknown = sorted(set(args.strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    ranking = context["ranking"] = Clock()
    original = fral.protocol.group_ranking
    fral.protocol.group_ranking = ranking.wrap(original)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    rows = []
    try:
        for name in args.strategies:
            needs_s = uses_standard_model(name)
            modes = ["scratch", "finetune"] if name == "jin" else ["scratch"]
            modes = modes if needs_s else ["finetune"]
            repeats: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
            for _ in range(args.repeats):  # scratch, finetune, scratch, ... for JIN
                for mode in modes:
                    repeats[mode].append(round_parts(name, mode, args, context))
            for mode in modes:
                row = summary(name, mode, repeats[mode])
                rows.append(row)
                print(
                    f"{row['strategy']:>7} M_S {row['M_S']:>8}: round {row['round s']:7.2f} s | "
                    + " | ".join(f"{part} {row[f'{part} %']:5.1f}%" for part in PARTS)
                    + f" | selection / fine-tuning {row['selection / fine-tuning %']:.1f}% "
                    + row["selection / fine-tuning [min, max]"],
                    flush=True,
                )
    finally:
        fral.protocol.group_ranking = original
    return rows


def main() -> None:
    args = parser().parse_args()
    rows = run(args, prepare(args))
    device = torch.device(args.device)
    write_results(args.output or f"round-{device.type}", list(rows[0]), rows, device)


if __name__ == "__main__":
    main()
