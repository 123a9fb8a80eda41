"""Selection time and peak extra memory of JIN, ENT, CSET and BADGE from 10^3 to 10^6 samples.

Run ``python benchmarks/bench_scaling.py`` (all four strategies at ``N`` = 1,000, 10,000,
100,000 and 1,000,000; three to five minutes on two cores) and
``python benchmarks/bench_scaling.py --plot-only`` to redraw ``docs/scaling.png`` from the
results file. ``--sizes`` and ``--strategies`` choose the cases, ``--out`` the results folder,
``--plot PNG`` draws the plot after measuring.

The goal: time linear in ``N`` (the slope of log10(time) against log10(N), fitted with
``numpy.polyfit``, near 1.0) and memory flat beyond the ``O(N)`` arrays the strategy keeps
per candidate.

**The pool.** ``N`` synthetic grey 8x8 uint8 images (64 bytes each, uniform noise) in a
``.npy`` file opened with ``np.load(mmap_mode="r")`` and wrapped in a
:class:`fral.datasets.UInt8Images`, so at every size the pool is Dataset-backed and read a
batch at a time (at 10^6 the file is 61 MiB; the same code path runs at 10^3). Every sample is
in group 0 and every strategy is called with ``group=0``, so all ``N`` samples are candidates.
CSET's labelled set is 200 further images; the budget is 100 and the batch 512 at every size.

**The models.** ``M_R`` and ``M_S`` are small MLPs (64 -> 64 -> 32 -> 10, ReLU; seeds 0 and
1), so that a million candidates take minutes, not hours, on two cores: the point is how the
cost grows with ``N``, and the network's cost per sample is the same at every size. JIN runs
its default attack (PGD-5 at 4/255 against ``M_R``); the embeddings of CSET and BADGE are the
32-dimensional input of the last layer.

**What is measured.** Each (strategy, ``N``) case runs in a fresh interpreter (its own
``--worker`` call), which writes the file, reads every page of it once (so that the mapped
file sits in the resident set before the measurement and is not counted), and warms up with
one selection on the first 1,024 samples (loads kernels, builds JIN's kept eval copies). Then:

- *time*: wall time of ``select`` on the whole pool; the first call, and, when it took under
  five seconds, the median of up to five calls (as many as fit in about ten seconds);
- *peak extra memory*: the rise of the process's peak resident set (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the first measured call) over its resident set then,
  less any rise of its file-backed resident pages (``RssFile``) during the call, so it is
  what the selection allocates (torch's CPU allocations included, which ``tracemalloc``
  does not see);
- *O(N) part*: ``N`` times the bytes per candidate that fral's code holds at the strategy's
  peak (``BYTES_PER_SAMPLE``, read from the code, each term named there: JIN's raw scores and
  their float64 z-scores; ENT's logits and the terms of the entropy; the embeddings of CSET
  and BADGE, and BADGE's logits, with the vectors of the greedy search; the candidate
  indices), and *rest* = peak minus that part: a batch, its activations and
  the attack's tensors; for CSET the block of distances to the labelled set, at most
  ``min(N x 200, 2^24)`` floats, and for CSET and BADGE the block of squared norms, at most
  ``2^24`` floats (these stop growing from a few hundred thousand candidates); and the
  allocator's share;
- *heap kept*: the rise over the call of the free memory inside glibc's heap
  (``mallinfo2().fordblks``): memory fral freed that glibc keeps (a batch's activations and
  inputs, temporaries of the scores) and the holes between blocks. It
  stays resident (it was written to), so where it is kept before the peak it is part of the
  peak: it is the allocator's share of "rest", and the part of it that grows with ``N``.
  "Fitted bytes / sample" is the slope of a straight-line fit of the peak against ``N``.

The subprocesses run with ``MALLOC_MMAP_THRESHOLD_=65536`` in their environment (printed):
without it glibc raises its threshold for serving large blocks with ``mmap`` as the program
frees them, and its heap grows with the number of batches read (see "Memory" in
``docs/own-data.md``). The fixed threshold does not stop the heap kept above: blocks below
it come from the heap, and so do larger ones wherever a freed hole fits them.
``--default-malloc`` measures with glibc's defaults, ``--mmap-threshold BYTES`` with another
threshold. Torch runs one thread by default (``--threads``), which keeps the figures steadier
on a shared machine.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, write_results
from torch import nn

from fral import BADGE, CSET, ENT, JIN, Pool
from fral.datasets import UInt8Images

MIB = 2**20
SIZES = (1_000, 10_000, 100_000, 1_000_000)
STRATEGIES = ("JIN", "ENT", "CSET", "BADGE")
BUDGET = 100
BATCH = 512
LABELED = 200
SHAPE = (1, 8, 8)
HIDDEN, EMBED, CLASSES = 64, 32, 10
WARM_UP = 1_024
LARGE = 10_000  # the second time slope: from this size up, past the fixed cost per call
MMAP_THRESHOLD = 65_536  # bytes: MALLOC_MMAP_THRESHOLD_ of the cases unless told otherwise
PLOT = Path(__file__).resolve().parents[1] / "docs" / "scaling.png"
NAME = "scaling-cpu"

# Bytes per candidate that fral's code holds at each strategy's peak (float32 = 4, float64 and
# int64 = 8; C = 10 classes, d = 32 embedding dimensions), read from the code. Every strategy
# holds the candidate indices (int64, 8) made from a boolean group mask (1).
BYTES_PER_SAMPLE = {
    # the two raw scores (2 x 4) and the first one's float32 z-score (4) while the second is
    # z-scored in float64 (fral.scores.zscore: a float64 copy, the centred copy and their
    # ratio to the spread, 3 x 8, then its float32 copy, 4)
    "JIN": 9 + 2 * 4 + 4 + 3 * 8 + 4,
    # the logits (4 C), then in the entropy the log-softmax, its exp and their product (3 x 4 C)
    "ENT": 9 + 4 * CLASSES + 3 * 4 * CLASSES,
    # the embeddings (4 d, written batch by batch into one tensor), then in the k-center
    # search three float32 vectors next to them (distances, norms and a step's distances, 3 x 4)
    "CSET": 9 + 4 * EMBED + 3 * 4,
    # the embeddings and logits (4 (d + C), written batch by batch into one tensor each), then
    # in k-means++ the gradient scale (4 C), seven float32 vectors (7 x 4), a uint8 mask (1)
    # and the float64 cumulative D^2 (8)
    "BADGE": 9 + 4 * (EMBED + CLASSES) + 4 * CLASSES + 7 * 4 + 1 + 8,
}


def mlp(seed: int) -> nn.Module:
    """The benchmark's model: ``64 -> 64 -> 32 -> 10`` with ReLUs, in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(SHAPE)), HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, EMBED),
        nn.ReLU(),
        nn.Linear(EMBED, CLASSES),
    ).eval()


