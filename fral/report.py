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
    "EVAL_ATTACKS",
    "TABLE_COLUMNS",
    "final_table",
    "group_table",
    "interval_table",
    "labelled_table",
    "load_results",
    "plot_worst_group",
    "round_line",
    "round_table_header",
    "timing_table",
]

TABLE_COLUMNS = (
    ("Clean worst", "clean_{metric}_worst"),
    ("Clean disp.", "clean_{metric}_disparity"),
    ("Clean avg.", "clean_{metric}_average"),
    ("Rob worst", "robust_{metric}_worst"),
    ("Rob disp.", "robust_{metric}_disparity"),
    ("Rob avg.", "robust_{metric}_average"),
)
"""(header, summary key) of the paper's Table 1 columns; ``{metric}`` is ``accuracy`` or ``f1``.
"Clean" is the clean inputs (the paper's "Std", renamed so that it is not read as a standard
deviation next to "± std"), "Rob" under the evaluation attack."""

EVAL_ATTACKS = {"pgd": "test", "autoattack": "test_autoattack"}
"""Where the figures of each evaluation attack are in a round's record: ``test`` (PGD, every
round) or ``test_autoattack`` (the final round of a run with ``eval_attack="autoattack"``)."""


def round_table_header() -> str:
    """Header of the per-round progress table printed by ``fral demo`` and ``fral run``."""
    return (
        f"{'strategy':>8s} {'round':>5s} {'labelled':>8s} {'groups':>9s} "
        f"{'clean worst':>11s} {'rob worst':>9s} {'clean disp':>10s} {'rob disp':>8s} "
        f"{'select s':>8s} {'train s':>8s}"
    )


def _group_label(group: int, names: Sequence[str] | None) -> str:
    if names is not None and 0 <= group < len(names):
        return str(names[group])
    return str(group)


def _record_group_names(record: dict[str, Any]) -> list[str] | None:
    names = record.get("test", {}).get("group_names")
    return None if names is None else [str(name) for name in names]


def _groups_cell(record: dict[str, Any], names: Sequence[str] | None = None) -> str:
    """The groups a round drew from, by name where known (``"b+a"``: group b, topped up
    from group a), ``"all"`` for the whole pool, ``"-"`` for round 0."""
    names = _record_group_names(record) if names is None else names
    if "groups" in record:
        groups = record["groups"]
        if groups is None:
            return "all"
        return "+".join(_group_label(group, names) for group in groups) or "none"
    worst = record.get("worst_group_validation")  # histories of fral before the hardening
    return "-" if worst is None else _group_label(worst, names)


