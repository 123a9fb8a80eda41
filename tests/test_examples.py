"""Every example runs (in its quick version) and says what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "jin_in_your_pipeline.py": "by-hand and JIN picks agree",
    "custom_strategy.py": "Margin",
    "your_own_oracle.py": "exactly what an uninterrupted run labels",
    "adult_fairness.py": "| JIN |",
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
