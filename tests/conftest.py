"""Fixtures shared by the test files."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from tests.utils import TinyConvNet


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as (x in [0, 1] of shape (N, 1, 8, 8), y, group = y odd)."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    return x, y, (y % 2)


@pytest.fixture(scope="session")
def trained_net(digits) -> TinyConvNet:
    """A TinyConvNet trained for a few seconds on the digits (about 90% train accuracy)."""
    x, y, _ = digits
    torch.manual_seed(0)
    net = TinyConvNet(num_classes=10)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    net.train()
    for _ in range(15):
        for batch in torch.randperm(len(x)).split(128):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimiser.step()
    net.eval()
    return net


@pytest.fixture
def one_torch_thread():
    """One torch thread: tiny models run several times faster on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
