"""Tables and plots of experiment results, in the layout of the paper's Table 1.

Works on the JSON records that :func:`fral.loop.run_experiment` writes (``history.json``) or on
:meth:`fral.loop.ExperimentResult.to_dict`, so a finished run can be reported without
re-running anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fral._io import CheckpointError, read_json

__all__ = [
    "TABLE_COLUMNS",
    "final_table",
    "labelled_table",
    "load_results",
    "plot_worst_group",
    "round_line",
    "round_table_header",
    "timing_table",
]

TABLE_COLUMNS = (
    ("Std worst", "clean_{metric}_worst"),
    ("Std disp.", "clean_{metric}_disparity"),
    ("Std avg.", "clean_{metric}_average"),
    ("Rob worst", "robust_{metric}_worst"),
    ("Rob disp.", "robust_{metric}_disparity"),
    ("Rob avg.", "robust_{metric}_average"),
)
"""(header, summary key) of the paper's Table 1 columns; ``{metric}`` is ``accuracy`` or ``f1``."""


def round_table_header() -> str:
    """Header of the per-round progress table printed by ``fral demo`` and ``fral run``."""
    return (
        f"{'strategy':>8s} {'round':>5s} {'labelled':>8s} {'groups':>9s} "
        f"{'std worst':>9s} {'rob worst':>9s} {'std disp':>8s} {'rob disp':>8s} "
        f"{'select s':>8s} {'train s':>8s}"
    )


def _groups_cell(record: dict[str, Any]) -> str:
    """The groups a round drew from (``"1+0"``: group 1, topped up from group 0), ``"all"``
    for the whole pool, ``"-"`` for round 0."""
    if "groups" in record:
        groups = record["groups"]
        return "all" if groups is None else "+".join(map(str, groups)) or "none"
    worst = record.get("worst_group_validation")  # histories of fral before the hardening
    return "-" if worst is None else str(worst)


