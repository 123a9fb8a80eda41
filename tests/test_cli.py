"""The fral command: the tiny demo end to end, run/resume/report, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fral.cli import main
from tests.utils import ONE_EPOCH_RUN


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--tiny", "--out", str(out)]) == 0
    return out


def test_tiny_demo_writes_json_table_and_png(demo_output, capsys) -> None:
    results = json.loads((demo_output / "results.json").read_text())
    assert [r["strategy"] for r in results] == ["RAND", "JIN"]
    for result in results:
        assert [r["round"] for r in result["history"]] == [0, 1, 2]
    assert (demo_output / "worst_group.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (demo_output / "table.md").read_text()
    assert "| Initialization |" in table and "| JIN |" in table
    assert "selection / fine-tuning" in table
    assert (demo_output / "seed0" / "JIN" / "history.json").exists()


def test_report_reads_saved_runs(demo_output, capsys, tmp_path) -> None:
    assert main(["report", str(demo_output), "--plot", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr().out
    assert "| RAND |" in printed and (tmp_path / "p.png").exists()
    assert "| JIN |" in printed.split("selection / fine-tuning")[1]  # the timing table


def test_run_and_resume(tmp_path, capsys) -> None:
    options = [
        "run",
        "--strategy",
        "G-ENT",
        "--limit",
        "300",
        *ONE_EPOCH_RUN,
        "--out",
        str(tmp_path),
    ]
    assert main(options) == 0
    assert main(options) == 1  # the folder holds a run: refused without --resume
    assert "already holds runs: add --resume" in capsys.readouterr().err
    assert main([*options[:6], "2", *options[7:], "--resume"]) == 0
    history = json.loads((tmp_path / "seed0" / "G-ENT" / "history.json").read_text())
    assert [r["round"] for r in history["history"]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["demo", "--rounds", "many"], 2, "invalid int value"),
        (["run", "--dataset", "cifar"], 2, "unknown data set 'cifar': give a name"),
        (["run", "--out", "x", "--initial-fraction", "1.5"], 2, "must lie in (0, 1)"),
        (["fly"], 2, "invalid choice"),
        (["run", "--out", "x", "--strategy", "QBC"], 1, "unknown strategy 'QBC'"),
        (["report", "/nonexistent/folder"], 1, "/nonexistent/folder does not exist"),
    ],
)
def test_bad_arguments_give_one_line_and_no_traceback(argv, status, needle) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "fral", *argv], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == status
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("fral")
    assert "Traceback" not in process.stderr


def test_version() -> None:
    import fral

    process = subprocess.run(
        [sys.executable, "-m", "fral", "--version"], capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0
    assert process.stdout.strip() == f"fral {fral.__version__}"
