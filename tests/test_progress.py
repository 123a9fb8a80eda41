"""One rule for progress bars: as asked, else FRAL_PROGRESS, else a terminal only."""

from __future__ import annotations

import io

import pytest
import torch

from fral import show_progress
from fral._progress import progress_bar
from fral.cli import _parser as build_parser
from fral.training import TrainConfig, Trainer, standard_train


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_variable(monkeypatch):
    monkeypatch.delenv("FRAL_PROGRESS", raising=False)


def test_asked_wins(no_variable, monkeypatch):
    monkeypatch.setenv("FRAL_PROGRESS", "0")
    assert show_progress(True) is True
    monkeypatch.setenv("FRAL_PROGRESS", "1")
    assert show_progress(False) is False


@pytest.mark.parametrize(
    ("value", "shown"), [("1", True), ("on", True), ("0", False), ("no", False)]
)
def test_the_variable_decides_automatic(monkeypatch, value, shown):
    monkeypatch.setenv("FRAL_PROGRESS", value)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert show_progress(None) is shown


def test_a_bad_variable_is_named(monkeypatch):
    monkeypatch.setenv("FRAL_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="FRAL_PROGRESS='maybe'"):
        show_progress(None)


def test_automatic_is_a_terminal_only(no_variable, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file, a notebook's stream
    assert show_progress(None) is False
    monkeypatch.setattr("sys.stderr", Terminal())
    assert show_progress(None) is True


def test_a_bad_value_is_refused():
    with pytest.raises(TypeError, match="True, False or None"):
        show_progress(1)
    with pytest.raises(TypeError, match="True, False or None"):
        Trainer(torch.nn.Linear(2, 2), TrainConfig(), progress="yes")


def test_training_is_quiet_in_a_log_and_shows_a_bar_in_a_terminal(no_variable, monkeypatch):
    data = (torch.rand(16, 2), torch.arange(16) % 2)
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    standard_train(torch.nn.Linear(2, 2), data, epochs=1, batch_size=8, random_state=0)
    assert log.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    standard_train(torch.nn.Linear(2, 2), data, epochs=1, batch_size=8, random_state=0)
    assert "train epoch 1" in terminal.getvalue()


def test_the_bar_is_tqdm_text_not_a_notebook_widget(no_variable):
    bar = progress_bar(range(3), progress=False)
    assert type(bar).__module__ == "tqdm.std"


@pytest.mark.parametrize("command", ["run", "demo"])
def test_the_command_line_switch(command):
    parser = build_parser()
    extra = ["--out", "x"] if command == "run" else []
    assert parser.parse_args([command, *extra]).progress is None
    assert parser.parse_args([command, *extra, "--progress"]).progress is True
    assert parser.parse_args([command, *extra, "--no-progress"]).progress is False
    with pytest.raises(SystemExit):
        parser.parse_args([command, *extra, "--progress", "--no-progress"])
