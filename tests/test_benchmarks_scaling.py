"""benchmarks/bench_scaling.py at tiny sizes: the rows it writes and the plot drawn from them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_scaling.py"
STRATEGIES = ("JIN", "ENT", "CSET", "BADGE")


def load_script():
    """bench_scaling as a module (it imports ``_common`` from its own folder)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("bench_scaling", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("results")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(SCRIPT), "--sizes", "400", "200", "--out", str(folder)]
    out = subprocess.run(
        [*command, "--strategies", *STRATEGIES],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    record = json.loads((folder / "scaling-cpu.json").read_text())
    return {"record": record, "stdout": out.stdout, "path": folder / "scaling-cpu.json"}


def test_rows_cover_every_strategy_and_size(results: dict) -> None:
    rows = results["record"]["rows"]
    assert [(row["strategy"], row["N"]) for row in rows] == [
        (name, size) for name in STRATEGIES for size in (200, 400)
    ]
    script = load_script()
    for row in rows:
        assert row["seconds"] > 0 and row["s per 1,000"] == pytest.approx(
            1000 * row["seconds"] / row["N"], rel=1e-3, abs=1e-6
        )
        part = row["N"] * script.BYTES_PER_SAMPLE[row["strategy"]] / 2**20
        assert row["O(N) part MiB"] == pytest.approx(part, abs=0.01)
        assert row["rest MiB"] == pytest.approx(row["peak extra MiB"] - part, abs=0.02)
    last = {row["strategy"]: row for row in rows if row["N"] == 400}
    for name in STRATEGIES:
        assert isinstance(last[name]["time slope (log-log)"], float)
        assert isinstance(last[name]["fitted bytes / sample"], float)
    columns = results["record"]["columns"]
    assert columns[:7] == [
        "strategy",
        "N",
        "seconds",
        "s per 1,000",
        "peak extra MiB",
        "O(N) part MiB",
        "rest MiB",
    ]
    assert "slope from 10,000" not in columns  # no size reaches it


def test_output_names_the_malloc_setting(results: dict) -> None:
    assert "MALLOC_MMAP_THRESHOLD_=65536" in results["stdout"]
    assert "log-log slope of time against N" in results["stdout"]
    assert results["record"]["command"].startswith("python ")


def test_slope_is_the_log_log_fit() -> None:
    script = load_script()
    assert script.slope([10, 100, 1000], [2.0, 20.0, 200.0]) == pytest.approx(1.0)
    assert script.slope([10, 100], [1.0, 100.0]) == pytest.approx(2.0)
    assert script.bytes_fit([1000, 2000], [5000 + 1000 * 40, 5000 + 2000 * 40]) == pytest.approx(40)


def test_plot_draws_from_the_results_file(results: dict, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    script = load_script()
    png = script.plot(results["path"], tmp_path / "scaling.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads(results["path"].read_text())
    record["rows"] = [{"strategy": "JIN", "N": 10, "seconds": "not run (~9 s)"}]
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="no measured case"):
        script.plot(empty, tmp_path / "none.png")


def test_committed_results_and_plot_agree() -> None:
    """The committed table is a full run and the committed plot exists next to it."""
    record = json.loads((ROOT / "benchmarks" / "results" / "scaling-cpu.json").read_text())
    assert {row["strategy"] for row in record["rows"]} == set(STRATEGIES)
    assert max(row["N"] for row in record["rows"]) == 1_000_000
    assert (ROOT / "docs" / "scaling.png").is_file()


def test_default_malloc_and_a_case_over_the_time_limit(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"  # the parent's own setting does not leak in
    command = [sys.executable, str(SCRIPT), "--sizes", "200", "400", "--strategies", "ENT"]
    out = subprocess.run(
        [*command, "--default-malloc", "--max-seconds", "1e-9", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "malloc: glibc defaults" in out.stdout
    assert "not run: about" in out.stdout
    rows = json.loads((tmp_path / "scaling-cpu.json").read_text())["rows"]
    assert rows[0]["N"] == 200 and rows[0]["seconds"] > 0
    assert rows[1]["N"] == 400 and rows[1]["seconds"].startswith("not run (~")


def test_a_failing_case_shows_its_error() -> None:
    script = load_script()
    with pytest.raises(RuntimeError, match=r"NOPE at N=10 failed:(.|\n)*KeyError"):
        script.run_case("NOPE", 10, 1, None, timeout=60)
