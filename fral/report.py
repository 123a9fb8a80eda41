"""Tables and plots of experiment results, in the layout of the paper's Table 1.

Works on the JSON records that :func:`fral.loop.run_experiment` writes (``history.json``) or on
:meth:`fral.loop.ExperimentResult.to_dict`, so a finished run can be reported without
re-running anything.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "TABLE_COLUMNS",
    "final_table",
    "load_results",
    "plot_worst_group",
    "round_line",
    "round_table_header",
    "timing_table",
]

#: (header, summary key, scale) of the paper's Table 1 columns, accuracy version.
TABLE_COLUMNS = (
    ("Std worst", "clean_{metric}_worst"),
    ("Std disp.", "clean_{metric}_disparity"),
    ("Std avg.", "clean_{metric}_average"),
    ("Rob worst", "robust_{metric}_worst"),
    ("Rob disp.", "robust_{metric}_disparity"),
    ("Rob avg.", "robust_{metric}_average"),
)


def round_table_header() -> str:
    """Header of the per-round progress table printed by ``fral demo`` and ``fral run``."""
    return (
        f"{'strategy':>8s} {'round':>5s} {'labelled':>8s} {'worst grp':>9s} "
        f"{'std worst':>9s} {'rob worst':>9s} {'std disp':>8s} {'rob disp':>8s} "
        f"{'select s':>8s} {'train s':>8s}"
    )


def round_line(strategy: str, record: dict[str, Any]) -> str:
    """One row of that table (accuracies in percent)."""
    summary = record["test"]["summary"]
    worst = record.get("worst_group_validation")
    return (
        f"{strategy:>8s} {record['round']:5d} {record['labeled']:8d} "
        f"{'-' if worst is None else worst:>9} "
        f"{100 * summary['clean_accuracy_worst']:9.2f} "
        f"{100 * summary['robust_accuracy_worst']:9.2f} "
        f"{100 * summary['clean_accuracy_disparity']:8.2f} "
        f"{100 * summary['robust_accuracy_disparity']:8.2f} "
        f"{record.get('selection_seconds', 0.0):8.1f} {record.get('training_seconds', 0.0):8.1f}"
    )


def load_results(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``history.json`` files (or folders holding them, searched recursively)."""
    results = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        files = sorted(path.rglob("history.json")) if path.is_dir() else [path]
        for file in files:
            data = json.loads(file.read_text())
            results.append({
                "strategy": data["settings"]["strategy"],
                "settings": data["settings"],
                "history": data["history"],
            })  # fmt: skip
    if not results:
        raise ValueError("no history.json found in the given paths")
    return results


def _mean_std(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:6.2f}±{100 * spread:4.2f}"


def final_table(results: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """The paper's Table 1 for these results: the initialization row, then one row per
    strategy with mean ± std over seeds of the last round's test metrics (in percent).

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
    rows: dict[str, list[dict[str, float]]] = {}
    initial: dict[int, dict[str, float]] = {}
    for result in results:
        history = result["history"]
        initial[result["settings"]["seed"]] = history[0]["test"]["summary"]
        rows.setdefault(result["strategy"], []).append(history[-1]["test"]["summary"])
    headers = [name for name, _ in TABLE_COLUMNS]
    lines = [
        "| Method | " + " | ".join(headers) + " | seeds |",
        "|---|" + "---|" * (len(headers) + 1),
    ]
    for name, summaries in [("Initialization", list(initial.values())), *rows.items()]:
        cells = [
            _mean_std([summary[key.format(metric=metric)] for summary in summaries])
            for _, key in TABLE_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(summaries)} |")
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
    over seeds, shaded ± std). Needs matplotlib (``pip install fral[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plotting needs matplotlib: pip install 'fral[plot]' (or matplotlib)"
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
