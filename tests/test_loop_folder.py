"""The run folder: one writer, checksums, a commit point, no leftovers, kills at any moment."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

import fral.loop
from fral._io import CheckpointError, FolderLockedError, folder_lock, read_json, write_torch
from fral.datasets import digits_domains
from fral.loop import Initialization, initialize, run_experiment
from fral.models import SmallCNN
from fral.report import final_table, labelled_table, load_results
from fral.training import TrainConfig

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
TRAIN = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0.5, steps=1)
STANDARD = TrainConfig(epochs=1, batch_size=16, adversarial=False, warmup_epochs=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_data():
    return digits_domains().subsample(train=200, validation=40, test=40, seed=0)


def tiny_model():
    return SmallCNN(10, 1, channels=(4, 8))


def run_tiny(folder=None, *, strategy="JIN", rounds=2, **options):
    """The run every test here uses: 200 samples, 40 labelled, 10 per round, tiny CNN."""
    data = options.pop("data", None) or tiny_data()
    return run_experiment(
        strategy,
        data,
        model_fn=tiny_model,
        train=TRAIN,
        standard=STANDARD,
        rounds=rounds,
        budget_fraction=0.05,
        attack_steps=1,
        oracle_batch_size=4,
        checkpoint_dir=folder,
        **options,
    )


@pytest.fixture(scope="module")
def data():
    return tiny_data()


def no_training(*args, **kwargs):
    raise AssertionError("the run trained before failing")


# -- one writer, a writable folder -----------------------------------------------------------
def test_a_second_writer_fails_at_once(tmp_path, monkeypatch, data) -> None:
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    with folder_lock(tmp_path), pytest.raises(FolderLockedError, match="in use by another"):
        run_tiny(tmp_path, data=data)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_written_fails_before_training(tmp_path, monkeypatch, data):
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="checkpoint_dir .* is not a writable folder"):
        run_tiny(blocker / "run", data=data)


def test_a_new_run_leaves_other_files_in_its_folder_alone(tmp_path, data) -> None:
    mine = [tmp_path / "state-7.pt", tmp_path / ".notes-draft.tmp"]
    for path in mine:
        path.write_text("the user's")
    run_tiny(tmp_path, strategy="RAND", rounds=0, data=data)
    assert all(path.read_text() == "the user's" for path in mine)


def test_resume_needs_a_folder(data) -> None:
    with pytest.raises(ValueError, match="resume=True needs the checkpoint_dir"):
        run_tiny(None, data=data, resume=True)


# -- checksums -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A finished one-round RAND run's folder (copied by each test that damages it)."""
    folder = tmp_path_factory.mktemp("finished")
    init = initialize(data, model_fn=tiny_model, train=TRAIN, seed=0, attack_steps=1)
    run_tiny(folder, strategy="RAND", rounds=1, data=data, initialization=init)
    return folder


def copy_of(folder, tmp_path):
    target = tmp_path / "run"
    target.mkdir(parents=True)
    for path in folder.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("name", "damage", "needle"),
    [
        ("state-1.pt", flip_last_byte, "checksum does not match"),
        ("state-1.pt", truncate, "checksum does not match"),
        ("history.json", truncate, "not valid JSON"),
        ("settings.json", truncate, "not valid JSON"),
    ],
)
def test_a_damaged_file_is_an_error_naming_it(finished, tmp_path, data, name, damage, needle):
    folder = copy_of(finished, tmp_path)
    damage(folder / name)
    with pytest.raises(CheckpointError, match=needle) as caught:
        run_tiny(folder, strategy="RAND", rounds=2, data=data, resume=True)
    assert str(folder / name) in str(caught.value)


