"""Reports: labelled counts make unequal budgets visible; histories are checked (issue 8)."""

from __future__ import annotations

import json

import pytest

from fral._io import CheckpointError, write_json
from fral.report import (
    final_table,
    group_table,
    interval_table,
    labelled_table,
    load_results,
    round_line,
)

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


def test_round_line_uses_group_names() -> None:
    # Before: the table showed group ids ("1+0") even where the data set names its groups.
    names = ["MNIST", "UCI optdigits"]
    assert " UCI optdigits+MNIST " in round_line("JIN", record(1, 30, groups=[1, 0]), names)
    named = record(1, 30, groups=[1])
    named["test"]["group_names"] = names
    assert " UCI optdigits " in round_line("JIN", named)  # the names the record holds
    assert " 7 " in round_line("JIN", record(1, 30, groups=[7]), names)  # unknown id: as is


def test_tables_say_clean_not_std() -> None:
    # Before: "Std worst" next to "± std" read as a standard deviation.
    table = final_table([result("RAND", 0, [20, 30])])
    assert table.splitlines()[0].startswith("| Method | Clean worst | Clean disp. | Clean avg. |")
    assert "Std" not in table


def groups_entry(clean, robust, value=0.5, ci=None):
    entry = {
        "summary": dict.fromkeys(SUMMARY_KEYS, value),
        "groups": {
            "clean": {"accuracy": {"per_group": clean}},
            "robust": {"accuracy": {"per_group": robust}},
        },
        "group_names": ["young", "old"],
    }
    if ci is not None:
        entry["ci"] = {
            setting: {"accuracy": {"group_min": ci, "confidence_level": 0.9}}
            for setting in ("clean", "robust")
        }
    return entry


def autoattack_result(seed):
    first = record(0, 20)
    first["test"] = groups_entry([0.8, 0.6], [0.4, 0.2])
    last = record(1, 30)
    last["test"] = groups_entry([0.9, 0.7], [0.5, 0.3], ci=[0.25, 0.75])
    last["test_autoattack"] = groups_entry([0.9, 0.7], [0.4, None], value=0.25, ci=[0.1, 0.4])
    return {
        "strategy": "JIN",
        "settings": {"strategy": "JIN", "seed": seed},
        "history": [first, last],
    }


def test_final_table_under_autoattack() -> None:
    results = [autoattack_result(0), autoattack_result(1)]
    table = final_table(results, attack="autoattack")
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert rows["| Initialization"].count("n/a") == 3  # round 0 was not attacked with it
    jin = rows["| JIN"].split(" | ")
    assert jin[1].strip() == "50.00±0.00" and jin[4].strip() == "25.00±0.00"
    assert "worst case of PGD and AutoAttack" in table
    with pytest.raises(ValueError, match="no AutoAttack evaluation"):
        final_table([result("RAND", 0, [20, 30])], attack="autoattack")
    with pytest.raises(ValueError, match="attack must be one of"):
        final_table(results, attack="fgsm")


def test_group_table_by_name() -> None:
    results = [autoattack_result(0), autoattack_result(1)]
    table = group_table(results)
    assert table.splitlines()[0] == "| Method | young clean | young rob | old clean | old rob |"
    assert "| JIN |  90.00±0.00 |  50.00±0.00 |  70.00±0.00 |  30.00±0.00 |" in table
    under_aa = group_table(results, attack="autoattack")
    assert "| JIN |  90.00±0.00 |  40.00±0.00 |  70.00±0.00 | n/a |" in under_aa  # no sample


def test_interval_table() -> None:
    results = [autoattack_result(0), result("RAND", 0, [20, 30])]
    table = interval_table(results)
    assert table.splitlines()[0] == "| Method | seed | Clean worst [90% CI] | Rob worst [90% CI] |"
    assert "| JIN | 0 |  50.00 [25.00, 75.00] |  50.00 [25.00, 75.00] |" in table
    assert "| RAND | 0 | no interval | no interval |" in table
    assert "25.00 [10.00, 40.00]" in interval_table(results[:1], attack="autoattack")
