"""run_experiment and ``fral run`` under a process group: rank 0 owns the folder and the oracle.

The loop test starts 2 gloo processes on the loopback address (tests/distributed_loop_worker.py)
while this process computes the one-process reference; the CLI test launches
``python -m torch.distributed.run --nproc_per_node=2 -m fral run``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from fral import distributed
from fral._io import read_json, read_torch, write_json, write_torch
from fral.loop import run_experiment
from fral.training import TrainConfig, Trainer
from tests import distributed_loop_worker as worker
from tests.utils import ONE_EPOCH_RUN

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _without_timings(value: Any) -> Any:
    """A record without its wall times (rank 0's, which differ from run to run)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [_without_timings(item) for item in value]
    return value


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Every float of a record, by path."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_numbers(item, f"{prefix}/{key}"))
        return out
    if isinstance(value, list):
        out = {}
        for position, item in enumerate(value):
            out.update(_numbers(item, f"{prefix}/{position}"))
        return out
    return {prefix: value} if isinstance(value, float) else {}


def test_run_experiment_with_two_ranks_matches_one_process_and_resumes(tmp_path):
    port = _free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.distributed_loop_worker",
                str(rank),
                "2",
                str(port),
                str(tmp_path),
            ],
            cwd=ROOT,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(2)
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = worker.dataset()
        reference = worker.experiment(data, worker.Oracle(data.train.y), None)
    finally:
        torch.set_num_threads(threads)
        outputs = [process.communicate(timeout=300)[0].decode() for process in processes]
    for rank, process in enumerate(processes):
        assert process.returncode == 0, f"rank {rank} failed:\n{outputs[rank]}"
    ranks = [torch.load(tmp_path / f"results{rank}.pt") for rank in range(2)]

    # The picks of every round are one process's; the metrics too, up to the rounding of the
    # data-parallel training.
    for results in ranks:
        assert torch.equal(results["full"]["labeled"], reference.labeled)
        assert torch.equal(results["full"]["labels"], reference.labels)
        history = results["full"]["history"]
        assert len(history) == worker.ROUNDS + 1
        for mine, theirs in zip(history, reference.history, strict=True):
            assert mine.get("picked_per_group") == theirs.get("picked_per_group")
            expected = _numbers(_without_timings(theirs["test"]))
            got = _numbers(_without_timings(mine["test"]))
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                assert math.isclose(got[key], value, rel_tol=1e-4, abs_tol=1e-4), key
    # Every rank returns the same history (rank 0's timings included) and gets the same
    # records in on_round, on every rank.
    assert ranks[0]["full"]["history"] == ranks[1]["full"]["history"]
    assert ranks[0]["full/on_round"] == ranks[1]["full/on_round"]
    assert ranks[0]["full/on_round"] == ranks[0]["full"]["history"][1:]
    # Rank 0 alone asked the oracle (3 chunks of 4 per round) and wrote a run folder.
    assert ranks[0]["full/oracle_calls"] == 6
    assert ranks[1]["full/oracle_calls"] == 0
    assert sorted(path.name for path in (tmp_path / "full-rank0").iterdir()) == [
        "history.json",
        "settings.json",
        f"state-{worker.ROUNDS}.pt",
    ]
    assert not (tmp_path / "full-rank1").exists()
    assert not (tmp_path / "resume-rank1").exists()

    # The oracle failing on rank 0 stopped both ranks (rank 1 was not left waiting).
    assert ranks[0]["interrupted"] == "RuntimeError: the annotation tool went away"
    assert ranks[1]["interrupted"].startswith("RankFailedError: rank 0 of the process group")
    assert "the annotation tool went away" in ranks[1]["interrupted"]
    # The resume asked only the two questions left and finished as the uninterrupted run.
    assert ranks[0]["resumed/oracle_calls"] == 2
    assert ranks[1]["resumed/oracle_calls"] == 0
    for results in ranks:
        assert torch.equal(results["resumed"]["labeled"], results["full"]["labeled"])
        assert _without_timings(results["resumed"]["history"]) == _without_timings(
            results["full"]["history"]
        )
    # on_round raising on rank 1 alone stopped both ranks.
    assert ranks[1]["on_round_failed"] == "RuntimeError: rank 1's callback failed in round 1"
    assert ranks[0]["on_round_failed"] == (
        "RankFailedError: rank 1 of the process group failed: RuntimeError: rank 1's callback "
        "failed in round 1"
    )
    # A strategy object seeded differently per rank: the picks' digests differ.
    for results in ranks:
        assert results["picks_differ"].startswith(
            "ValueError: round 1: the ranks picked different samples"
        ), results["picks_differ"]
    # Ranks called with different seeds: a ValueError on every rank, naming the setting.
    for results in ranks:
        assert results["mismatch"].startswith("ValueError: the ranks called run_experiment")
        assert "ranks [1] differ in seed (1 then, 2 now)" in results["mismatch"]
    assert not (tmp_path / "mismatch-rank0").exists()
    saved = read_torch(tmp_path / "resume-rank0" / f"state-{worker.ROUNDS}.pt")
    assert saved["world_size"] == 2

    # One more round in one process: it continues the 2-rank run and says the sizes differ.
    folder = tmp_path / "full-rank0"
    with pytest.warns(UserWarning, match="world size 1; it was saved at world size 2"):
        extended = worker.experiment(
            data, worker.Oracle(data.train.y), folder, resume=True, rounds=worker.ROUNDS + 1
        )
    assert extended.history[: worker.ROUNDS + 1] == ranks[0]["full"]["history"]
    assert len(extended.history) == worker.ROUNDS + 2
    committed = read_json(folder / "history.json", checksum=True)
    assert committed["notes"] == [
        f"round {worker.ROUNDS + 1} on: resumed at world size 1 from a run saved at world size "
        "2; the data-parallel training may differ from an uninterrupted run (float rounding; "
        "BatchNorm without SyncBatchNorm normalises with each rank's part of a batch)"
    ]
    assert read_torch(folder / f"state-{worker.ROUNDS + 1}.pt")["world_size"] == 1


