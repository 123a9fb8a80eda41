"""JIN and BADGE selection across 1 and 2 processes (gloo, CPU) on a Dataset-backed pool.

Run ``python benchmarks/bench_distributed.py`` (default: 100,000 uint8 images of 3x32x32 in
a memory-mapped ``.npy`` written to ``--folder`` first; ``--size 20000`` for a short run).
For each world size ``W`` in ``--world-sizes`` it starts ``W`` processes on the loopback
address (one torch thread each), which all read the same memory-mapped file through
:class:`fral.datasets.UInt8Images`, and times one ``JIN.select`` (whole pool, PGD-5) and one
``BADGE.select`` after a warm-up call. Per rank it reports:

- wall: seconds of the ``select`` call;
- comm: seconds spent inside fral's collectives (:func:`fral.distributed.communication_seconds`)
  once every rank has arrived (a barrier before each collective,
  :func:`fral.distributed.split_waiting`, takes the waiting apart);
- wait: seconds at those barriers, waiting for the slowest rank (load imbalance and, on a
  shared machine, the other processes);
- memory: the peak of the process's anonymous resident memory (``RssAnon``, sampled every
  2 ms) during the call, minus its value before (cached pages of the memory-mapped file are
  not counted; see benchmarks/bench_memory.py).

What must show: the picks are identical at every world size; BADGE's memory per rank falls as
1 / W (each rank holds the embeddings of its shard only); communication is a small share of
the time. On a machine with fewer free cores than ranks expect little speed-up: the ranks
share the cores. JIN's memory is a batch plus the gathered raw scores (12 bytes per
candidate on every rank, so that the z-scores and top-B are the one-process ones).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from bench_memory import MIB, PeakSampler, status_kib, write_images
from torch import nn

from fral import BADGE, JIN, Pool, distributed
from fral.datasets import UInt8Images


def measure(call: Callable[[], torch.Tensor]) -> dict[str, float | list[int]]:
    """Wall time, communication time and peak extra anonymous memory of ``call()``."""
    comm, waiting = distributed.communication_seconds(), distributed.communication_seconds(True)
    before = status_kib("RssAnon")
    start = time.perf_counter()
    with PeakSampler("RssAnon") as anonymous:
        picks = call()
    return {
        "wall": time.perf_counter() - start,
        "comm": distributed.communication_seconds() - comm,
        "waiting": distributed.communication_seconds(True) - waiting,
        "memory_mib": (anonymous.peak - before) / 1024,
        "picks": picks.tolist(),
    }


STRATEGIES = {"JIN": JIN, "BADGE": BADGE}


def wide_net(seed: int) -> nn.Module:
    """A small conv net with a 512-wide penultimate layer (BADGE's embedding)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(8),
        nn.Flatten(),
        nn.Linear(512, 10),
    )
    return net.eval()


def worker(
    name: str, rank: int, world_size: int, port: int, path: str, args: argparse.Namespace
) -> None:
    """One rank: join the group (if ``world_size > 1``), select with ``name``, write figures."""
    torch.set_num_threads(1)
    if world_size > 1:
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
        )
        distributed.split_waiting(True)
    images = UInt8Images(np.load(path, mmap_mode="r"))
    groups = torch.from_numpy(np.random.default_rng(1).integers(0, 2, len(images)))
    pool = Pool(images, groups)
    model_r, model_s = wide_net(0), wide_net(1)
    warm = pool.subset(torch.arange(2 * args.batch_size * world_size))
    strategy = STRATEGIES[name](args.budget, batch_size=args.batch_size, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JIN without validation: the whole pool, on purpose
        strategy.select(model_r, model_s, warm)  # builds the eval copies, as a real run does
        figures = measure(lambda: strategy.select(model_r, model_s, pool))
    out = Path(path).with_name(f"{name}-w{world_size}r{rank}.json")
    out.write_text(json.dumps(figures))
    if world_size > 1:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="pool size")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--folder", default=None, help="where the .npy goes (default: a temp dir)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, rank, world_size, port, path = args.worker
        worker(name, int(rank), int(world_size), int(port), path, args)
        return
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "images.npy"
        write_images(path, args.size, seed=0)
        print(
            f"pool: {args.size:,} uint8 images of 3x32x32 (memory-mapped), budget {args.budget}, "
            f"batch {args.batch_size}; {os.cpu_count()} CPUs, torch {torch.__version__}"
        )
        results = {}  # (strategy, world size) -> per-rank figures; a fresh process each
        for name in args.strategies:
            for world_size in args.world_sizes:
                port = free_port()
                command = [sys.executable, __file__, "--size", str(args.size)]
                command += ["--batch-size", str(args.batch_size), "--budget", str(args.budget)]
                processes = [
                    subprocess.Popen(
                        [*command, "--worker", name, *map(str, (rank, world_size, port, path))],
                        env={**os.environ, "OMP_NUM_THREADS": "1"},
                    )
                    for rank in range(world_size)
                ]
                if any(process.wait() != 0 for process in processes):
                    raise SystemExit(f"a rank failed: {name} at world size {world_size}")
                results[name, world_size] = [
                    json.loads(path.with_name(f"{name}-w{world_size}r{rank}.json").read_text())
                    for rank in range(world_size)
                ]
    header = f"{'strategy':8} {'W':>2} {'rank':>4} {'wall s':>8} {'comm s':>8} {'comm %':>7}"
    print(f"{header} {'wait s':>8} {'MiB':>8}")
    rows, failed = [], False
    for (name, world_size), ranks in results.items():
        reference = results[name, args.world_sizes[0]][0]["picks"]
        for rank, row in enumerate(ranks):
            share = 100 * row["comm"] / row["wall"]
            same = row["picks"] == reference
            failed |= not same
            print(
                f"{name:8} {world_size:>2} {rank:>4} {row['wall']:>8.2f} {row['comm']:>8.3f} "
                f"{share:>6.1f}% {row['waiting']:>8.3f} {row['memory_mib']:>8.1f}"
            )
            if not same:
                print(f"  FAIL: {name} picks at world size {world_size} differ from one process")
            rows.append(
                {
                    "strategy": name,
                    "W": world_size,
                    "rank": rank,
                    "wall s": row["wall"],
                    "candidates/s": args.size / row["wall"],
                    "comm s": row["comm"],
                    "comm %": f"{share:.1f}%",
                    "wait s": row["waiting"],
                    "MiB": row["memory_mib"],
                    "same picks as W=1": "yes" if same else "NO",
                }
            )
    print(f"MiB: peak extra anonymous memory per rank ({MIB:,} bytes a MiB)")
    write_results("distributed-cpu", list(rows[0]), rows, torch.device("cpu"))
    if failed:
        raise SystemExit("the picks differ across world sizes")


if __name__ == "__main__":
    main()
