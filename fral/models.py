"""Small reference networks for examples, tests and benchmarks (no torchvision, no weights).

- :class:`MobileNetV2`: the paper's backbone (Sandler et al. 2018), adapted to 28x28 and 32x32
  inputs the way CIFAR ports do (stride 1 in the stem and the first stages), with a width
  multiplier. Not pre-trained, as in the paper.
- :class:`SmallCNN`: two conv blocks and a linear head, for quick runs.
- :class:`MLP`: for tabular data such as UCI Adult.

Every model ends in an ``nn.Linear`` head whose input is the penultimate embedding used by
CSET and BADGE (:func:`fral.predict.embeddings` finds it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["MLP", "MODELS", "MobileNetV2", "SmallCNN", "build_model"]


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


# (expansion t, channels c, repeats n, stride s) per stage; strides for 28/32-pixel inputs.
_MOBILENET_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 for small images.

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

    Notes
    -----
    Input shape ``(N, in_channels, H, W)`` with H, W around 28-32; output logits
    ``(N, num_classes)``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        stages: int = 7,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if not 1 <= stages <= len(_MOBILENET_STAGES):
            raise ValueError(f"stages must lie in 1..{len(_MOBILENET_STAGES)}, got {stages}")
        channels = _divisible(32 * width)
        layers: list[nn.Module] = [_ConvBNReLU(in_channels, channels, stride=1)]
        for expansion, c, repeats, stride in _MOBILENET_STAGES[:stages]:
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
        features = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(features))


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
    "smallcnn": SmallCNN,
    "mlp": MLP,
}
"""The reference models by name, for :func:`build_model` and ``fral run --model``."""


def build_model(name: str, **options: object) -> nn.Module:
    """Build a reference model by name (``"mobilenetv2"``, ``"smallcnn"``, ``"mlp"``)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}") from None
    return factory(**options)
