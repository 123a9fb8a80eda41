"""The eval copies behind every call: correct after the model changes, never stale, released."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from fral import _modules
from fral._modules import OptimizationWarning, clear_cache, evaluation_view
from fral.models import MobileNetV2
from tests.utils import make_net


def eval_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    flags = [m.training for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(x)
    for module, flag in zip(model.modules(), flags, strict=True):
        module.training = flag
    return out


def view_output(model: nn.Module, x: torch.Tensor, **options) -> torch.Tensor:
    with evaluation_view(model, **options) as view, torch.no_grad():
        return view(x)


def test_batchnorm_is_folded_and_outputs_match() -> None:
    model = MobileNetV2(10, 1, width=0.25, stages=3)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 1, 28, 28))  # non-trivial running statistics
    x = torch.rand(4, 1, 28, 28)
    with evaluation_view(model) as view:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in view.module.modules())
        assert view.channels_last
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)


def test_the_kept_copy_follows_every_change_of_the_model() -> None:
    model, x = make_net(train=True), torch.rand(6, 1, 8, 8)
    first = view_output(model, x)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.rand(6, 1, 8, 8)).sum().backward()
    optimiser.step()  # weights and (train-mode forward) BatchNorm statistics change
    assert not torch.allclose(view_output(model, x), first)
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)
    with torch.no_grad():
        model.head.weight.data.mul_(3.0)  # .data changes bump no version counter
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)
    model.head = nn.Linear(32, 4)  # a new submodule: the copy is rebuilt
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)
    model.features[3].stride = (1, 1)  # a setting read by forward
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)


def test_a_flag_read_in_forward_rebuilds_the_copy() -> None:
    model = MobileNetV2(10, 1, width=0.25, stages=2)
    block = next(m for m in model.modules() if hasattr(m, "residual") and m.residual)
    x = torch.rand(2, 1, 28, 28)
    view_output(model, x)
    block.residual = False
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-5)


def test_nested_views_and_devices_get_their_own_copy() -> None:
    model, x = make_net(), torch.rand(3, 1, 8, 8)
    with evaluation_view(model) as outer, evaluation_view(model) as inner:
        assert outer.module is not inner.module
        with torch.no_grad():
            assert torch.allclose(outer(x), inner(x))


def test_copies_are_released_with_the_model_and_on_request() -> None:
    model = make_net()
    view_output(model, torch.rand(2, 1, 8, 8))
    assert model in _modules._COPIES
    clear_cache()
    assert model not in _modules._COPIES
    view_output(model, torch.rand(2, 1, 8, 8))
    count = len(_modules._COPIES)
    del model
    gc.collect()
    assert len(_modules._COPIES) == count - 1


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so nothing is folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm, self.head = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if h.mean() > 0:
            h = h.relu()
        return self.head(h.mean((2, 3)))


class Uncopyable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def __deepcopy__(self, memo):
        raise TypeError("holds a handle that cannot be copied")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_models_that_cannot_be_traced_or_copied_still_work() -> None:
    model, x = Untraceable(), torch.rand(3, 1, 6, 6)
    assert torch.allclose(view_output(model, x), eval_output(model, x), atol=1e-6)
    plain = Uncopyable().train()
    with (
        pytest.warns(OptimizationWarning, match="cannot be copied"),
        evaluation_view(plain) as view,
    ):
        assert view.module is plain and not plain.training
    assert plain.training
    assert torch.allclose(
        view_output(plain, torch.ones(2, 4)), eval_output(plain, torch.ones(2, 4))
    )
