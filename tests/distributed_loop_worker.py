"""Worker of tests/test_distributed_loop.py: ``run_experiment`` on one rank of a gloo group.

Each rank runs, in order: an uninterrupted run; a run whose oracle fails in round 2 (on rank
0, the only rank that asks it); the resume of that run. Rank ``r`` is given the run folder
``OUT/<run>-rank<r>``: rank 0 alone may write, so the folders of the other ranks must never
appear. :func:`experiment` is also run by the test process itself, without a process group,
for the one-process reference.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fral.datasets import FairDataset
from fral.loop import run_experiment
from fral.strategies import build_strategy
from fral.training import TrainConfig
from tests.utils import run_rank

ROUNDS = 2


def dataset() -> FairDataset:
    """240 rows of 6 features, 3 classes, 2 groups; 151 of them in the training split."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    groups = (x[:, 2] > 0.3).astype(int)
    return FairDataset.from_arrays(x, y, groups, name="toy", bounds=None, eps=0.1)


def model_fn() -> nn.Module:
    """No BatchNorm, no Dropout: data-parallel training is one process's up to rounding."""
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


class Oracle:
    """The data set's labels, counting its calls; fails at call ``fail_at`` (1-based)."""

    def __init__(self, labels: torch.Tensor, fail_at: int | None = None) -> None:
        self.labels, self.fail_at, self.calls = labels, fail_at, 0

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the annotation tool went away")
        return self.labels[indices]


def experiment(
    data: FairDataset,
    oracle: Oracle,
    checkpoint_dir: Path | None,
    resume: bool = False,
    rounds: int = ROUNDS,
    on_round: Any = None,
    seed: int = 1,
    strategy: Any = "JIN",
) -> Any:
    train = TrainConfig(epochs=1, batch_size=16, lr=0.05, warmup_epochs=0, adversarial=True)
    return run_experiment(
        strategy,
        data,
        model_fn=model_fn,
        rounds=rounds,
        initial_fraction=0.3,
        budget_fraction=0.07,
        oracle=oracle,
        oracle_batch_size=4,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        seed=seed,
        train=train,
        standard=TrainConfig(epochs=1, batch_size=16, lr=0.05, warmup_epochs=0),
        attack_steps=1,
        progress=False,
        on_round=on_round,
    )


def scenario(rank: int, out_dir: Path) -> dict[str, Any]:
    """The three runs on this rank; what each gave, and what each rank saw."""
    data = dataset()
    results: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    oracle = Oracle(data.train.y)
    full = experiment(data, oracle, out_dir / f"full-rank{rank}", on_round=records.append)
    results["full"] = {"history": full.history, "labeled": full.labeled, "labels": full.labels}
    results["full/oracle_calls"] = oracle.calls
    results["full/on_round"] = records
    # Round 2's oracle fails after its first answer (calls: 3 in round 1, then 1 answered).
    failing = Oracle(data.train.y, fail_at=5)
    try:
        experiment(data, failing, out_dir / f"resume-rank{rank}")
        results["interrupted"] = None
    except Exception as error:  # every rank must stop, not wait for rank 0
        results["interrupted"] = f"{type(error).__name__}: {error}"
    oracle = Oracle(data.train.y)
    resumed = experiment(data, oracle, out_dir / f"resume-rank{rank}", resume=True)
    results["resumed"] = {
        "history": resumed.history,
        "labeled": resumed.labeled,
        "labels": resumed.labels,
    }
    results["resumed/oracle_calls"] = oracle.calls

    # on_round failing on rank 1 only: every rank stops after round 1.
    def fail_on_rank_1(record: dict[str, Any]) -> None:
        if rank == 1:
            raise RuntimeError(f"rank 1's callback failed in round {record['round']}")

    try:
        experiment(data, Oracle(data.train.y), None, rounds=1, on_round=fail_on_rank_1)
        results["on_round_failed"] = None
    except Exception as error:
        results["on_round_failed"] = f"{type(error).__name__}: {error}"
    # Rank 1 with another seed: refused on every rank before any training or writing.
    try:
        experiment(data, Oracle(data.train.y), out_dir / f"mismatch-rank{rank}", seed=1 + rank)
        results["mismatch"] = None
    except Exception as error:
        results["mismatch"] = f"{type(error).__name__}: {error}"
    # A strategy seeded differently on each rank: its picks differ, refused on every rank.
    try:
        strategy = build_strategy("RAND", 10, random_state=rank)
        experiment(data, Oracle(data.train.y), None, rounds=1, strategy=strategy)
        results["picks_differ"] = None
    except Exception as error:
        results["picks_differ"] = f"{type(error).__name__}: {error}"
    return results


def main(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Join the group as ``rank``, run :func:`scenario`, save what it gave."""
    run_rank(
        rank,
        world_size,
        port,
        lambda: torch.save(
            scenario(rank, Path(out_dir)), os.path.join(out_dir, f"results{rank}.pt")
        ),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
