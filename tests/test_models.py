"""Reference networks: shapes for 28 and 32 pixel inputs, options, and a linear head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fral.models import MLP, MobileNetV2, SmallCNN, build_model
from fral.predict import embeddings


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_mobilenetv2_shapes(channels: int, size: int, width: float) -> None:
    model = MobileNetV2(num_classes=7, in_channels=channels, width=width).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, size, size)).shape == (2, 7)
    assert isinstance(model.classifier, nn.Linear)
    assert embeddings(model, torch.rand(3, channels, size, size)).shape == (3, 1280)


def test_width_and_stages_scale_the_network() -> None:
    def size(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    assert size(MobileNetV2(width=0.5)) < size(MobileNetV2(width=1.0))
    shallow = MobileNetV2(in_channels=1, width=0.5, stages=3).eval()
    assert size(shallow) < size(MobileNetV2(in_channels=1, width=0.5))
    with torch.no_grad():
        assert shallow(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="width"):
        MobileNetV2(width=0)
    with pytest.raises(ValueError, match="stages"):
        MobileNetV2(stages=8)


def test_small_cnn_and_mlp() -> None:
    cnn = SmallCNN(num_classes=10, in_channels=1, channels=(8, 16)).eval()
    with torch.no_grad():
        assert cnn(torch.rand(4, 1, 28, 28)).shape == (4, 10)
        assert cnn(torch.rand(4, 1, 32, 32)).shape == (4, 10)
    mlp = MLP(in_features=85, num_classes=2, hidden=(32,)).eval()
    with torch.no_grad():
        assert mlp(torch.rand(5, 85)).shape == (5, 2)
    assert embeddings(mlp, torch.rand(5, 85)).shape == (5, 32)


def test_build_model_by_name() -> None:
    assert isinstance(build_model("smallcnn", channels=(4, 8)), SmallCNN)
    assert isinstance(build_model("mlp", in_features=3), MLP)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")
