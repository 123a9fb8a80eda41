"""Shared bits of the benchmark scripts: timing and model choice."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from fral.models import MobileNetV2, SmallCNN


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run (seconds)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