def strategy(name: str) -> Any:
    """A fresh, seeded instance of strategy ``name``."""
    kinds = {"JIN": JIN, "ENT": ENT, "CSET": CSET, "BADGE": BADGE}
    return kinds[name](BUDGET, batch_size=BATCH, random_state=0)


def write_images(path: Path, size: int, seed: int) -> np.ndarray:
    """``size`` uniform-noise uint8 images of ``SHAPE`` into ``path`` (``.npy``), opened
    back read-only as a memory map."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, *SHAPE))
    rng = np.random.default_rng(seed)
    for start in range(0, size, 100_000):
        stop = min(size, start + 100_000)
        array[start:stop] = rng.integers(0, 256, size=(stop - start, *SHAPE), dtype=np.uint8)
    array.flush()
    del array
    return np.load(path, mmap_mode="r")


_MALLINFO2 = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``."""

    _fields_ = [(field, ctypes.c_size_t) for field in _MALLINFO2.split(" ")]


def heap_free() -> int | None:
    """Bytes free inside glibc's heap (``mallinfo2().fordblks``): memory the program freed
    that glibc keeps (resident where it was touched); ``None`` without glibc 2.33+."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _MallInfo2
        return int(libc.mallinfo2().fordblks)
    except (OSError, AttributeError):
        return None


def _status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def measure(name: str, size: int, threads: int) -> dict[str, Any]:
    """One case in this process: time and peak extra memory of ``name``'s selection."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        array = write_images(Path(folder) / "pool.npy", size, seed=0)
        for start in range(0, size, 2**20):  # read every page once: the map is resident
            int(array[start : start + 2**20].max())
        pool = Pool(UInt8Images(array), torch.zeros(size, dtype=torch.int64))
        rng = np.random.default_rng(1)
        labeled_images = rng.integers(0, 256, size=(LABELED, *SHAPE), dtype=np.uint8)
        labeled = Pool(UInt8Images(labeled_images), torch.zeros(LABELED, dtype=torch.int64))
        model_r, model_s = mlp(0), mlp(1)
        chosen = strategy(name)
        options: dict[str, Any] = {"group": 0}
        if name == "JIN":
            options["model_s"] = model_s
        if name == "CSET":
            options["labeled"] = labeled
        chosen.select(model_r, pool=pool.subset(torch.arange(min(size, WARM_UP))), **options)
        gc.collect()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current resident set
        resident, files, free = _status("VmRSS"), _status("RssFile"), heap_free()
        start = time.perf_counter()
        picks = chosen.select(model_r, pool=pool, **options)
        first = time.perf_counter() - start
        peak, file_rise = _status("VmHWM"), _status("RssFile") - files
        kept = None if free is None else heap_free() - free
        times = [first]
        while first < 5 and len(times) < 5 and sum(times) + first < 10:
            start = time.perf_counter()
            chosen.select(model_r, pool=pool, **options)
            times.append(time.perf_counter() - start)
        del pool, array
    return {
        "seconds": statistics.median(times),
        "first": first,
        "calls": len(times),
        "extra": peak - resident - max(file_rise, 0),
        "heap_kept": kept,
        "file_rise": file_rise,
        "picks": len(picks),
        "malloc": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "unique": len(set(picks.tolist())),
    }