def test_an_edited_history_is_an_error(finished, tmp_path, data) -> None:
    # Before: a hand-edited (or bit-flipped) history.json was read as the run's history.
    folder = copy_of(finished, tmp_path)
    document = json.loads((folder / "history.json").read_text())
    document["history"][1]["labeled"] += 1
    (folder / "history.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="history.json is corrupted"):
        run_tiny(folder, strategy="RAND", rounds=2, data=data, resume=True)
    with pytest.raises(CheckpointError, match="history.json is corrupted"):
        load_results([folder])


def test_a_state_file_from_elsewhere_is_refused(finished, tmp_path, data) -> None:
    folder = copy_of(finished, tmp_path)
    other = copy_of(finished, tmp_path / "other")
    entry = read_json(folder / "history.json", checksum=True)["state"]
    write_torch(other / entry["file"], {"round": 1})
    (folder / entry["file"]).write_bytes((other / entry["file"]).read_bytes())
    with pytest.raises(CheckpointError, match="is not the file this run recorded"):
        run_tiny(folder, strategy="RAND", rounds=2, data=data, resume=True)


def test_a_damaged_initialization_is_an_error_naming_it(data, tmp_path) -> None:
    init = initialize(data, model_fn=tiny_model, train=TRAIN, seed=0, attack_steps=1)
    path = tmp_path / "initialization.pt"
    init.save(path)
    flip_last_byte(path)
    with pytest.raises(CheckpointError, match=f"{path} is truncated or corrupted"):
        Initialization.load(path, tiny_model)


# -- kills at any moment ---------------------------------------------------------------------
KILLER = r"""
import json, os, pathlib, signal, sys
sys.path.insert(0, {root!r})
import fral.training
from tests.test_loop_folder import run_tiny, tiny_data

spec = json.loads(sys.argv[1])
hits = [0]


def hit():
    hits[0] += 1
    if hits[0] == spec["at"]:
        os.kill(os.getpid(), signal.SIGKILL)


if spec["kind"] == "fit":  # the spec["at"]-th training batch of the spec["fit"]-th fit call
    fits, real_fit, real_factor = [0], fral.training.Trainer.fit, fral.training.warmup_cosine

    def fit(self, *args, **kwargs):
        fits[0] += 1
        return real_fit(self, *args, **kwargs)

    def factor(*args):
        if fits[0] == spec["fit"]:
            hit()
        return real_factor(*args)

    fral.training.Trainer.fit, fral.training.warmup_cosine = fit, factor
elif spec["kind"] == "replace":  # just before or after a file is renamed into place
    real_replace = os.replace

    def replace(source, target):
        if spec["when"] == "before" and pathlib.Path(target).name == spec["name"]:
            hit()
        real_replace(source, target)
        if spec["when"] == "after" and pathlib.Path(target).name == spec["name"]:
            hit()

    os.replace = replace
data = tiny_data()


def oracle(indices):
    if spec["kind"] == "oracle":
        hit()
    return data.train.y[indices]


run_tiny({folder!r}, data=data, resume=True, oracle=oracle)
"""


def without_timings(value):
    """History records without wall times (the only figures that differ between runs)."""
    if isinstance(value, dict):
        return {
            key: without_timings(item)
            for key, item in value.items()
            if not key.endswith("_seconds") and key != "sha256"
        }
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def test_a_run_killed_at_many_moments_resumes_to_the_same_run(tmp_path) -> None:
    reference = tmp_path / "reference"
    expected = run_tiny(reference)
    folder = tmp_path / "killed"
    stages = [
        # (what kills the process, what the folder holds afterwards)
        ({"kind": "fit", "fit": 1, "at": 2}, "initial training"),
        ({"kind": "replace", "name": "history.json", "when": "before", "at": 1}, "before commit"),
        ({"kind": "fit", "fit": 2, "at": 1}, "training M_S in round 1"),
        ({"kind": "oracle", "at": 2}, "waiting for the oracle"),
        ({"kind": "replace", "name": "state-1.pt", "when": "after", "at": 1}, "after the state"),
        ({"kind": "replace", "name": "history.json", "when": "after", "at": 1}, "after commit"),
        ({"kind": "replace", "name": "open_round.pt", "when": "after", "at": 1}, "between files"),
    ]
    for spec, moment in stages:
        script = KILLER.format(root=ROOT, folder=str(folder))
        process = subprocess.run(
            [sys.executable, "-c", script, json.dumps(spec)],
            capture_output=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert process.returncode == -signal.SIGKILL, (moment, process.stderr.decode()[-3000:])
        names = {path.name for path in folder.iterdir()}
        if moment == "before commit":
            assert "history.json" not in names and any(n.endswith(".tmp") for n in names)
        if moment == "waiting for the oracle":
            assert len(json.loads((folder / "open_round.json").read_text())["labels"]) == 4
        if moment == "after the state":
            assert (
                read_json(folder / "history.json", checksum=True)["state"]["file"] == "state-0.pt"
            )
        if moment == "after commit":
            assert {"open_round.json", "state-0.pt", "state-1.pt"} <= names
        if moment == "between files":  # round 2's selection state, not yet its picks
            assert "open_round.pt" in names and "open_round.json" not in names
    resumed = run_tiny(folder, resume=True)
    assert resumed.labeled.tolist() == expected.labeled.tolist()
    assert resumed.labels.tolist() == expected.labels.tolist()
    assert without_timings(resumed.history) == without_timings(expected.history)
    saved = [json.loads((path / "history.json").read_text()) for path in (folder, reference)]
    assert without_timings(saved[0]) == without_timings(saved[1])
    reports = [load_results([path]) for path in (folder, reference)]
    assert final_table(reports[0]) == final_table(reports[1])
    assert labelled_table(reports[0]) == labelled_table(reports[1])
    assert sorted(path.name for path in folder.iterdir()) == [
        "history.json",
        "settings.json",
        "state-2.pt",
    ]
