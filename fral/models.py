"""Reference networks for examples, tests, benchmarks and reproductions (no torchvision).

- :class:`MobileNetV2`: the paper's backbone (Sandler et al. 2018), with a width multiplier.
  For small inputs (28-32 px, CINIC-10) it keeps stride 1 in the stem and the first stages,
  as CIFAR ports do; for larger ones (112 px, UTKFace and HAM-10000) it has the original
  ImageNet strides. Not pre-trained, as in the paper.
- :class:`ResNet18`: the paper's second backbone (He et al. 2016, Table 4), with the CIFAR
  stem for small inputs and the ImageNet stem for larger ones, and a width multiplier.
- :class:`SmallCNN`: two conv blocks and a linear head, for quick runs.
- :class:`MLP`: for tabular data such as UCI Adult.

Every model ends in an ``nn.Linear`` head whose input is the penultimate embedding used by
CSET and BADGE (:func:`fral.predict.embeddings` finds it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from fral.protocol import check_int, check_real

__all__ = ["MLP", "MODELS", "MobileNetV2", "ResNet18", "SmallCNN", "build_model", "resolve_stem"]


def _divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            _ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


STEMS = ("auto", "cifar", "imagenet")
"""The stems of :class:`MobileNetV2` and :class:`ResNet18`; ``"auto"`` picks by input size."""

SMALL_INPUT = 64
"""``stem="auto"`` takes the CIFAR stem below this many pixels (or without ``input_size``)."""


def resolve_stem(stem: object, input_size: object = None) -> str:
    """The stem ``"cifar"`` or ``"imagenet"`` that ``stem`` and ``input_size`` stand for.

    Parameters
    ----------
    stem : {"auto", "cifar", "imagenet"}
        ``"auto"`` takes ``"cifar"`` when ``input_size`` is None or below
        :data:`SMALL_INPUT` (64) pixels, ``"imagenet"`` from 64 pixels up.
    input_size : int, optional
        Height (= width) of the input images in pixels, e.g. 32 or 112. Only ``"auto"``
        reads it; any size runs through either stem (the networks pool adaptively).

    Returns
    -------
    str
        ``"cifar"`` or ``"imagenet"``.
    """
    if not isinstance(stem, str) or stem not in STEMS:
        raise ValueError(
            f"stem must be one of {', '.join(map(repr, STEMS))}, got {stem!r}; 'auto' picks "
            f"'cifar' below {SMALL_INPUT} pixels of input_size and 'imagenet' from there up"
        )
    if input_size is not None:
        check_int(input_size, "input_size")
    if stem != "auto":
        return stem
    return "cifar" if input_size is None or input_size < SMALL_INPUT else "imagenet"


# (expansion t, channels c, repeats n, stride s) per stage, Sandler et al. 2018 Table 2; the
# CIFAR stem keeps stride 1 in the second stage (and in the stem), as CIFAR ports do.
_MOBILENET_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) for 28-32 px or larger (e.g. 112 px) images.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 3
        1 for greyscale digits.
    width : float, default 1.0
        Width multiplier on every layer's channels (0.25-0.5 keeps CPU runs short).
    stages : int, default 7
        How many of the seven inverted-residual stages to keep (fewer: a shallower net).
    dropout : float, default 0.2
        Dropout before the classifier.
    stem : {"auto", "cifar", "imagenet"}, default "auto"
        ``"cifar"``: stride 1 in the stem convolution and in the second stage (24 channels),
        the CIFAR ports' variant: the features are downsampled 8 times (32 px -> 4x4).
        ``"imagenet"``: the original strides (2 in both), downsampled 32 times
        (112 px -> 4x4, 224 px -> 7x7). ``"auto"`` takes ``"cifar"`` when ``input_size`` is
        None or below 64 pixels, ``"imagenet"`` otherwise (see :func:`resolve_stem`); so
        ``MobileNetV2()`` builds the CIFAR variant, as it always has.
    input_size : int, optional
        Height (= width) of the inputs in pixels; read by ``stem="auto"`` only.

    Notes
    -----
    Input shape ``(N, in_channels, H, W)``, any H, W (adaptive average pooling); output logits
    ``(N, num_classes)``. The embedding (the classifier's input) has
    ``_divisible(1280 * max(1, width))`` features (1280 at width <= 1).

    With ``stem="imagenet"`` and ``stages=7`` the layers, their order and their parameter
    count are those of torchvision's ``mobilenet_v2`` (3,504,872 parameters for 1000 classes
    and 3 input channels; torchvision's initialisation too), under other names. With
    ``stem="cifar"`` only the two strides differ. ``stages < 7`` is a fral addition: the last
    1x1 convolution then has ``4 *`` the last stage's channels.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        stages: int = 7,
        dropout: float = 0.2,
        *,
        stem: str = "auto",
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        check_real(width, "width", 0.0, low_open=True)
        check_real(dropout, "dropout", 0.0, 1.0)
        check_int(stages, "stages", 1)
        if stages > len(_MOBILENET_STAGES):
            raise ValueError(f"stages must lie in 1..{len(_MOBILENET_STAGES)}, got {stages}")
        self.stem = resolve_stem(stem, input_size)
        small = self.stem == "cifar"
        channels = _divisible(32 * width)
        layers: list[nn.Module] = [_ConvBNReLU(in_channels, channels, stride=1 if small else 2)]
        for index, (expansion, c, repeats, stride) in enumerate(_MOBILENET_STAGES[:stages]):
            stride = 1 if small and index == 1 else stride
            out = _divisible(c * width)
            for i in range(repeats):
                layers.append(_InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
                channels = out
        last = _divisible(1280 * max(1.0, width)) if stages == len(_MOBILENET_STAGES) else 4 * out
        layers.append(_ConvBNReLU(channels, last, kernel=1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, in_channels, H, W)``."""
        features = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(features))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (1x1 conv-BN where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet18 (He et al. 2016): BasicBlocks [2, 2, 2, 2], widths 64-128-256-512.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 3
    stem : {"auto", "cifar", "imagenet"}, default "auto"
        ``"cifar"``: a 3x3 convolution with stride 1 and no max-pool, as in TRADES' and most
        adversarial-training code (and kuangliu's pytorch-cifar); the features are
        downsampled 8 times (32 px -> 4x4 before pooling). ``"imagenet"``: torchvision's
        7x7 convolution with stride 2 (padding 3) and a 3x3 max-pool with stride 2
        (padding 1); downsampled 32 times (112 px -> 4x4, 224 px -> 7x7). ``"auto"`` takes
        ``"cifar"`` when ``input_size`` is None or below 64 pixels, ``"imagenet"`` otherwise
        (see :func:`resolve_stem`).
    input_size : int, optional
        Height (= width) of the inputs in pixels (32 for CINIC-10, 112 for UTKFace and
        HAM-10000 in the paper); read by ``stem="auto"`` only.
    width : float, default 1.0
        Multiplier on the channel widths: ``round(64 * width)``, ... ``round(512 * width)``
        (at least 1). 0.125-0.25 makes a small net for tests and quick CPU runs.

    Notes
    -----
    Input shape ``(N, in_channels, H, W)``, any H, W (adaptive average pooling); output logits
    ``(N, num_classes)``; the embedding (the input of the head ``fc``) has
    ``round(512 * width)`` features.

    Parameter counts at width 1: 11,173,962 with the CIFAR stem, 3 input channels and 10
    classes (as kuangliu's ResNet18); 11,689,512 with the ImageNet stem and 1000 classes (as
    torchvision's ``resnet18``). With the ImageNet stem the layers, their names (``conv1``,
    ``bn1``, ``layer1`` .. ``layer4``, ``fc``, ``downsample``) and so the ``state_dict`` keys
    are torchvision's. How it differs from torchvision's ``resnet18``: the stem choice, the
    ``width`` multiplier, and no pre-trained weights (the paper trains from scratch). The
    initialisation is torchvision's: ``kaiming_normal_`` (``fan_out``, ReLU gain) for the
    convolutions, BatchNorm weight 1 and bias 0, PyTorch's default for ``fc``. The paper does
    not say which stem its ResNet18 used; these defaults follow the common practice of
    each input size.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        stem: str = "auto",
        input_size: int | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_int(num_classes, "num_classes")
        check_int(in_channels, "in_channels")
        check_real(width, "width", 0.0, low_open=True)
        self.stem = resolve_stem(stem, input_size)
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        if self.stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages = []
        channels = widths[0]
        for index, out in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(_BasicBlock(channels, out, stride), _BasicBlock(out, out, 1))
            )
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, in_channels, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU-pool blocks and a linear head.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    channels : (int, int), default (32, 64)
    dropout : float, default 0.1

    Notes
    -----
    Input ``(N, in_channels, H, W)``; output ``(N, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1, bias=False),
            nn.BatchNorm2d(second),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(second * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


class MLP(nn.Module):
    """Multi-layer perceptron for tabular features.

    Parameters
    ----------
    in_features : int
    num_classes : int, default 2
    hidden : sequence of int, default (128, 64)
    dropout : float, default 0.1

    Notes
    -----
    Input ``(N, in_features)``; output ``(N, num_classes)``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = 2,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(inplace=True)]
            width = size
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x.flatten(1))))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mobilenetv2": MobileNetV2,
    "resnet18": ResNet18,
    "smallcnn": SmallCNN,
    "mlp": MLP,
}
"""The reference models by name, for :func:`build_model` and ``fral run --model``."""


def build_model(name: str, **options: object) -> nn.Module:
    """Build a reference model by name.

    Parameters
    ----------
    name : {"mobilenetv2", "resnet18", "smallcnn", "mlp"}
    **options
        Keyword arguments of the model's class, e.g. ``build_model("resnet18", num_classes=4,
        input_size=112)`` (:class:`ResNet18`) or ``build_model("mobilenetv2", width=0.5,
        stem="cifar")`` (:class:`MobileNetV2`).

    Returns
    -------
    nn.Module
        A freshly initialised model (seed it with ``torch.manual_seed``).
    """
    try:
        factory = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise TypeError(
            f"{name} takes no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(parameters)}"
        )
    return factory(**options)
