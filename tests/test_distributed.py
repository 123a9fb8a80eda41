"""Scale-out on torch.distributed: shards, gathers, and picks identical to one process.

The multi-process tests start 2 and 3 gloo processes on the loopback address (one start per
world size, running every strategy and an evaluation inside; see tests/distributed_worker.py).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fral import distributed
from fral.attacks import PGD
from fral.distributed import batch_shard
from fral.pool import Pool
from fral.scoring import inconsistency_scores
from fral.strategies import STRATEGIES
from tests import distributed_worker
from tests.distributed_worker import BATCH_SIZE, POOL_SIZE
from tests.utils import make_net

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_group(world_size: int, out_dir: Path) -> list[subprocess.Popen]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def arguments(rank: int) -> list[str]:
        return [str(rank), str(world_size), str(port), str(out_dir)]

    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.distributed_worker", *arguments(rank)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in range(world_size)
    ]


def _results(processes: list[subprocess.Popen], out_dir: Path) -> list[dict[str, torch.Tensor]]:
    outputs = [process.communicate(timeout=300)[0].decode() for process in processes]
    for rank, process in enumerate(processes):
        assert process.returncode == 0, f"rank {rank} failed:\n{outputs[rank]}"
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(len(processes))]


@pytest.mark.parametrize(
    ("total", "batch_size", "world_size"),
    [(101, 16, 2), (101, 16, 3), (5, 2, 3), (2, 4, 3), (0, 4, 2), (48, 16, 3), (7, 1, 7)],
)
def test_batch_shards_are_contiguous_cover_everything_and_cut_at_batch_boundaries(
    total, batch_size, world_size
):
    ranges = [batch_shard(total, batch_size, rank, world_size) for rank in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        assert stop == start
    sizes = [stop - start for start, stop in ranges]
    assert all(start % batch_size == 0 or start == total for start, _ in ranges)
    batches = [-(-size // batch_size) for size in sizes]
    assert max(batches) - min(batches) <= 1


def test_batch_shard_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        batch_shard(10, 4, 2, 2)
    with pytest.raises(ValueError, match="batch_size"):
        batch_shard(10, 0, 0, 2)


def test_without_a_process_group_nothing_is_sharded():
    assert distributed.current() is None
    calls = []

    def function(rows, skipped):
        calls.append((rows, skipped))
        return torch.ones(3)

    assert torch.equal(distributed.map_batches(function, 3, 2), torch.ones(3))
    assert calls == [(None, 0)]


@pytest.mark.parametrize("attack", [PGD(), PGD(start_std=0.001), PGD(objective="kl")])
def test_a_shard_that_skips_batches_draws_the_random_starts_of_one_process(attack):
    """Rows scored from batch 2 on, with the generator advanced over two batches, get the very
    scores one process gives them (the basis of identical picks across world sizes)."""
    model_r, model_s = make_net(1), make_net(2)
    x = torch.rand(45, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    pool = Pool(x, torch.zeros(45, dtype=torch.int64))
    options = {"attack": attack, "batch_size": 10}
    whole = inconsistency_scores(
        model_r, pool, model_s, generator=torch.Generator().manual_seed(4), **options
    )
    tail = inconsistency_scores(
        model_r,
        pool,
        model_s,
        indices=torch.arange(20, 45),
        generator=torch.Generator().manual_seed(4),
        skipped_batches=2,
        **options,
    )
    assert torch.equal(tail["robust"], whole["robust"][20:])
    assert torch.equal(tail["standard"], whole["standard"][20:])
    unskipped = inconsistency_scores(
        model_r,
        pool,
        model_s,
        indices=torch.arange(20, 45),
        generator=torch.Generator().manual_seed(4),
        **options,
    )
    assert not torch.equal(unskipped["robust"], whole["robust"][20:])


def test_picks_evaluation_and_training_match_one_process_at_world_sizes_2_and_3(tmp_path):
    """Every strategy (whole pool, worst group, group=1), CSET without labels, and evaluate:
    identical. Standard and TRADES training steps on each rank's part of the global batch,
    gradients summed: the one-process weights to float rounding."""
    groups = {}
    for world_size in (2, 3):  # both groups run while this process computes the reference
        out_dir = tmp_path / f"world{world_size}"
        out_dir.mkdir()
        groups[world_size] = (_start_group(world_size, out_dir), out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = distributed_worker.scenario()
    except BaseException:
        for processes, _ in groups.values():
            for process in processes:
                process.kill()
        raise
    finally:
        torch.set_num_threads(threads)
    assert int(reference["reads/ent"]) == POOL_SIZE
    assert {key.removesuffix("group1") for key in reference} >= set(STRATEGIES)
    for world_size, (processes, out_dir) in groups.items():
        ranks = _results(processes, out_dir)
        for key in ranks[0]:
            if key.startswith("rankwise/"):  # BatchNorm statistics averaged: ranks agree
                assert all(torch.equal(other[key], ranks[0][key]) for other in ranks), key
        for rank, results in enumerate(ranks):
            assert results.keys() == reference.keys()
            # Each rank ran the model on its own shard only (ENT scores the whole pool).
            start, stop = batch_shard(POOL_SIZE, BATCH_SIZE, rank, world_size)
            assert int(results["reads/ent"]) == stop - start
            assert int(results["reads/cset"]) < POOL_SIZE
            assert int(results["reads/badge"]) < POOL_SIZE
            assert int(results["reads/train"]) < int(reference["reads/train"]) * 0.8
            for key, expected in reference.items():
                if key.startswith("train/"):
                    assert torch.allclose(results[key], expected, rtol=1e-5, atol=1e-6), (
                        f"world size {world_size}, rank {rank}: {key} differs"
                    )
                elif not key.startswith(("reads/", "rankwise/")):
                    assert torch.equal(results[key], expected) or (
                        expected.is_floating_point()
                        and torch.equal(results[key].isnan(), expected.isnan())
                        and torch.equal(results[key].nan_to_num(), expected.nan_to_num())
                    ), f"world size {world_size}, rank {rank}: {key} differs"
