"""The README's quick-start example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_quick_start_runs_as_written(capsys) -> None:
    quick_start = python_blocks()[0]
    assert "JIN(budget=50" in quick_start
    namespace: dict = {}
    exec(compile(quick_start, str(README), "exec"), namespace)
    picks, pool = namespace["picks"], namespace["pool"]
    assert len(picks) == 50 and len(set(picks.tolist())) == 50
    assert namespace["to_label"].tolist() == (namespace["unlabeled"][picks]).tolist()
    printed = capsys.readouterr().out
    assert "picked 50 samples" in printed and "F_std" in printed
    # JIN drew from one group only: the worst on the validation set.
    assert len(set(pool.groups[picks].tolist())) == 1
