"""Every example script runs in its documented quick mode and shows what it claims."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from fral import ActiveSet

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> str:
    """stdout of ``examples/<name> --quick``; fails the test on a non-zero exit."""
    # One torch thread: the tiny models run several times faster on shared cores.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def test_every_example_is_tested() -> None:
    source = Path(__file__).read_text()
    for path in (ROOT / "examples").glob("*.py"):
        assert f'"{path.name}"' in source, f"{path.name} has no test in {Path(__file__).name}"


def test_jin_in_your_pipeline() -> None:
    out = run_example("jin_in_your_pipeline.py")
    assert "by-hand and JIN scores agree" in out
    assert "by-hand and JIN picks agree" in out
    # torchattacks' PGD with the same settings picks (nearly) the same samples.
    overlap, budget = map(int, re.search(r"torchattacks\.PGD: (\d+)/(\d+)", out).groups())
    assert budget == 20 and overlap >= 18, out


def test_custom_strategy_learns_above_chance() -> None:
    out = run_example("custom_strategy.py")
    chance = float(re.search(r"chance level: ([\d.]+)", out).group(1))
    rows = {
        name: (float(clean), float(robust))
        for name, clean, robust in re.findall(r"^(\S+)\s+F_std ([\d.]+) F_rob ([\d.]+)", out, re.M)
    }
    assert set(rows) == {"Margin", "JIN"}, out
    for clean, robust in rows.values():
        # The worst group's accuracy, clean well above chance and under PGD above it.
        assert clean >= 2 * chance and robust > chance, out


def test_your_own_oracle_outage_loses_nothing() -> None:
    out = run_example("your_own_oracle.py")
    outage = re.search(r"outage after (\d+) answers.*round (\d+) is open with (\d+) of its", out)
    assert outage, out  # the outage happened
    answered, open_round, on_disk = map(int, outage.groups())
    assert open_round == 2 and on_disk > 0, out  # in the middle of round 2, answers kept
    before, after, queried = map(int, re.search(r"(\d+) \+ (\d+) = (\d+) queried", out).groups())
    assert before == answered and after > 0 and before + after == queried, out
    assert "none twice" in out
    assert "exactly what an uninterrupted run labels" in out


def test_adult_fairness_rows_differ() -> None:
    out = run_example("adult_fairness.py")
    rows = {
        line.split("|")[1].strip(): tuple(cell.strip() for cell in line.split("|")[2:8])
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| Method")
    }
    assert list(rows) == ["Initialization", "RAND", "G-RAND", "JIN"], out
    # Each strategy labelled other samples: no two rows of test metrics are the same.
    assert len(set(rows.values())) == 4, out


def test_own_training_loop_prints_what_really_happened(tmp_path: Path, one_torch_thread) -> None:
    """The rounds happen, each adds the budget, nothing is lost across the save and reload in
    the middle, and the printed worst-group accuracies are those of the saved model."""
    script = ROOT / "examples" / "own_training_loop.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    out = process.stdout
    budget = int(re.search(r"budget (\d+) per round", out)[1])
    labelled = [int(re.search(r"round 0: (\d+) labelled", out)[1])]
    rounds = re.findall(
        r"round (\d+): (\d+) -> (\d+) labelled \(\+(\d+), per group \[([\d, ]+)\]\); "
        r"worst-group accuracy clean ([\d.]+), robust ([\d.]+)",
        out,
    )
    assert [int(found[0]) for found in rounds] == [1, 2, 3]
    for _, before, after, added, per_group, _, _ in rounds:
        assert int(before) == labelled[-1] and int(added) == budget
        assert int(after) == int(before) + budget
        assert sum(map(int, per_group.split(","))) == budget
        labelled.append(int(after))
    assert f"saved after round 1 and reloaded: {labelled[1]} labels, 0 pending, identical" in out

    spec = importlib.util.spec_from_file_location("own_training_loop", script)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    data = example.load_data(quick=True)
    middle = ActiveSet.load(tmp_path / "active-round1.pt", data)
    final = ActiveSet.load(tmp_path / "active.pt", data)
    assert middle.num_labeled == labelled[1] and final.num_labeled == labelled[-1]
    # Nothing lost: the final labelled set continues the one saved after round 1.
    assert torch.equal(final.labeled_indices[: labelled[1]], middle.labeled_indices)
    assert torch.equal(final.labeled_labels, data.train.y[final.labeled_indices])
    model = example.build_model(0)
    model.load_state_dict(torch.load(tmp_path / "model_r.pt"))
    model.eval()
    clean, robust = example.worst_group(model, data, 3)  # one thread, as the example
    assert (f"{clean:.4f}", f"{robust:.4f}") == rounds[-1][5:]


def test_distributed_selection_gives_the_picks_of_one_process() -> None:
    out = run_example("distributed_selection.py")
    assert "picks and evaluation identical to one process" in out
