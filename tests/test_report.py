"""Reports: labelled counts make unequal budgets visible; histories are checked (issue 8)."""

from __future__ import annotations

import json

import pytest

from fral._io import CheckpointError, write_json
from fral.report import final_table, labelled_table, load_results, round_line

SUMMARY_KEYS = [
    f"{setting}_{metric}_{kind}"
    for setting in ("clean", "robust")
    for metric in ("accuracy", "f1")
    for kind in ("worst", "disparity", "average")
]


def record(number, labeled, value=0.5, **extra):
    return {
        "round": number,
        "labeled": labeled,
        "test": {"summary": dict.fromkeys(SUMMARY_KEYS, value)},
        **extra,
    }


def result(strategy, seed, counts):
    return {
        "strategy": strategy,
        "settings": {"strategy": strategy, "seed": seed},
        "history": [record(number, count) for number, count in enumerate(counts)],
    }


def test_labelled_counts_show_unequal_budgets() -> None:
    # Before: the tables showed no labelled count, so a strategy that spent less of its
    # budget was compared with the others as if it had labelled as many.
    results = [
        result("RAND", 0, [20, 30, 40]),
        result("JIN", 0, [20, 30, 37]),
        result("JIN", 1, [20, 30, 38]),
    ]
    table = labelled_table(results)
    assert "| RAND | 20 | 30 | 40 |" in table
    assert "| JIN | 20 | 30 | 37-38 |" in table
    assert "Unequal labelled counts in round(s) 2" in table
    final = final_table(results)
    assert final.splitlines()[0].endswith("| labelled | seeds |")
    assert "| 40 | 1 |" in final and "| 37-38 | 2 |" in final


def test_equal_budgets_carry_no_note() -> None:
    table = labelled_table([result("RAND", 0, [20, 30]), result("JIN", 0, [20, 30])])
    assert "Unequal" not in table


def test_round_line_names_the_groups_drawn_from() -> None:
    assert " 1+0 " in round_line("JIN", record(1, 30, groups=[1, 0]))
    assert " all " in round_line("RAND", record(1, 30, groups=None))
    assert " - " in round_line("init", record(0, 20))
    assert " 1 " in round_line("old", record(1, 30, worst_group_validation=1))


def test_histories_are_checked(tmp_path) -> None:
    document = {"settings": {"strategy": "RAND", "seed": 0}, "history": [record(0, 20)]}
    write_json(tmp_path / "a" / "history.json", document, checksum=True)
    assert load_results([tmp_path])[0]["history"] == document["history"]
    path = tmp_path / "a" / "history.json"
    tampered = json.loads(path.read_text())
    tampered["history"][0]["labeled"] = 21
    path.write_text(json.dumps(tampered))
    with pytest.raises(CheckpointError, match=f"{path} is corrupted"):
        load_results([tmp_path])
    path.write_text(path.read_text()[:40])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_results([path])
    path.write_text(json.dumps({"history": []}))
    with pytest.raises(CheckpointError, match="is not a fral history"):
        load_results([path])


def test_histories_without_a_checksum_still_load(tmp_path) -> None:
    document = {"settings": {"strategy": "RAND", "seed": 0}, "history": [record(0, 20)]}
    (tmp_path / "history.json").write_text(json.dumps(document))
    assert load_results([tmp_path / "history.json"])[0]["strategy"] == "RAND"
