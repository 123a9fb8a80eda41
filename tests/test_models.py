"""Reference networks: shapes, stems and strides, options and their errors, a linear head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fral.models import MLP, MobileNetV2, ResNet18, SmallCNN, build_model
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


def strides_3x3(model: nn.Module) -> list[int]:
    return [
        m.stride[0] for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]


def test_mobilenetv2_default_is_still_the_cifar_variant() -> None:
    # Stem, then the depthwise convolutions of the 17 blocks (checkpoints rely on this layout).
    cifar = [1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert strides_3x3(MobileNetV2()) == cifar
    assert strides_3x3(MobileNetV2(stem="cifar", input_size=112)) == cifar
    assert strides_3x3(MobileNetV2(input_size=63)) == cifar
    imagenet = [2, 1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]  # Sandler et al. Table 2
    assert strides_3x3(MobileNetV2(input_size=64)) == imagenet
    assert strides_3x3(MobileNetV2(stem="imagenet")) == imagenet
    assert MobileNetV2(input_size=112).stem == "imagenet"


def test_resnet18_stems_and_names() -> None:
    cifar, imagenet = ResNet18(stem="cifar", width=0.125), ResNet18(input_size=112, width=0.125)
    assert (cifar.stem, imagenet.stem) == ("cifar", "imagenet")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    assert ResNet18(width=0.125).stem == ResNet18(input_size=63, width=0.125).stem == "cifar"
    assert ResNet18(input_size=64, width=0.125).stem == "imagenet"
    # torchvision's state_dict keys
    keys = set(imagenet.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys, key
    assert "layer1.0.downsample.0.weight" not in keys
    widths = [m.out_channels for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(widths)) == [8, 16, 32, 64]
    assert embeddings(cifar, torch.rand(3, 3, 32, 32)).shape == (3, 64)
    grey = ResNet18(num_classes=2, in_channels=1, width=0.125).eval()
    with torch.no_grad():
        assert grey(torch.rand(2, 1, 28, 28)).shape == (2, 2)


@pytest.mark.parametrize("factory", [ResNet18, MobileNetV2])
def test_bad_options_are_named(factory) -> None:
    with pytest.raises(ValueError, match="stem must be one of 'auto', 'cifar', 'imagenet'"):
        factory(stem="resnet")
    with pytest.raises(ValueError, match="stem must be one of"):
        factory(stem=None)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        factory(num_classes=0)
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        factory(num_classes=2.0)
    with pytest.raises(ValueError, match="in_channels must be >= 1"):
        factory(in_channels=0)
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        factory(input_size=0)
    with pytest.raises(TypeError, match="input_size must be an integer"):
        factory(input_size=(112, 112))
    with pytest.raises(ValueError, match="width"):
        factory(width=0.0)
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        factory(stem="cifar", input_size=-3)  # checked even where the stem is given


def test_build_model_resnet18_and_its_options() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=7, input_size=112, width=0.125)
    torch.manual_seed(0)
    same = ResNet18(num_classes=7, input_size=112, width=0.125)
    assert isinstance(model, ResNet18) and model.stem == "imagenet"
    for key, value in model.state_dict().items():
        assert torch.equal(value, same.state_dict()[key])
    assert build_model("mobilenetv2", input_size=112, width=0.25).stem == "imagenet"
    with pytest.raises(TypeError, match="resnet18 takes no option 'stages'; its options are"):
        build_model("resnet18", stages=3)
    with pytest.raises(ValueError, match="stem must be one of"):
        build_model("resnet18", stem="tiny")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build_model("resnet18", num_classes=-1)
    with pytest.raises(ValueError, match="unknown model"):
        build_model(["resnet18"])
