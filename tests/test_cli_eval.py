"""``--eval-attack`` on ``fral run`` and ``fral report``; tables by group name with intervals."""

from __future__ import annotations

import pytest
import torch

import fral.cli
import fral.loop
from fral.autoattack import AutoAttack
from fral.cli import main
from fral.datasets import digits_domains
from tests.utils import ONE_EPOCH_RUN


@pytest.fixture(autouse=True)
def small_and_single_threaded(monkeypatch):
    """A small test split (the full one takes minutes to attack) and one torch thread."""
    small = digits_domains().subsample(train=200, validation=40, test=60, seed=0)
    monkeypatch.setattr(fral.cli, "load_dataset", lambda name, seed: small)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def quick_autoattack(monkeypatch):
    """The loop's AutoAttack with Square at 50 queries, to keep the test in seconds."""

    def quick(dataset, pgd):
        return AutoAttack(eps=dataset.eps, bounds=dataset.bounds, pgd=pgd, n_queries=50)

    monkeypatch.setattr(fral.loop, "_eval_autoattack", quick)


def _options(out, *extra):
    return [
        "run",
        "--strategy",
        "RAND",
        *ONE_EPOCH_RUN,
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def test_run_and_report_under_autoattack(tmp_path, capsys, quick_autoattack) -> None:
    assert main(_options(tmp_path, "--eval-attack", "autoattack")) == 0
    printed = capsys.readouterr().out
    assert "clean worst" in printed and "std worst" not in printed  # the round table
    table = (tmp_path / "table.md").read_text()
    assert "| Method | Clean worst | Clean disp." in table and "Std worst" not in table
    assert "Under autoattack:" in table and "worst case of PGD and AutoAttack" in table
    assert "| MNIST clean | MNIST rob | UCI optdigits clean | UCI optdigits rob |" in table
    assert "Clean worst [95% CI]" in table
    assert main(["report", str(tmp_path), "--eval-attack", "autoattack"]) == 0
    report = capsys.readouterr().out
    assert "| RAND | 0 |" in report and "[" in report.split("| RAND | 0 |")[1]
    # Another evaluation attack on --resume is allowed: it is not a setting of the runs.
    assert main([*_options(tmp_path), "--resume"]) == 0


def test_report_under_autoattack_needs_runs_made_with_it(tmp_path, capsys) -> None:
    assert main(_options(tmp_path)) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--eval-attack", "autoattack"]) == 1
    assert "no AutoAttack evaluation" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 0