def test_a_one_process_run_records_world_size_1_and_no_notes(tmp_path):
    """Single-process folders: the state says world size 1, history.json has no notes."""
    data = worker.dataset()
    worker.experiment(data, worker.Oracle(data.train.y), tmp_path, rounds=0)
    assert read_torch(tmp_path / "state-0.pt")["world_size"] == 1
    assert "notes" not in read_json(tmp_path / "history.json", checksum=True)
    # A folder of an older fral (no world size in its state) resumes silently as world size 1.
    state = read_torch(tmp_path / "state-0.pt")
    del state["world_size"]
    committed = read_json(tmp_path / "history.json", checksum=True)
    committed["state"]["sha256"] = write_torch(tmp_path / "state-0.pt", state)
    write_json(tmp_path / "history.json", committed, checksum=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = worker.experiment(
            data, worker.Oracle(data.train.y), tmp_path, resume=True, rounds=0
        )
    assert len(resumed.history) == 1


def _fake_group(monkeypatch: pytest.MonkeyPatch, rank: int = 0) -> None:
    """Make fral believe it runs as ``rank`` of 2 (for refusals made before any collective)."""
    fake = distributed.Context(None, rank, 2, torch.device("cpu"))
    monkeypatch.setattr(distributed, "current", lambda process_group=None: fake)


def test_sync_batchnorm_needs_a_process_group():
    data = worker.dataset()
    with pytest.raises(ValueError, match="sync_batchnorm=True needs a process group"):
        run_experiment("RAND", data, rounds=1, sync_batchnorm=True)


def test_sync_batchnorm_is_refused_on_the_cpu(monkeypatch):
    _fake_group(monkeypatch)
    data = worker.dataset()
    with pytest.raises(ValueError, match="nn.SyncBatchNorm runs on GPUs only"):
        run_experiment("RAND", data, rounds=1, device="cpu", sync_batchnorm=True)


def test_sync_batchnorm_must_be_a_bool():
    with pytest.raises(TypeError, match="sync_batchnorm must be True or False"):
        run_experiment("RAND", worker.dataset(), rounds=1, sync_batchnorm=1)


def test_fral_run_sync_batchnorm_without_torchrun_fails_before_writing(tmp_path, capsys):
    from fral.cli import main

    out = tmp_path / "runs"
    status = main(["run", "--limit", "100", "--rounds", "1", "--sync-batchnorm", "--out", str(out)])
    assert status == 1
    assert "sync_batchnorm=True needs a process group" in capsys.readouterr().err
    assert not (out / "command.json").exists() and not (out / "settings.json").exists()


@pytest.mark.parametrize("command", [["demo", "--tiny"], ["report", "nowhere"]])
def test_other_commands_refuse_several_torchrun_ranks(command, tmp_path, monkeypatch, capsys):
    """Only fral run shares its work across ranks; the others would race for their files."""
    from fral.cli import main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "demo"
    assert main([*command, *(["--out", str(out)] if command[0] == "demo" else [])]) == 1
    assert f"fral {command[0]} runs in one process" in capsys.readouterr().err
    assert not out.exists()


def test_trainer_refuses_a_batch_some_rank_would_skip_with_sync_batchnorm(monkeypatch):
    """A rank with no row of a global batch would skip SyncBatchNorm's collective forward and
    leave the others waiting: refused before any step, on every rank alike."""
    from fral import training

    fake = distributed.Context(None, 0, 4, torch.device("cpu"))
    monkeypatch.setattr(training, "current", lambda process_group=None: fake)
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    )
    x = torch.randn(10, 3)
    y = torch.randint(0, 2, (10,))
    config = TrainConfig(epochs=1, batch_size=4, warmup_epochs=0, adversarial=False)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = Trainer(model, config, random_state=0)
    generator = trainer.generator.get_state()
    # 10 samples in batches of 4: the last batch has 2 rows for 4 ranks.
    with pytest.raises(ValueError, match="a global batch of this fit has 2 rows"):
        trainer.fit((x, y))
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(trainer.generator.get_state(), generator)


