"""The paper's backbones at its input sizes: ResNet18 and MobileNetV2 at 32 and 112 px.

Shapes and strides, parameter counts (computed here from the architecture, not copied),
determinism under a seed, and fral's optimised eval copy (BatchNorm folded) reproducing the
model's own eval forward and PGD, with the model handed back unchanged.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from fral._modules import OptimizationWarning, evaluation_view
from fral.attacks import pgd
from fral.models import MobileNetV2, ResNet18
from fral.pool import Pool
from fral.predict import embeddings, logits
from tests.utils import assert_unchanged, snapshot


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def final_map(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """Shape of the features the adaptive pool receives (the last stride's output)."""
    pool = model.avgpool if isinstance(model, ResNet18) else model.pool
    shapes = []
    handle = pool.register_forward_pre_hook(lambda _m, args: shapes.append(args[0].shape))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return tuple(shapes[0][1:])


def resnet18_parameters(num_classes: int, in_channels: int, stem_kernel: int) -> int:
    """ResNet18's parameter count from its architecture: convs without bias, BN weight+bias."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout

    def block(cin: int, cout: int) -> int:
        shortcut = conv(1, cin, cout) + 2 * cout if cin != cout else 0
        return conv(3, cin, cout) + conv(3, cout, cout) + 4 * cout + shortcut

    total = conv(stem_kernel, in_channels, 64) + 2 * 64
    cin = 64
    for cout in (64, 128, 256, 512):
        total += block(cin, cout) + block(cout, cout)
        cin = cout
    return total + 512 * num_classes + num_classes


def test_resnet18_parameter_counts_follow_from_the_architecture() -> None:
    assert resnet18_parameters(10, 3, stem_kernel=3) == 11_173_962  # the figure in the brief
    assert count(ResNet18(10, stem="cifar")) == 11_173_962
    assert resnet18_parameters(1000, 3, stem_kernel=7) == 11_689_512  # torchvision's resnet18
    assert count(ResNet18(1000, stem="imagenet")) == 11_689_512
    assert count(ResNet18(7, 1, stem="imagenet")) == resnet18_parameters(7, 1, stem_kernel=7)


def test_mobilenetv2_parameter_count_is_torchvisions() -> None:
    # torchvision's mobilenet_v2 (1000 classes): 3,504,872 parameters; strides change none.
    assert count(MobileNetV2(1000, stem="imagenet")) == 3_504_872
    assert count(MobileNetV2(1000, stem="cifar")) == 3_504_872


@pytest.mark.parametrize(
    ("size", "stem", "final"),
    [(32, "cifar", 4), (112, "imagenet", 4), (112, "cifar", 14), (224, "imagenet", 7)],
)
def test_resnet18_strides_per_stem(size: int, stem: str, final: int) -> None:
    model = ResNet18(5, stem=stem, width=0.125)
    assert final_map(model, torch.rand(1, 3, size, size)) == (64, final, final)
    assert model.eval()(torch.rand(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize(
    ("size", "stem", "final"), [(32, "cifar", 4), (112, "imagenet", 4), (112, "cifar", 14)]
)
def test_mobilenetv2_strides_per_stem(size: int, stem: str, final: int) -> None:
    model = MobileNetV2(5, width=0.25, stem=stem)
    assert final_map(model, torch.rand(1, 3, size, size)) == (1280, final, final)
    assert model.eval()(torch.rand(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("size", [32, 112])
def test_full_width_models_at_the_papers_sizes(size: int) -> None:
    x = torch.rand(2, 3, size, size)
    for model in (ResNet18(4, input_size=size), MobileNetV2(4, input_size=size)):
        assert model.stem == ("cifar" if size == 32 else "imagenet")
        with torch.no_grad():
            assert model.eval()(x).shape == (2, 4)
    assert embeddings(ResNet18(4, input_size=size), x).shape == (2, 512)


@pytest.mark.parametrize("factory", [ResNet18, MobileNetV2])
def test_the_same_seed_builds_the_same_model(factory) -> None:
    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return factory(3, width=0.25, input_size=112).eval()

    first, again, other = build(0), build(0), build(1)
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    drawn = [m for m in first.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    redrawn = [m for m in other.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for a, b in zip(drawn, redrawn, strict=True):  # every random weight follows the seed
        assert not torch.equal(a.weight, b.weight)
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(first(x), again(x))


def trained_state(model: nn.Module, size: int) -> nn.Module:
    """Give ``model`` non-trivial BatchNorm statistics and gradients, then leave it in train
    mode with one BatchNorm frozen (eval) and one parameter not requiring grad."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 3, size, size) * 2 - 0.3)
    model(torch.rand(2, 3, size, size)).square().mean().backward()
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    batchnorms[1].eval()
    batchnorms[2].weight.requires_grad_(False)
    return model


def eval_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        return reference(x)


CASES = [
    pytest.param(lambda: ResNet18(4, width=0.25, input_size=32), 32, id="resnet18-32"),
    pytest.param(lambda: ResNet18(4, width=0.25, input_size=112), 112, id="resnet18-112"),
    pytest.param(lambda: MobileNetV2(4, width=0.25, input_size=32), 32, id="mobilenetv2-32"),
    pytest.param(lambda: MobileNetV2(4, width=0.25, input_size=112), 112, id="mobilenetv2-112"),
]


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimize: bool):
    with evaluation_view(model, optimize=optimize) as view:
        x = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(view(x), y, reduction="sum")
        return torch.autograd.grad(loss, x)[0]


@pytest.mark.parametrize(("factory", "size"), CASES)
@pytest.mark.usefixtures("one_torch_thread")
def test_the_folded_copy_reproduces_logits_and_pgd(factory, size: int) -> None:
    torch.manual_seed(0)
    model = trained_state(factory(), size)
    before = snapshot(model)
    x = torch.rand(3, 3, size, size)
    y = torch.tensor([0, 1, 3])
    expected = eval_forward(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizationWarning)  # no step down the ladder
        with evaluation_view(model) as view:
            view.verify(x)
            assert view.level == "folded+channels_last"
            assert not any(isinstance(m, nn.BatchNorm2d) for m in view.module.modules())
        got = logits(model, Pool(x, torch.tensor([0, 1, 0])), batch_size=2)
        assert torch.allclose(got, expected, rtol=0, atol=1e-4), (got - expected).abs().max()

        # What PGD runs on: the input gradient through the folded copy.
        grad = input_gradient(model, x, y, optimize=True)
        reference = input_gradient(model, x, y, optimize=False)
        scale = float(reference.abs().max())
        assert scale > 0
        assert torch.allclose(grad, reference, rtol=0, atol=1e-4 * scale)

        # One PGD step from x: equal wherever the gradient's sign is not a rounding matter.
        # (Over 5 steps one such flip moves the next iterate and the runs drift apart by
        # whole steps of alpha, at a few percent of the pixels of ResNet18 at 112 px.)
        step = pgd(model, x, y, steps=1, random_start=False)
        plain_step = pgd(model, x, y, steps=1, random_start=False, optimize=False)
        clear = reference.abs() > 1e-5 * scale
        assert clear.float().mean() > 0.99
        assert torch.allclose(step[clear], plain_step[clear], rtol=0, atol=1e-4)

        adversarial = pgd(model, x, y, generator=torch.Generator().manual_seed(5))
    plain = pgd(model, x, y, generator=torch.Generator().manual_seed(5), optimize=False)
    for attacked in (adversarial, plain):
        assert (attacked - x).abs().max() <= 4 / 255 + 1e-6
        assert not torch.equal(attacked, x)
    assert_unchanged(model, before)
