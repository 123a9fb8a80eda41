"""Shared test helpers: small models with BatchNorm and Dropout, a model-state snapshot, and
a rank's life in a gloo group for the distributed test workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def run_rank(rank: int, world_size: int, port: int, work: Callable[[], Any]) -> None:
    """Join a gloo group on the loopback address as ``rank`` (one torch thread), run
    ``work``, then leave: a barrier last, as ``fral run`` does (see
    ``fral.cli._torchrun_group``), and the group destroyed whatever happened."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        work()
        dist.barrier()
    finally:
        dist.destroy_process_group()


#: ``fral run`` options for the shortest run: one round of one epoch each, a 5% budget.
ONE_EPOCH_RUN = [
    "--rounds",
    "1",
    "--epochs",
    "1",
    "--finetune-epochs",
    "1",
    "--standard-epochs",
    "1",
    "--budget-fraction",
    "0.05",
]


class TinyConvNet(nn.Module):
    """Conv-BN-ReLU twice, Dropout, Linear head: every kind of state fral must leave alone."""

    def __init__(self, num_classes: int = 4, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def make_net(
    seed: int = 0, num_classes: int = 4, in_channels: int = 1, size: int = 8, train: bool = False
) -> TinyConvNet:
    """A TinyConvNet with non-trivial BatchNorm statistics and populated ``.grad``."""
    torch.manual_seed(seed)
    net = TinyConvNet(num_classes, in_channels)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, in_channels, size, size) * 2)
    loss = net(torch.rand(4, in_channels, size, size)).square().mean()
    loss.backward()
    net.train(train)
    return net


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything the library promises not to change."""
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    """Fail if ``model`` differs from ``before`` in mode, buffers, parameters, flags or grads."""
    after = snapshot(model)
    assert after["training"] == before["training"], "train/eval flags changed"
    assert after["requires_grad"] == before["requires_grad"], "requires_grad flags changed"
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), f"{key} changed"
    for i, (a, b) in enumerate(zip(after["grad"], before["grad"], strict=True)):
        assert (a is None) == (b is None), f"grad {i} appeared or vanished"
        if a is not None:
            assert torch.equal(a, b), f"grad {i} changed"