def run_case(name: str, size: int, threads: int, threshold: int | None, timeout: float) -> dict:
    """``measure`` in a fresh interpreter, with ``MALLOC_MMAP_THRESHOLD_=threshold`` in its
    environment (``None``: glibc's default, whatever the caller's environment says)."""
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
    job = json.dumps({"name": name, "size": size, "threads": threads})
    out = subprocess.run(
        [sys.executable, __file__, "--worker", job],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the case {name} at N={size} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(sizes: list[int], values: list[float]) -> float:
    """The least-squares slope of ``log10(values)`` against ``log10(sizes)``."""
    return float(np.polyfit(np.log10(sizes), np.log10(values), 1)[0])


def bytes_fit(sizes: list[int], values: list[float]) -> float:
    """The least-squares slope of ``values`` (bytes) against ``sizes``: bytes per sample."""
    return float(np.polyfit(np.asarray(sizes, float), np.asarray(values, float), 1)[0])


def plot(results: Path, out: Path = PLOT) -> Path:
    """Draw time and peak extra memory against ``N`` (log-log, one line per strategy) from a
    results file written by this script, into ``out`` (PNG). Needs matplotlib
    (``pip install 'fral-learn[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plotting needs matplotlib: pip install 'fral-learn[plot]' (or matplotlib)"
        ) from error
    record = json.loads(Path(results).read_text())
    lines: dict[str, dict[str, list[float]]] = {}
    for row in record["rows"]:
        if not isinstance(row.get("seconds"), (int, float)):
            continue  # a case that was not run
        line = lines.setdefault(row["strategy"], {"N": [], "seconds": [], "MiB": [], "O(N)": []})
        line["N"].append(row["N"])
        line["seconds"].append(row["seconds"])
        line["MiB"].append(max(row["peak extra MiB"], 1e-2))
        line["O(N)"].append(row["O(N) part MiB"])
    if not lines:
        raise ValueError(f"{results} holds no measured case to plot")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for index, (name, line) in enumerate(lines.items()):
        colour = f"C{index}"
        left.loglog(line["N"], line["seconds"], "o-", color=colour, label=name)
        right.loglog(line["N"], line["MiB"], "o-", color=colour, label=f"{name} peak extra")
        right.loglog(line["N"], line["O(N)"], ":", color=colour, label=f"{name} O(N) part")
    all_sizes = sorted({n for line in lines.values() for n in line["N"]})
    low = min(s for line in lines.values() for s in line["seconds"])
    left.loglog(
        all_sizes,
        [low * n / all_sizes[0] for n in all_sizes],
        "--",
        color="grey",
        label="slope 1",
    )
    left.set(xlabel="pool size N", ylabel="selection time (s)", title="Time")
    right.set(xlabel="pool size N", ylabel="MiB", title="Peak extra memory")
    left.legend(fontsize=8)
    right.legend(fontsize=7, ncol=2)
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"{record['command']}  ({record['date']})", fontsize=8)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(f"wrote {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="pool sizes")
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES, metavar="NAME"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="run the cases with glibc's default malloc settings (no MALLOC_MMAP_THRESHOLD_)",
    )
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=MMAP_THRESHOLD,
        help=f"MALLOC_MMAP_THRESHOLD_ of the cases in bytes (default {MMAP_THRESHOLD})",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=360,
        help="skip a case whose time, extrapolated linearly from the previous size, is above "
        "this (and stop a case at 2.5 times it plus a minute)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--plot", type=Path, help="draw the plot into this PNG afterwards")
    parser.add_argument(
        "--plot-only", action="store_true", help=f"only draw the plot (default {PLOT})"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
        return
    if args.plot_only:
        plot(args.out / f"{NAME}.json", args.plot or PLOT)
        return
    if any(size < 1 for size in args.sizes):
        parser.error("--sizes must be positive")
    sizes = sorted(set(args.sizes))
    torch.set_num_threads(args.threads)
    threshold = None if args.default_malloc else args.mmap_threshold
    malloc = "glibc defaults" if threshold is None else f"MALLOC_MMAP_THRESHOLD_={threshold}"
    print(
        f"scaling benchmark: CPU, torch {torch.__version__}, {args.threads} thread(s), "
        f"malloc: {malloc}; MLP 64-64-32-10 on memory-mapped uint8 8x8 images, "
        f"budget {BUDGET}, batch {BATCH}, CSET's labelled set {LABELED}"
    )
    header = (
        f"{'strategy':<9}{'N':>10}{'seconds':>10}{'s / 1k':>9}{'calls':>6}"
        f"{'peak extra MiB':>16}{'O(N) part MiB':>15}{'rest MiB':>10}{'heap kept MiB':>15}"
    )
    rows: list[dict[str, Any]] = []
    for name in args.strategies:
        print(f"\n{name}: O(N) part = N x {BYTES_PER_SAMPLE[name]} bytes")
        print(header)
        measured: list[tuple[int, dict]] = []
        last_row: dict[str, Any] = {}
        for size in sizes:
            if measured:
                last_size, last = measured[-1]
                predicted = last["first"] * size / last_size
                if predicted > args.max_seconds:
                    print(
                        f"{name:<9}{size:>10,}  not run: about {predicted:,.0f} s predicted "
                        f"(linear from N={last_size:,}), above --max-seconds {args.max_seconds:g}"
                    )
                    rows.append(
                        {"strategy": name, "N": size, "seconds": f"not run (~{predicted:,.0f} s)"}
                    )
                    continue
            result = run_case(
                name, size, args.threads, threshold, timeout=2.5 * args.max_seconds + 60
            )
            if result["picks"] != min(BUDGET, size) or result["unique"] != result["picks"]:
                raise RuntimeError(f"{name} at N={size} picked {result}")
            if result["malloc"] != (None if threshold is None else str(threshold)):
                raise RuntimeError(f"the case ran with MALLOC_MMAP_THRESHOLD_={result['malloc']}")
            measured.append((size, result))
            extra = result["extra"] / MIB
            part = size * BYTES_PER_SAMPLE[name] / MIB
            kept = None if result["heap_kept"] is None else result["heap_kept"] / MIB
            print(
                f"{name:<9}{size:>10,}{result['seconds']:>10.3f}"
                f"{1000 * result['seconds'] / size:>9.4f}{result['calls']:>6}"
                f"{extra:>16.1f}{part:>15.1f}{extra - part:>10.1f}"
                + ("" if kept is None else f"{kept:>15.1f}"),
                flush=True,
            )
            last_row = {
                "strategy": name,
                "N": size,
                "seconds": round(result["seconds"], 6),
                "s per 1,000": round(1000 * result["seconds"] / size, 7),
                "peak extra MiB": round(extra, 2),
                "O(N) part MiB": round(part, 2),
                "rest MiB": round(extra - part, 2),
            }
            if kept is not None:
                last_row["heap kept MiB"] = round(kept, 2)
            rows.append(last_row)
        if len(measured) >= 2:
            ns = [size for size, _ in measured]
            time_slope = slope(ns, [result["seconds"] for _, result in measured])
            per_sample = bytes_fit(ns, [result["extra"] for _, result in measured])
            last_row["time slope (log-log)"] = round(time_slope, 3)
            print(f"{name}: log-log slope of time against N {time_slope:.3f} (goal ~1.0)", end="")
            large = [(size, result) for size, result in measured if size >= LARGE]
            if len(large) >= 2:
                large_slope = slope([n for n, _ in large], [r["seconds"] for _, r in large])
                last_row[f"slope from {LARGE:,}"] = round(large_slope, 3)
                print(f", {large_slope:.3f} from N={LARGE:,}", end="")
            last_row["fitted bytes / sample"] = round(per_sample, 1)
            print(
                f"; peak extra memory fitted linearly in N: {per_sample:,.1f} bytes per sample "
                f"(O(N) part: {BYTES_PER_SAMPLE[name]})"
            )
    columns = [
        "strategy",
        "N",
        "seconds",
        "s per 1,000",
        "peak extra MiB",
        "O(N) part MiB",
        "rest MiB",
        "heap kept MiB",
        "time slope (log-log)",
        f"slope from {LARGE:,}",
        "fitted bytes / sample",
    ]
    columns = [column for column in columns if any(column in row for row in rows)]
    path = write_results(NAME, columns, rows, torch.device("cpu"), folder=args.out)
    if args.plot:
        plot(path, args.plot)


if __name__ == "__main__":
    main()
