"""PGD: the threat model's constraints, its effect, torchattacks equivalence, adapters."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchattacks

from fral.attacks import PGD, CallableAttack, TorchattacksAttack, as_attack, pgd
from tests.utils import assert_unchanged, make_net, snapshot

EPS, ALPHA = 4 / 255, 2 / 255


@pytest.mark.parametrize("objective", ["ce", "kl"])
@pytest.mark.parametrize("random_start", [True, False])
def test_stays_in_the_ball_and_the_bounds(trained_net, digits, objective, random_start) -> None:
    x, y, _ = digits
    x = x[:200]
    x_adv = pgd(trained_net, x, y[:200], objective=objective, random_start=random_start)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    eps = 0.1
    wide = pgd(trained_net, x, objective=objective, eps=eps, alpha=0.05, steps=3, bounds=None)
    assert (wide - x).abs().max() <= eps + 1e-6


def test_raises_the_loss_of_a_trained_model(trained_net, digits) -> None:
    x, y, _ = digits
    with torch.no_grad():
        clean = F.cross_entropy(trained_net(x), y)
        attacked = F.cross_entropy(trained_net(pgd(trained_net, x, y, eps=0.1, alpha=0.02)), y)
        acc_clean = (trained_net(x).argmax(1) == y).float().mean()
        x_adv = pgd(trained_net, x, y, eps=0.1, alpha=0.02, steps=10)
        acc_adv = (trained_net(x_adv).argmax(1) == y).float().mean()
    assert attacked > 2 * clean
    assert acc_adv < acc_clean - 0.2


def test_own_predictions_and_kl_objective_raise_their_losses(trained_net, digits) -> None:
    x = digits[0][:300]
    with torch.no_grad():
        clean_logits = trained_net(x)
    pred = clean_logits.argmax(1)
    x_ce = pgd(trained_net, x, eps=0.1, alpha=0.02)  # y=None: the model's own predictions
    x_kl = pgd(trained_net, x, objective="kl", eps=0.1, alpha=0.02)
    with torch.no_grad():
        assert F.cross_entropy(trained_net(x_ce), pred) > 2 * F.cross_entropy(clean_logits, pred)
        kl = F.kl_div(
            F.log_softmax(trained_net(x_kl), 1),
            F.log_softmax(clean_logits, 1),
            log_target=True,
            reduction="batchmean",
        )
    assert kl > 0.05


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("optimize", [True, False])
def test_equals_torchattacks_without_random_start(trained_net, digits, dtype, optimize) -> None:
    x, y, _ = digits
    net = copy.deepcopy(trained_net).to(dtype)
    x = x[:256].to(dtype)
    ours = pgd(
        net, x, y[:256], eps=EPS, alpha=ALPHA, steps=5, random_start=False, optimize=optimize
    )
    theirs = torchattacks.PGD(net, eps=EPS, alpha=ALPHA, steps=5, random_start=False)(x, y[:256])
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=0)


def test_batch_size_does_not_change_the_attack(trained_net, digits) -> None:
    x = digits[0][:64]
    whole = pgd(trained_net, x, random_start=False)
    halves = torch.cat([pgd(trained_net, part, random_start=False) for part in x.split(32)])
    assert torch.allclose(whole, halves, atol=1e-6)


def test_generator_makes_random_starts_reproducible(trained_net, digits) -> None:
    x = digits[0][:32]

    def run(seed: int) -> torch.Tensor:
        return pgd(trained_net, x, steps=1, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    gaussian = pgd(
        trained_net,
        x,
        steps=0,
        start_std=0.001,
        bounds=None,
        generator=torch.Generator().manual_seed(0),
    )
    assert 0.0005 < (gaussian - x).std() < 0.002


@pytest.mark.parametrize("train", [True, False])
def test_model_comes_back_unchanged(train) -> None:
    net = make_net(train=train)
    before = snapshot(net)
    x = torch.rand(12, 1, 8, 8)
    for optimize in (True, False):
        pgd(net, x, optimize=optimize)
        pgd(net, x, torch.zeros(12, dtype=torch.long), objective="kl", optimize=optimize)
        assert_unchanged(net, before)
    atk = torchattacks.PGD(net, eps=EPS, alpha=ALPHA, steps=2)
    TorchattacksAttack(atk)(net, x)
    CallableAttack(lambda m, xs, ys: xs + 0.0)(net, x)
    assert_unchanged(net, before)


def test_mixed_submodule_modes_are_restored() -> None:
    net = make_net(train=True)
    net.features[1].eval()  # a frozen BatchNorm inside a model in train mode
    before = snapshot(net)
    pgd(net, torch.rand(4, 1, 8, 8), optimize=False)
    TorchattacksAttack(torchattacks.FGSM(net, eps=EPS))(net, torch.rand(4, 1, 8, 8))
    assert_unchanged(net, before)


def test_as_attack_normalises_every_kind() -> None:
    net = make_net()
    assert as_attack(None) == PGD()
    custom = PGD(eps=0.1, steps=2)
    assert as_attack(custom) is custom
    wrapped = as_attack(torchattacks.PGD(net, eps=EPS))
    assert isinstance(wrapped, TorchattacksAttack)
    assert isinstance(as_attack(lambda m, x, y: x), CallableAttack)
    with pytest.raises(TypeError, match="attack must be"):
        as_attack(42)


def test_torchattacks_adapter_attacks_predictions_and_rejects_other_models(digits) -> None:
    net, other = make_net(num_classes=10), make_net(seed=1, num_classes=10)
    x = digits[0][:16]
    adapter = as_attack(torchattacks.PGD(net, eps=EPS, alpha=ALPHA, steps=3, random_start=False))
    expected = pgd(net, x, eps=EPS, alpha=ALPHA, steps=3, random_start=False)
    assert torch.allclose(adapter(net, x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="different model"):
        adapter(other, x)


def test_pgd_class_matches_function(trained_net, digits) -> None:
    x = digits[0][:8]
    attack = PGD(eps=0.05, alpha=0.01, steps=3, random_start=False)
    assert torch.equal(
        attack(trained_net, x),
        pgd(trained_net, x, eps=0.05, alpha=0.01, steps=3, random_start=False),
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1}, "eps"),
        ({"alpha": 0.0}, "alpha"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"objective": "hinge"}, "objective"),
        ({"bounds": (1.0, 0.0)}, "bounds"),
    ],
)
def test_bad_options(kwargs, match) -> None:
    net = make_net()
    with pytest.raises(ValueError, match=match):
        pgd(net, torch.rand(2, 1, 8, 8), **kwargs)
    with pytest.raises(ValueError, match=match):
        PGD(**kwargs)


def test_bad_inputs() -> None:
    net = make_net()
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(ValueError, match="outside bounds"):
        pgd(net, x + 1.0)
    with pytest.raises(ValueError, match="y must be"):
        pgd(net, x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="y must be"):
        pgd(net, x, torch.zeros(3))
    with pytest.raises(TypeError, match="floating"):
        pgd(net, (x * 255).long())
    with pytest.raises(TypeError, match="nn.Module"):
        pgd(lambda t: t, x)
    with pytest.raises(ValueError, match="not a tensor"):
        CallableAttack(lambda m, xs, ys: None)(net, x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mismatched_devices() -> None:
    net = make_net()
    with pytest.raises(ValueError, match="cuda"):
        pgd(net, torch.rand(2, 1, 8, 8, device="cuda"))
