"""Shared bits of the benchmark scripts: timing, alternating comparisons and model choice.

A comparison on a noisy machine holds only if both sides see the same noise: ``alternate``
runs them in turn (A B A B ...) after a warm-up round and reports the median of the per-pair
ratios A / B with its min and max, so a burst of load lands on one pair instead of one side.

Every script writes what it measured to ``benchmarks/results/<name>.json`` (``write_results``):
the docs build turns those files into the tables of the benchmarks page, so no figure there is
typed by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from fral.models import MobileNetV2, SmallCNN


class Ratio(NamedTuple):
    """Per-pair ratios ``a / b``: their median, min and max, and each side's median."""

    median: float
    low: float
    high: float
    a_median: float
    b_median: float

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stopwatch(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """``fn`` made to return its own wall time in seconds (waiting for the device)."""

    def run() -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    return run


def rounds(
    sides: Sequence[Callable[[], float]], pairs: int, warm_up: bool = True
) -> list[list[float]]:
    """Run ``sides`` in turn (A B C A B C ...), a warm-up round then ``pairs`` measured rounds.

    Each side returns the figure it measured (seconds, bytes, ...); the result holds one list
    of ``pairs`` figures per side, in the order of ``sides``. ``warm_up=False`` is for sides
    that warm up on their own (a fresh process per run).
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    for side in sides if warm_up else ():
        side()
    figures: list[list[float]] = [[] for _ in sides]
    for _ in range(pairs):
        for side, kept in zip(sides, figures, strict=True):
            kept.append(side())
    return figures


def ratio(a: Sequence[float], b: Sequence[float]) -> Ratio:
    """The per-round ratios ``a[i] / b[i]`` summed up as a ``Ratio``."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return Ratio(
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statistics.median(a),
        statistics.median(b),
    )


def alternate(
    a: Callable[[], object], b: Callable[[], object], pairs: int, device: torch.device
) -> Ratio:
    """Time ``a`` and ``b`` in turn (A B A B ...) after a warm-up pair: ratio time(a) / time(b)."""
    times_a, times_b = rounds([stopwatch(a, device), stopwatch(b, device)], pairs)
    return ratio(times_a, times_b)


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run (seconds)."""
    clock = stopwatch(fn, device)
    clock()
    return statistics.median([clock() for _ in range(repeats)])


def bench_model(name: str, device: torch.device) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """An eval-mode reference model with trained-looking BatchNorm statistics, and its input."""
    torch.manual_seed(0)
    if name == "mobilenetv2":
        model, shape = MobileNetV2(num_classes=10, in_channels=3, width=0.5), (3, 32, 32)
    elif name == "smallcnn":
        model, shape = SmallCNN(num_classes=10, in_channels=1), (1, 28, 28)
    else:
        raise ValueError(f"unknown model {name!r}")
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, *shape))
    return model.eval().to(device), shape


RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """The machine in words: the accelerator or the CPU, threads, torch, and the load."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{_cpu_name()}, {os.cpu_count()} cores"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}{load}"
    )


def write_results(
    name: str,
    columns: Sequence[str],
    rows: Sequence[dict[str, Any]],
    device: torch.device,
    folder: Path = RESULTS,
) -> Path:
    """Write ``folder/<name>.json``: the command that ran, the date, the machine and the rows.

    ``rows`` holds one dict per measured case; ``columns`` names the keys to show, in order.
    The docs build renders the file as a table (``scripts/results_tables.py``).
    """
    missing = {column for row in rows for column in columns} - {k for row in rows for k in row}
    if missing:
        raise ValueError(f"columns {sorted(missing)} are in no row")
    record = {
        "command": " ".join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(device),
        "columns": list(columns),
        "rows": list(rows),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")
    return path
