"""Every example runs (in its quick version) and says what it should."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fral import ActiveSet

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "jin_in_your_pipeline.py": "by-hand and JIN picks agree",
    "custom_strategy.py": "Margin",
    "your_own_oracle.py": "exactly what an uninterrupted run labels",
    "adult_fairness.py": "| JIN |",
    "own_training_loop.py": "reloaded",
    "distributed_selection.py": "picks and evaluation identical to one process",
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert EXPECTED[name] in process.stdout


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
