"""A zoo of ordinary user models: the patterns real training code is full of.

Each entry builds a model (with non-trivial BatchNorm statistics and populated ``.grad`` where it
has them) and a batch of inputs it takes. fral's optimised evaluation must give these models'
own eval-mode answers, or refuse clearly; none of them may come back changed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, prune

NUM_CLASSES = 4


class ViewFlatten(nn.Module):
    """Conv features flattened with ``.view`` (fails on non-contiguous, channels_last tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return self.fc(h.view(h.size(0), -1))


class TensorConstants(nn.Module):
    """Normalisation constants held as plain tensor attributes (not buffers)."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = torch.tensor([0.4]).view(1, 1, 1, 1)
        self.std = torch.tensor([0.3]).view(1, 1, 1, 1)
        self.conv, self.bn = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.head = nn.Linear(6, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv((x - self.mean) / self.std)))
        return self.head(h.mean((2, 3)))


class TiedWeights(nn.Module):
    """Two layers sharing one weight, and one module reachable under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Linear(64, 16)
        self.mix1, self.mix2 = nn.Linear(16, 16), nn.Linear(16, 16)
        self.mix2.weight = self.mix1.weight
        self.shared = self.encode
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.shared(x.flatten(1)))
        return self.head(torch.tanh(self.mix2(torch.tanh(self.mix1(h)))))


class MutableScale(nn.Module):
    """A ``forward`` that reads mutable attributes: a float and a dict (changed between calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.temperature = 1.0
        self.options = {"shift": 0.0}
        self.conv, self.bn = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.head = nn.Linear(6, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(h) / self.temperature + self.options["shift"]


class ConvBN(nn.Module):
    """A plain conv + BatchNorm net, base of the hooked, pruned and weight-normed entries."""

    def __init__(self, norm: Callable[[int], nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(1, 8, 3, padding=1), norm(8)
        self.conv2, self.norm2 = nn.Conv2d(8, 8, 3, padding=1), norm(8)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = F.relu(self.norm2(self.conv2(h)))
        return self.head(self.drop(h.mean((2, 3))))


class Tabular(nn.Module):
    """A tabular MLP with BatchNorm1d, LayerNorm and Dropout."""

    def __init__(self, features: int = 12) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(features, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(32, 16),
            nn.LayerNorm(16),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _image(n: int = 10) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _warm(model: nn.Module, x: torch.Tensor) -> None:
    """Non-trivial BatchNorm statistics and populated ``.grad``."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x * 1.5)
    model(x).square().mean().backward()


def _root_forward_hook(model: nn.Module) -> nn.Module:
    model.register_forward_hook(lambda _module, _inputs, output: output * 2 + 0.8)
    return model


def _root_pre_hook(model: nn.Module) -> nn.Module:
    model.register_forward_pre_hook(lambda _module, inputs: (inputs[0] * 0.5 + 0.25,))
    return model


def _inner_hook(model: nn.Module) -> nn.Module:
    model.norm1.register_forward_hook(lambda _module, _inputs, output: output.abs())
    return model


def _pruned(model: nn.Module) -> nn.Module:
    prune.l1_unstructured(model.conv1, "weight", amount=0.4)
    prune.random_unstructured(model.conv2, "weight", amount=0.3)
    return model


def _old_weight_norm(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of parametrizations
        nn.utils.weight_norm(model.conv1)
    return model


def _new_weight_norm(model: nn.Module) -> nn.Module:
    parametrizations.weight_norm(model.conv2)
    return model


def _spectral_norm(model: nn.Module) -> nn.Module:
    parametrizations.spectral_norm(model.head)
    return model


def _group_norm(_channels: int) -> nn.Module:
    return nn.GroupNorm(2, _channels)


def _layer_norm_2d(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W)


#: name -> (builder, input maker). Builders are seeded by the caller.
ZOO: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor]]] = {
    "view_flatten": (ViewFlatten, _image),
    "tensor_constants": (TensorConstants, _image),
    "tied_weights": (TiedWeights, _image),
    "mutable_attributes": (MutableScale, _image),
    "root_forward_hook": (lambda: _root_forward_hook(ConvBN()), _image),
    "root_pre_hook": (lambda: _root_pre_hook(ConvBN()), _image),
    "inner_forward_hook": (lambda: _inner_hook(ConvBN()), _image),
    "pruned": (lambda: _pruned(ConvBN()), _image),
    "old_weight_norm": (lambda: _old_weight_norm(ConvBN()), _image),
    "parametrized_weight_norm": (lambda: _new_weight_norm(ConvBN()), _image),
    "spectral_norm": (lambda: _spectral_norm(ConvBN()), _image),
    "group_norm": (lambda: ConvBN(_group_norm), _image),
    "layer_norm": (lambda: ConvBN(_layer_norm_2d), _image),
    "batchnorm_dropout": (ConvBN, _image),
    "tabular_batchnorm1d": (
        Tabular,
        lambda: torch.rand(10, 12, generator=torch.Generator().manual_seed(2)),
    ),
}


def build(name: str, train: bool) -> tuple[nn.Module, torch.Tensor]:
    """The zoo model ``name`` (warmed, in train or eval mode) and its inputs."""
    make_model, make_inputs = ZOO[name]
    torch.manual_seed(0)
    model = make_model()
    x = make_inputs()
    _warm(model, x)
    model.train(train)
    return model, x


def eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own eval-mode output, computed without fral, flags restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for module, flag in flags:
            module.training = flag
