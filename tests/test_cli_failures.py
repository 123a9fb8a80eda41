"""Every failure of the fral command is one line on stderr and a non-zero exit (issue 8)."""

from __future__ import annotations

import json

import pytest
import torch

import fral.cli
from fral._io import folder_lock, read_json, write_json
from fral.cli import main

RUN = [
    "run",
    "--strategy",
    "RAND",
    "--limit",
    "100",
    "--rounds",
    "0",
    "--epochs",
    "1",
    "--attack-steps",
    "1",
    "--no-progress",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def failure(capsys, argv) -> str:
    """Run ``fral argv``; it must fail with status 1 and one line on stderr, returned."""
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fral: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """An output folder holding a finished (zero-round) run of RAND on 100 samples."""
    out = tmp_path_factory.mktemp("started")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*RUN, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--limit", "120"], "--limit (100 then, 120 now)"),
        (["--split-seed", "1"], "--split-seed (0 then, 1 now)"),
        (["--model", "mlp"], "--model (None then, 'mlp' now)"),
        (["--dataset", "adult"], "--dataset ('digits_domains' then, 'adult' now)"),
        (["--epochs", "2"], "--epochs (1 then, 2 now)"),
    ],
)
def test_a_resume_with_other_data_or_options_names_them(started, capsys, change, needle):
    # Before: a resume with another --limit or --split-seed continued on other data.
    argv = [*RUN, "--out", str(started), "--resume"]
    for flag, value in zip(change[::2], change[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    line = failure(capsys, argv)
    assert "cannot resume the runs in" in line and needle in line


def test_a_resume_with_the_same_options_adds_rounds(started, capsys) -> None:
    argv = [*RUN, "--out", str(started), "--resume"]
    argv[argv.index("--rounds") + 1] = "1"
    leftovers = [started / ".results.json-x1.tmp", started / "seed0" / ".initialization.pt-x2.tmp"]
    for path in leftovers:  # what a process killed while writing leaves
        path.write_bytes(b"partial")
    assert main(argv) == 0
    assert not any(path.exists() for path in leftovers)
    history = json.loads((started / "seed0" / "RAND" / "history.json").read_text())
    assert [record["round"] for record in history["history"]] == [0, 1]
    assert "Labelled samples per round" in capsys.readouterr().out


def test_a_locked_output_folder_fails_at_once(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(fral.cli, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    with folder_lock(tmp_path):
        line = failure(capsys, [*RUN, "--out", str(tmp_path)])
    assert "in use by another fral run" in line


def test_an_unwritable_output_folder_fails_before_loading_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fral.cli, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    (tmp_path / "file").write_text("")
    line = failure(capsys, [*RUN, "--out", str(tmp_path / "file" / "out")])
    assert "is not a writable folder" in line


def test_a_damaged_checkpoint_is_one_line(started, capsys, tmp_path) -> None:
    out = tmp_path / "copy"
    for path in started.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(started)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    init = out / "seed0" / "initialization.pt"
    init.write_bytes(init.read_bytes()[:-10])
    line = failure(capsys, [*RUN, "--out", str(out), "--resume"])
    assert f"{init} is truncated or corrupted" in line


def test_an_unexpected_error_is_one_line_naming_its_type(capsys, monkeypatch) -> None:
    def broken(args):
        raise KeyError("history")

    monkeypatch.setattr(fral.cli, "_report", broken)
    assert failure(capsys, ["report", "x"]) == "fral: error: KeyError: 'history'"
    with pytest.raises(KeyError):
        main(["--traceback", "report", "x"])


def test_a_multi_line_message_becomes_one_line(capsys, monkeypatch) -> None:
    def broken(args):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(fral.cli, "_report", broken)
    assert failure(capsys, ["report", "x"]) == "fral: error: first line second line"


def test_a_folder_from_before_the_new_options_resumes(started, capsys, tmp_path) -> None:
    # command.json of a fral without --momentum/--weight-decay/--data-dir: their defaults then.
    out = tmp_path / "old"
    for path in started.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(started)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    stored = read_json(out / "command.json", checksum=True)
    for key in ("momentum", "weight_decay", "data_dir", "eps", "warmup_epochs"):
        del stored[key]
    write_json(out / "command.json", stored, checksum=True)
    assert main([*RUN, "--out", str(out), "--resume"]) == 0
    line = failure(capsys, [*RUN, "--out", str(out), "--resume", "--momentum", "0.5"])
    assert "--momentum (0.9 then, 0.5 now)" in line


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        (["--bounds", "1,0"], "must be two finite numbers LOW < HIGH"),
        (["--bounds", "zero"], "must be LOW,HIGH (e.g. 0,1) or none"),
        (["--eps", "-1"], "must be a finite number >= 0"),
        (["--lr", "nan"], "must be a finite number > 0"),
        (["--dataset", "missing.npz"], "missing.npz is not a file"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(capsys, option, needle) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*RUN, "--out", "x", *option])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option[0]}: " in error and needle in error
