"""Time and peak memory of CSET's and BADGE's selection on synthetic embeddings (CPU).

Run ``python benchmarks/bench_selection.py`` (five to six minutes on two cores), add
``--quick`` for a small run and ``--large`` for the 200,000-candidate case (about two minutes
more). The selection step works on embeddings, so no network is run: the pool is ``N x 512``
embeddings of 10 clusters (one per class) with logits for 10 classes, a labelled set of 2,000
and a budget of 2,000 (``--quick``: 20,000 / 4,000 samples, 128 dimensions, labelled set and
budget of 200).

1. fral's CSET and BADGE at ``N = 20,000`` next to naive versions (written below) that build
   the full distance matrix (CSET: pool x (labelled + pool); BADGE: the ``N x (C d)`` gradient
   matrix and its ``N x N`` distances), as common implementations do. The naive and the fral
   version take turns (naive, fral, naive, fral, ...; ``--pairs`` pairs; each run warms up in
   its own process before it measures, so there is no warm-up pair) and the time and memory
   ratios naive / fral are the median of the pairs with their [min, max]; also whether both
   pick the same samples (every run of one version must pick the same, which is asserted).
2. With ``--large``, fral's k-center greedy (CSET) and k-means++ on gradient embeddings
   (BADGE) at ``N = 200,000``: time and peak extra memory (goal: at most 2 GiB), one run each
   (an absolute figure against a goal, with nothing to alternate with).

Each measurement runs in a fresh subprocess, so alternating the two versions leaves the
memory figures intact: each is the peak of one run of one version in a process of its own.
Peak extra memory is the rise of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) over its resident set once the synthetic inputs exist, so it counts
everything the selection allocates (torch's CPU allocations are invisible to tracemalloc) and
not the inputs themselves. Time is that of the selection call alone, measured inside the
subprocess. With ``--device cuda`` everything runs on the GPU and the memory figure is the
rise of torch's peak allocated GPU memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from _common import ratio, rounds, write_results

from fral._random import make_generator
from fral.strategies.badge import badge_kmeanspp, gradient_scale
from fral.strategies.coreset import center_, kcenter_greedy

MiB = 2**20
FULL = {"size": 200_000, "compare": 20_000, "dim": 512, "labeled": 2_000, "budget": 2_000}
QUICK = {"size": 20_000, "compare": 4_000, "dim": 128, "labeled": 200, "budget": 200}
CLASSES = 10
SEED = 0


# ---------------------------------------------------------------- naive references


def naive_kcenter(pool: torch.Tensor, labeled: torch.Tensor, budget: int) -> torch.Tensor:
    """k-center greedy over the full (labelled + pool) x pool distance matrix."""
    distances = torch.cdist(torch.cat([labeled, pool]), pool).square_()
    nearest = distances[: labeled.shape[0]].amin(0)
    picks = []
    for _ in range(budget):
        pick = int(torch.argmax(nearest))
        picks.append(pick)
        torch.minimum(nearest, distances[labeled.shape[0] + pick], out=nearest)
        nearest[picks] = -1
    return torch.tensor(picks)


def naive_badge(logits: torch.Tensor, features: torch.Tensor, budget: int) -> torch.Tensor:
    """k-means++ seeding on the explicit N x (C d) gradient matrix and its N x N distances."""
    scale = gradient_scale(logits)
    gradients = (scale.unsqueeze(2) * features.unsqueeze(1)).flatten(1)
    distances = torch.cdist(gradients, gradients).square_()
    uniforms = torch.rand(budget - 1, generator=make_generator(SEED), dtype=torch.float64)
    picks = [int(torch.argmax(gradients.norm(dim=1)))]
    nearest = distances[picks[0]].clone()
    for uniform in uniforms:
        nearest[picks] = 0
        cumulative = nearest.double().cumsum(0)
        pick = int(torch.searchsorted(cumulative, uniform * cumulative[-1], right=True))
        picks.append(pick)
        torch.minimum(nearest, distances[pick], out=nearest)
    return torch.tensor(picks)


# ---------------------------------------------------------------- the methods measured

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def fral_kcenter(data: Inputs, budget: int) -> torch.Tensor:
    """What CSET does with the embeddings: centre them in place, then k-center greedy."""
    center_(data[0], data[1])
    return kcenter_greedy(data[0], data[1], budget, generator=make_generator(SEED))


METHODS: dict[str, Callable[[Inputs, int], torch.Tensor]] = {
    "CSET": fral_kcenter,
    "BADGE": lambda data, budget: badge_kmeanspp(
        gradient_scale(data[2]), data[0], budget, generator=make_generator(SEED)
    ),
    "CSET naive": lambda data, budget: naive_kcenter(data[0], data[1], budget),
    "BADGE naive": lambda data, budget: naive_badge(data[2], data[0], budget),
}


def synthetic(size: int, labeled: int, dim: int) -> Inputs:
    """Pool embeddings ``(size, dim)``, labelled embeddings ``(labeled, dim)``, logits."""
    generator = torch.Generator().manual_seed(SEED)
    centres = torch.randn(CLASSES, dim, generator=generator) * 2
    head = torch.randn(dim, CLASSES, generator=generator) / dim**0.5

    def draw(count: int) -> torch.Tensor:
        classes = torch.randint(CLASSES, (count,), generator=generator)
        points = torch.randn(count, dim, generator=generator).add_(centres[classes])
        return points.relu_()

    pool = draw(size)
    return pool, draw(labeled), pool @ head


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def measure(
    method: str,
    size: int,
    dim: int,
    labeled: int,
    budget: int,
    threads: int | None,
    device: str,
) -> dict:
    """Run one method in this process; time it and its peak extra (host or GPU) memory."""
    if threads:
        torch.set_num_threads(threads)
    data = tuple(part.to(device) for part in synthetic(size, labeled, dim))
    METHODS[method](tuple(part[:64].clone() for part in data), 4)  # warm-up: load kernels
    gc.collect()
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current resident set
        baseline = _status("VmRSS")
    start = time.perf_counter()
    picks = METHODS[method](data, budget).tolist()  # tolist waits for the device
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else _status("VmHWM")
    return {"seconds": seconds, "extra": peak - baseline, "picks": picks}


def run(method: str, size: int, config: dict) -> dict:
    """``measure`` in a fresh interpreter."""
    job = {
        "method": method,
        "size": size,
        "dim": config["dim"],
        "labeled": config["labeled"],
        "budget": config["budget"],
        "threads": config["threads"],
        "device": config["device"],
    }
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(method: str, size: int, config: dict, pairs: int) -> tuple[str, dict[str, object]]:
    """``method`` against its naive version, alternating; returns the report line and row."""
    names = (f"{method} naive", method)
    results: dict[str, list[dict]] = {name: [] for name in names}

    def side(name: str) -> Callable[[], float]:
        def measured() -> float:
            results[name].append(run(name, size, config))
            return results[name][-1]["seconds"]

        return measured

    # Every run is a fresh process that warms up before it measures: no warm-up pair.
    naive_s, fral_s = rounds([side(name) for name in names], pairs, warm_up=False)
    naive, fast = (results[name] for name in names)
    for name in names:
        picks = [result["picks"] for result in results[name]]
        assert all(p == picks[0] for p in picks), f"{name}: runs picked different samples"
    seconds = ratio(naive_s, fral_s)
    memory = ratio(
        [max(result["extra"], 1) / MiB for result in naive],
        [max(result["extra"], 1) / MiB for result in fast],
    )
    same = int(np.sum(np.array(fast[0]["picks"]) == np.array(naive[0]["picks"])))
    line = (
        f"{method:<6}{seconds.b_median:>8.2f}{seconds.a_median:>9.2f}  {seconds!s:<22}"
        f"{memory.b_median:>9,.0f}{memory.a_median:>11,.0f}  {memory!s:<25}"
        f"{same}/{len(fast[0]['picks'])}"
    )
    row = {
        "method": method,
        "candidates": size,
        "fral s": seconds.b_median,
        "naive s": seconds.a_median,
        "time ratio naive / fral": str(seconds),
        "fral MiB": memory.b_median,
        "naive MiB": memory.a_median,
        "memory ratio naive / fral": str(memory),
        "same picks": f"{same}/{len(fast[0]['picks'])}",
    }
    return line, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument(
        "--large", action="store_true", help="also the 200,000-candidate case (--quick: 20,000)"
    )
    parser.add_argument("--pairs", type=int, default=5, help="measured pairs after a warm-up")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where to run (cpu, cuda)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
        return
    config = {**(QUICK if args.quick else FULL), "threads": args.threads, "device": args.device}
    if args.threads:
        torch.set_num_threads(args.threads)
    dim, budget, labeled = config["dim"], config["budget"], config["labeled"]
    print(
        f"selection benchmark: {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; d={dim}, {CLASSES} classes, |L|={labeled:,}, "
        f"B={budget:,}"
    )
    size = config["compare"]
    print(
        f"\n{size:,} candidates: fral vs naive full-matrix version, {args.pairs} alternating "
        "pairs (ratio naive / fral: median [min, max])"
    )
    print(
        f"{'method':<6}{'fral s':>8}{'naive s':>9}  {'time ratio':<22}"
        f"{'fral MiB':>9}{'naive MiB':>11}  {'memory ratio':<25}same picks"
    )
    rows = []
    for method in ("CSET", "BADGE"):
        line, row = compare(method, size, config, args.pairs)
        print(line, flush=True)
        rows.append(row)
    device = torch.device(args.device)
    write_results(f"selection-{device.type}", list(rows[0]), rows, device)
    if not args.large:
        return
    size = config["size"]
    inputs = size * dim * 4 / MiB
    print(f"\n{size:,} candidates (pool embeddings alone: {inputs:,.0f} MiB), one run each")
    print(f"{'method':<8}{'time (s)':>10}{'peak extra memory':>22}")
    large = []
    for method in ("CSET", "BADGE"):
        result = run(method, size, config)
        verdict = "ok" if result["extra"] <= 2 * 2**30 else "OVER the 2 GiB goal"
        print(
            f"{method:<8}{result['seconds']:>10.1f}{result['extra'] / MiB:>18,.0f} MiB  ({verdict})"
        )
        large.append(
            {
                "method": method,
                "candidates": size,
                "time s": result["seconds"],
                "peak extra MiB": result["extra"] / MiB,
            }
        )
    write_results(f"selection-large-{device.type}", list(large[0]), large, device)


if __name__ == "__main__":
    main()