def round_line(strategy: str, record: dict[str, Any]) -> str:
    """One row of that table (accuracies in percent)."""
    summary = record["test"]["summary"]
    return (
        f"{strategy:>8s} {record['round']:5d} {record['labeled']:8d} "
        f"{_groups_cell(record):>9s} "
        f"{100 * summary['clean_accuracy_worst']:9.2f} "
        f"{100 * summary['robust_accuracy_worst']:9.2f} "
        f"{100 * summary['clean_accuracy_disparity']:8.2f} "
        f"{100 * summary['robust_accuracy_disparity']:8.2f} "
        f"{record.get('selection_seconds', 0.0):8.1f} {record.get('training_seconds', 0.0):8.1f}"
    )


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``history.json`` files (or folders holding them, searched recursively).

    A file with a checksum (every run of this fral version) is verified; a truncated,
    corrupted or malformed one is a :class:`fral._io.CheckpointError` naming it.
    """
    results = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = sorted(path.rglob("history.json")) if path.is_dir() else [path]
        for file in files:
            data = read_json(file)
            checked = isinstance(data, dict) and "sha256" in data
            if checked:
                data = read_json(file, checksum=True)
            try:
                results.append(
                    {
                        "strategy": data["settings"]["strategy"],
                        "settings": data["settings"],
                        "history": list(data["history"]),
                    }
                )
            except (KeyError, TypeError):
                raise CheckpointError(
                    f"{file} is not a fral history (settings and history expected)"
                ) from None
    if not results:
        raise ValueError("no history.json found in the given paths")
    return results


def _mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:6.2f}±{100 * spread:4.2f}"


def final_table(results: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """The paper's Table 1 for these results: the initialization row, then one row per
    strategy with mean ± std over seeds of the last round's test metrics (in percent) and
    the labelled count (``min-max`` where seeds differ).

    Parameters
    ----------
    results : sequence of dict
        Each with ``strategy`` and ``history`` (see :func:`load_results`).
    metric : {"accuracy", "f1"}
        Accuracy (UTKFace, CINIC-10) or macro-F1 (HAM-10000).

    Returns
    -------
    str
        A Markdown table.
    """
    rows: dict[str, list[dict[str, Any]]] = {}
    initial: dict[int, dict[str, Any]] = {}
    for result in results:
        history = result["history"]
        initial[result["settings"]["seed"]] = history[0]
        rows.setdefault(result["strategy"], []).append(history[-1])
    headers = [name for name, _ in TABLE_COLUMNS]
    lines = [
        "| Method | " + " | ".join(headers) + " | labelled | seeds |",
        "|---|" + "---|" * (len(headers) + 2),
    ]
    for name, records in [("Initialization", list(initial.values())), *rows.items()]:
        cells = [
            _mean_std([record["test"]["summary"][key.format(metric=metric)] for record in records])
            for _, key in TABLE_COLUMNS
        ]
        labelled = _count_cell([record["labeled"] for record in records])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {labelled} | {len(records)} |")
    return "\n".join(lines)


def _count_cell(counts: Sequence[int]) -> str:
    """One count, or ``min-max`` where the seeds differ."""
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def labelled_table(results: Sequence[dict[str, Any]]) -> str:
    """Labelled samples per strategy after each round (``min-max`` where seeds differ), with a
    note naming the rounds where strategies labelled different numbers, so that unequal
    budgets are visible; Markdown.

    Parameters
    ----------
    results : sequence of dict
        Each with ``strategy`` and ``history`` (see :func:`load_results`).

    Returns
    -------
    str
    """
    counts: dict[str, dict[int, list[int]]] = {}
    for result in results:
        per_round = counts.setdefault(result["strategy"], {})
        for record in result["history"]:
            per_round.setdefault(int(record["round"]), []).append(int(record["labeled"]))
    rounds = sorted({number for per_round in counts.values() for number in per_round})
    lines = [
        "| Method | " + " | ".join(f"round {number}" for number in rounds) + " |",
        "|---|" + "---|" * len(rounds),
    ]
    for name, per_round in counts.items():
        cells = [_count_cell(per_round[n]) if n in per_round else "" for n in rounds]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    unequal = [
        number
        for number in rounds
        if len({value for per_round in counts.values() for value in per_round.get(number, [])}) > 1
    ]
    if unequal:
        lines.append(
            f"\nUnequal labelled counts in round(s) {', '.join(map(str, unequal))}: "
            "the strategies are compared at different budgets there."
        )
    return "\n".join(lines)


def timing_table(results: Sequence[dict[str, Any]]) -> str:
    """The paper's Table 2 for these results: per strategy, the mean wall time per round of
    selection (worst group and ``M_S`` training included where the strategy needs them) and of
    adversarial fine-tuning, and selection as a share of fine-tuning; Markdown."""
    totals: dict[str, list[float]] = {}
    for result in results:
        for record in result["history"][1:]:
            entry = totals.setdefault(result["strategy"], [0.0, 0.0, 0])
            entry[0] += record.get("selection_seconds", 0.0)
            entry[1] += record.get("training_seconds", 0.0)
            entry[2] += 1
    lines = [
        "| Method | selection s / round | fine-tuning s / round | selection / fine-tuning |",
        "|---|---|---|---|",
    ]
    for name, (selection, training, rounds) in totals.items():
        share = 100 * selection / training if training > 0 else math.nan
        lines.append(
            f"| {name} | {selection / rounds:.2f} | {training / rounds:.2f} | {share:.1f}% |"
        )
    return "\n".join(lines)


def plot_worst_group(
    results: Sequence[dict[str, Any]], path: str | Path, metric: str = "accuracy"
) -> Path:
    """PNG of worst-group clean and robust ``metric`` per round, one line per strategy (mean
    over seeds, shaded ± std). Needs matplotlib (``pip install fral-learn[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plotting needs matplotlib: pip install 'fral-learn[plot]' (or matplotlib)"
        ) from error
    by_strategy: dict[str, list[list[dict[str, float]]]] = {}
    for result in results:
        summaries = [record["test"]["summary"] for record in result["history"]]
        by_strategy.setdefault(result["strategy"], []).append(summaries)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for axis, setting, title in zip(
        axes,
        ("clean", "robust"),
        ("F_std: worst-group clean", "F_rob: worst-group PGD"),
        strict=True,
    ):
        key = f"{setting}_{metric}_worst"
        for strategy, runs in by_strategy.items():
            length = min(len(run) for run in runs)
            means, spreads = [], []
            for step in range(length):
                values = [100 * run[step][key] for run in runs]
                means.append(statistics.fmean(values))
                spreads.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            rounds = list(range(length))
            axis.plot(rounds, means, marker="o", label=strategy)
            low = [m - s for m, s in zip(means, spreads, strict=True)]
            high = [m + s for m, s in zip(means, spreads, strict=True)]
            if any(not math.isclose(s, 0.0) for s in spreads):
                axis.fill_between(rounds, low, high, alpha=0.12)
        axis.set_title(f"{title} {metric}")
        axis.set_xlabel("active round (0 = initialization)")
        axis.set_ylabel(f"{metric} (%)")
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.tight_layout()
    # One legend for both panels, outside them, so that no curve is hidden.
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