def round_line(
    strategy: str, record: dict[str, Any], group_names: Sequence[str] | None = None
) -> str:
    """One row of that table (accuracies in percent); groups by name (``group_names``, else
    the names the record holds, else ids)."""
    summary = record["test"]["summary"]
    return (
        f"{strategy:>8s} {record['round']:5d} {record['labeled']:8d} "
        f"{_groups_cell(record, group_names):>9s} "
        f"{100 * summary['clean_accuracy_worst']:11.2f} "
        f"{100 * summary['robust_accuracy_worst']:9.2f} "
        f"{100 * summary['clean_accuracy_disparity']:10.2f} "
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


def _attack_key(attack: str) -> str:
    if attack not in EVAL_ATTACKS:
        raise ValueError(f"attack must be one of {sorted(EVAL_ATTACKS)}, got {attack!r}")
    return EVAL_ATTACKS[attack]


def _check_attack_present(results: Sequence[dict[str, Any]], key: str) -> None:
    if key != "test" and not any(key in r["history"][-1] for r in results):
        raise ValueError(
            "these runs hold no AutoAttack evaluation: run them with --eval-attack autoattack "
            "(fral run) or eval_attack='autoattack' (run_experiment)"
        )


def _rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The initialization row (round 0 of each seed), then each strategy's last rounds."""
    rows: dict[str, list[dict[str, Any]]] = {}
    initial: dict[int, dict[str, Any]] = {}
    for result in results:
        history = result["history"]
        initial[result["settings"]["seed"]] = history[0]
        rows.setdefault(result["strategy"], []).append(history[-1])
    return [("Initialization", list(initial.values())), *rows.items()]


_AUTOATTACK_NOTE = (
    "\nRob: worst case of PGD and AutoAttack per sample (correct under both); n/a: not "
    "evaluated under AutoAttack (only the final round is)."
)


def final_table(
    results: Sequence[dict[str, Any]], metric: str = "accuracy", attack: str = "pgd"
) -> str:
    """The paper's Table 1 for these results: the initialization row, then one row per
    strategy with mean ± std over seeds of the last round's test metrics (in percent) and
    the labelled count (``min-max`` where seeds differ). "Clean" columns are the paper's
    "Std" (clean inputs), "Rob" those under the evaluation attack.

    Parameters
    ----------
    results : sequence of dict
        Each with ``strategy`` and ``history`` (see :func:`load_results`).
    metric : {"accuracy", "f1"}
        Accuracy (UTKFace, CINIC-10) or macro-F1 (HAM-10000).
    attack : {"pgd", "autoattack"}, default "pgd"
        The robust columns: under PGD (every round), or the worst case of PGD and AutoAttack
        (``test_autoattack``, final rounds of runs made with ``eval_attack="autoattack"``;
        ``n/a`` where a record has none, e.g. the initialization row).

    Returns
    -------
    str
        A Markdown table.
    """
    key = _attack_key(attack)
    _check_attack_present(results, key)
    headers = [name for name, _ in TABLE_COLUMNS]
    lines = [
        "| Method | " + " | ".join(headers) + " | labelled | seeds |",
        "|---|" + "---|" * (len(headers) + 2),
    ]
    for name, records in _rows(results):
        cells = []
        for _, column in TABLE_COLUMNS:
            source = key if column.startswith("robust") else "test"
            if all(source in record for record in records):
                values = [
                    record[source]["summary"][column.format(metric=metric)] for record in records
                ]
                cells.append(_mean_std(values))
            else:
                cells.append("n/a")
        labelled = _count_cell([record["labeled"] for record in records])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {labelled} | {len(records)} |")
    if key != "test":
        lines.append(_AUTOATTACK_NOTE)
    return "\n".join(lines)


def _group_names(results: Sequence[dict[str, Any]], count: int) -> list[str]:
    for result in results:
        for record in result["history"]:
            names = _record_group_names(record)
            if names is not None and len(names) == count:
                return names
    return [f"group {group}" for group in range(count)]


def group_table(
    results: Sequence[dict[str, Any]], metric: str = "accuracy", attack: str = "pgd"
) -> str:
    """Each group's clean and robust ``metric`` after the last round, by group name: mean ±
    std over seeds, in percent (``n/a`` where a group has no test sample or the record no
    such evaluation); rows as in :func:`final_table`; Markdown.

    Parameters
    ----------
    results : sequence of dict
        See :func:`load_results`.
    metric : {"accuracy", "f1"}
    attack : {"pgd", "autoattack"}, default "pgd"
        As in :func:`final_table`.

    Returns
    -------
    str
    """
    key = _attack_key(attack)
    _check_attack_present(results, key)
    count = len(results[0]["history"][0]["test"]["groups"]["clean"][metric]["per_group"])
    names = _group_names(results, count)
    headers = [f"{name} {setting}" for name in names for setting in ("clean", "rob")]
    lines = ["| Method | " + " | ".join(headers) + " |", "|---|" + "---|" * len(headers)]
    for row, records in _rows(results):
        cells = []
        for group in range(count):
            for setting, source in (("clean", "test"), ("robust", key)):
                values = [
                    record[source]["groups"][setting][metric]["per_group"][group]
                    if source in record
                    else None
                    for record in records
                ]
                cells.append("n/a" if None in values else _mean_std(values))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if key != "test":
        lines.append(_AUTOATTACK_NOTE)
    return "\n".join(lines)


def _interval_cell(entry: dict[str, Any], setting: str, metric: str) -> str:
    worst = entry["summary"][f"{setting}_{metric}_worst"]
    low, high = entry["ci"][setting][metric]["group_min"]
    return f"{100 * worst:6.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def interval_table(
    results: Sequence[dict[str, Any]], metric: str = "accuracy", attack: str = "pgd"
) -> str:
    """Worst-group clean and robust ``metric`` of each run's final round with its bootstrap
    confidence interval (stratified percentile bootstrap of the test predictions, see
    :meth:`fral.GroupMetric.bootstrap`), one row per strategy and seed, in percent;
    Markdown. Runs whose final record holds no interval (older fral) are listed as such.

    Parameters
    ----------
    results : sequence of dict
        See :func:`load_results`.
    metric : {"accuracy", "f1"}
    attack : {"pgd", "autoattack"}, default "pgd"
        As in :func:`final_table`.

    Returns
    -------
    str
    """
    key = _attack_key(attack)
    _check_attack_present(results, key)
    level = None
    rows = []
    for result in results:
        entry = result["history"][-1].get(key)
        seed = result["settings"]["seed"]
        if entry is None or "ci" not in entry:
            rows.append(f"| {result['strategy']} | {seed} | no interval | no interval |")
            continue
        level = entry["ci"]["clean"][metric]["confidence_level"]
        rows.append(
            f"| {result['strategy']} | {seed} | {_interval_cell(entry, 'clean', metric)} | "
            f"{_interval_cell(entry, 'robust', metric)} |"
        )
    label = "CI" if level is None else f"{100 * level:g}% CI"
    lines = [
        f"| Method | seed | Clean worst [{label}] | Rob worst [{label}] |",
        "|---|---|---|---|",
        *rows,
    ]
    if key != "test":
        lines.append(_AUTOATTACK_NOTE)
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