def test_the_cli_under_torchrun_writes_one_run_folder_from_rank_0(tmp_path):
    out = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "fral",
        "run",
        "--dataset",
        "digits_domains",
        "--limit",
        "150",
        "--model",
        "mlp",
        "--strategy",
        "RAND",
        *ONE_EPOCH_RUN,
        "--attack-steps",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Printed by rank 0 only.
    assert done.stdout.count("initial adversarial training took") == 1, done.stdout
    assert done.stdout.count("Final round, test set") == 1, done.stdout
    names = {path.relative_to(out).as_posix() for path in out.rglob("*")}
    assert {
        "command.json",
        "settings.json",
        "results.json",
        "table.md",
        "seed0",
        "seed0/initialization.pt",
        "seed0/RAND",
        "seed0/RAND/settings.json",
        "seed0/RAND/history.json",
        "seed0/RAND/state-1.pt",
    } <= names
    assert not any(name.endswith(".tmp") or ".lock" in name for name in names), names
    results = json.loads((out / "results.json").read_text())
    assert [len(result["history"]) for result in results] == [2]
    assert read_torch(out / "seed0" / "RAND" / "state-1.pt")["world_size"] == 2

    # A second launch on the same folder without --resume: rank 0's error, printed once,
    # and every rank exits with status 1.
    again = subprocess.run(
        [*command[:5], f"--master_port={_free_port()}", *command[6:]],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode != 0
    assert again.stderr.count("already holds runs") == 1, again.stderr

    # --resume with one more round, at the same world size: rank 0 reads the initialization
    # and the run's state for both ranks, and the run continues without a warning.
    rounds = command.index("--rounds") + 1
    resumed = subprocess.run(
        [
            *command[:5],
            f"--master_port={_free_port()}",
            *command[6:rounds],
            "2",
            *command[rounds + 1 :],
            "--resume",
        ],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "world size" not in resumed.stderr
    results = json.loads((out / "results.json").read_text())
    assert [len(result["history"]) for result in results] == [3]
    assert read_torch(out / "seed0" / "RAND" / "state-2.pt")["world_size"] == 2
