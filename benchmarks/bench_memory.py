"""Peak extra memory of ``JIN.select`` on a large Dataset-backed pool of uint8 images (CPU).

Run ``python benchmarks/bench_memory.py`` (the default: 1,000,000 images of 3x32x32, a
2.9 GiB memory-mapped ``.npy`` written to ``--folder`` first, then one JIN selection over
all of them; about 10-20 minutes on two cores) or ``--size 100000`` for a short run. Goal:
under 1 GiB of memory beyond the two models and one batch.

What is measured: the pool is ``fral.datasets.UInt8Images(np.load(path, mmap_mode="r"))``
wrapped in a :class:`fral.Pool`, so the images stay in the file and each batch is read and
converted to float32 when it is scored. The figure is the peak of the process's *anonymous*
resident memory (``RssAnon`` in ``/proc/self/status``, sampled every 2 ms by a thread) during
the ``select`` call, minus its value just before. Anonymous memory is what the selection
allocates (scores, logits, batches, the attack's tensors); the pages of the memory-mapped
file that the kernel keeps cached are file-backed, shared and dropped under pressure, so they
are not counted (the peak of the whole resident set, ``VmHWM``, is printed too for
reference, and includes them). By default glibc's heap fragments under the per-batch
buffers, so the figure grows slowly with the candidates scored; run it with
``MALLOC_MMAP_THRESHOLD_=65536`` in the environment to see it flat. The models are a small
conv net (they are the same size with any pool, so they are not the point); the batch is
``--batch-size`` images.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_results
from torch import nn

from fral import JIN, Pool
from fral.datasets import UInt8Images

MIB = 1024**2


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``RssAnon``, ``VmHWM``...) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakSampler:
    """The peak of a ``/proc/self/status`` field, sampled in a thread while active."""

    def __init__(self, field: str, interval: float = 0.002) -> None:
        self.field, self.interval = field, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_kib(self.field))
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = status_kib(self.field)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kib(self.field))


def small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return net.eval()


def write_images(path: Path, size: int, seed: int) -> None:
    """``size`` random 3x32x32 uint8 images into a ``.npy`` file, 50,000 at a time."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(size, 3, 32, 32))
    rng = np.random.default_rng(seed)
    for start in range(0, size, 50_000):
        stop = min(size, start + 50_000)
        array[start:stop] = rng.integers(0, 256, size=(stop - start, 3, 32, 32), dtype=np.uint8)
    array.flush()
    del array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="pool size")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--folder", default=None, help="where the .npy goes (default: a temp dir)")
    parser.add_argument("--all-groups", action="store_true", help="score every candidate")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "images.npy"
        start = time.perf_counter()
        write_images(path, args.size, seed=0)
        print(
            f"wrote {args.size:,} images of 3x32x32 uint8 ({path.stat().st_size / MIB:,.0f} MiB) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        images = UInt8Images(np.load(path, mmap_mode="r"))
        groups = torch.from_numpy(np.random.default_rng(1).integers(0, 2, args.size))
        pool = Pool(images, groups)
        model_r, model_s = small_net(0), small_net(1)
        strategy = JIN(args.budget, batch_size=args.batch_size, random_state=0)
        # group=0: JIN's draw from one group (the worst group, in a run) scores that group's
        # candidates; --all-groups scores the whole pool (no validation set is involved).
        group = None if args.all_groups else 0
        # a first small call builds the eval copies (kept per model), as any real run does
        warm = pool.subset(torch.arange(2 * args.batch_size))
        strategy.select(model_r, model_s, warm, group=group)
        model_bytes = sum(p.numel() * p.element_size() for p in model_r.parameters()) * 2
        batch_bytes = args.batch_size * 3 * 32 * 32 * 4
        before = status_kib("RssAnon")
        start = time.perf_counter()
        with PeakSampler("RssAnon") as anonymous:
            picks = strategy.select(model_r, model_s, pool, group=group)
        seconds = time.perf_counter() - start
        extra = (anonymous.peak - before) / 1024
        scored = args.size if group is None else int((groups == group).sum())
        print(
            f"JIN.select on {args.size:,} samples ({scored:,} candidates scored): "
            f"{picks.numel()} picks in {seconds:.0f} s"
        )
        print(f"  peak extra anonymous memory: {extra:,.0f} MiB (goal < 1024 MiB)")
        print(
            f"  for scale: models {model_bytes / MIB:.2f} MiB, one float32 batch "
            f"{batch_bytes / MIB:.1f} MiB, the pool as float32 "
            f"{args.size * 3 * 32 * 32 * 4 / MIB:,.0f} MiB"
        )
        hwm = status_kib("VmHWM") / 1024
        print(f"  peak resident set incl. cached file pages (VmHWM): {hwm:,.0f} MiB")
        print(
            f"  {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        print("PASS" if extra < 1024 else "FAIL: above the 1 GiB goal")
        row = {
            "pool (uint8 3x32x32, memory-mapped)": args.size,
            "candidates scored": scored,
            "batch": args.batch_size,
            "seconds": round(seconds, 1),
            "peak extra anonymous memory (MiB)": round(extra, 1),
            "the pool as float32 (MiB)": round(args.size * 3 * 32 * 32 * 4 / MIB),
            "goal (MiB)": 1024,
        }
        write_results("memory-cpu", list(row), [row], torch.device("cpu"))


if __name__ == "__main__":
    main()
