"""TRADES against a step-by-step reference; the trainer's schedule, determinism and effect."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fral.attacks import PGD
from fral.datasets import digits_domains
from fral.metrics import evaluate
from fral.models import SmallCNN
from fral.pool import Pool
from fral.training import (
    PRESETS,
    TrainConfig,
    Trainer,
    adversarial_train,
    standard_train,
    trades_loss,
    warmup_cosine,
)


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 36, 3),
    )  # fmt: skip


def reference_trades(model, x, y, *, beta, eps, alpha, steps, noise):
    """The official TRADES code's arithmetic, step by step."""
    model.eval()
    x_adv = x.detach() + 0.001 * noise
    p_natural = F.softmax(model(x), dim=1).detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_natural, reduction="sum")
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    logits = model(x)
    natural = F.cross_entropy(logits, y)
    robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1),
                      reduction="sum") / len(x)  # fmt: skip
    return natural + beta * robust


@pytest.mark.parametrize("train", [True, False])
def test_trades_loss_equals_the_reference(train) -> None:
    ours, theirs = tiny_bn_net(), tiny_bn_net()
    ours.train(train)
    x, y = torch.rand(16, 1, 6, 6), torch.randint(0, 3, (16,))
    options = {"beta": 6.0, "eps": 0.1, "alpha": 0.03, "steps": 4}
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    loss = trades_loss(ours, x, y, generator=torch.Generator().manual_seed(5), **options)
    expected = reference_trades(theirs, x, y, noise=noise, **options)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    expected.backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5)  # gradients flow through p(x) too
    for name in ("running_mean", "running_var"):
        assert torch.allclose(getattr(ours[1], name), getattr(theirs[1], name), atol=1e-6)
    assert ours.training is train  # mode restored
    assert all(p.requires_grad for p in ours.parameters())


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(step, 10, 4) for step in range(10)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(0.5 * (1 + math.cos(0)))
    assert factors[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert all(a >= b for a, b in itertools.pairwise(factors[3:]))
    assert warmup_cosine(0, 5, 0) == 1.0


def test_presets_follow_the_supplementary() -> None:
    assert PRESETS["utkface"].epochs == 70 and PRESETS["utkface"].warmup_epochs == 10
    assert PRESETS["cinic10"].batch_size == 64 and PRESETS["cinic10"].epochs == 100
    assert PRESETS["ham10000"].lr == 0.02 and PRESETS["ham10000"].oversample
    assert all(p.eps == 4 / 255 and p.steps == 5 and p.weight_decay == 2e-4
               for p in PRESETS.values())  # fmt: skip


def small_data(n: int = 96) -> Pool:
    torch.manual_seed(1)
    return Pool(torch.rand(n, 1, 6, 6), torch.zeros(n, dtype=torch.long),
                labels=torch.randint(0, 3, (n,)))  # fmt: skip


def test_same_seed_same_weights_and_state_round_trip() -> None:
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=1, steps=2)
    runs = []
    for _ in range(2):
        model = tiny_bn_net()
        Trainer(model, config, random_state=3).fit(small_data())
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])

    # Resume from a saved state: a second fit equals the uninterrupted trainer's second fit.
    model_a, model_b = tiny_bn_net(), tiny_bn_net()
    trainer_a = Trainer(model_a, config, random_state=3)
    trainer_a.fit(small_data())
    saved_model, saved_trainer = copy.deepcopy(model_a.state_dict()), trainer_a.state_dict()
    trainer_a.fit(small_data(), epochs=1)
    model_b.load_state_dict(saved_model)
    trainer_b = Trainer(model_b, config, random_state=99)
    trainer_b.load_state_dict(saved_trainer)
    trainer_b.fit(small_data(), epochs=1)
    assert all(torch.equal(model_a.state_dict()[k], model_b.state_dict()[k])
               for k in model_a.state_dict())  # fmt: skip
    assert trainer_b.epochs_done == 3


def test_global_rng_is_left_alone() -> None:
    model, data = tiny_bn_net(), small_data()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    standard_train(model, data, epochs=1, batch_size=32, warmup_epochs=0, random_state=1)
    assert torch.equal(torch.rand(3), expected)


def test_oversampling_balances_classes() -> None:
    labels = torch.tensor([0] * 30 + [1] * 5 + [2] * 1)
    trainer = Trainer(tiny_bn_net(), TrainConfig(oversample=True), random_state=0)
    order = trainer._epoch_order(labels, trainer.config)
    assert torch.bincount(labels[order]).tolist() == [30, 30, 30]
    assert set(order[labels[order] == 1].tolist()) == set(range(30, 35))


def test_standard_training_fits_and_history() -> None:
    data = small_data()
    model = tiny_bn_net()
    trainer = standard_train(model, data, epochs=30, batch_size=32, lr=0.1, warmup_epochs=2)
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.inputs).argmax(1) == data.labels).float().mean()
    assert accuracy > 0.8  # it memorises 96 random points
    history = trainer.fit(data, epochs=4)
    assert [h["epoch"] for h in history] == [31, 32, 33, 34] and history[-1]["lr"] < 0.1


def test_bad_training_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        Trainer(tiny_bn_net()).fit(Pool(torch.rand(4, 1, 6, 6), [0, 0, 0, 0]))
    with pytest.raises(TypeError, match="labelled"):
        Trainer(tiny_bn_net()).fit(torch.rand(4, 1, 6, 6))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match="warmup"):
        TrainConfig(epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="no labelled"):
        Trainer(tiny_bn_net()).fit((torch.rand(0, 1, 6, 6), torch.zeros(0, dtype=torch.long)))


def test_adversarial_training_on_digits_domains_gives_real_robustness() -> None:
    data = digits_domains()
    train = data.train.pool().subset(torch.arange(1200))
    test = data.test.pool().subset(torch.arange(600))
    torch.manual_seed(0)
    model = SmallCNN(channels=(16, 32))
    adversarial_train(model, train, epochs=6, batch_size=64, lr=0.1, warmup_epochs=1,
                      random_state=0)  # fmt: skip
    result = evaluate(model, test, attack=PGD(eps=data.eps, alpha=data.alpha))
    chance = 1 / data.num_classes
    assert result.robust["accuracy"].average > chance + 0.25
    assert result.robust["accuracy"].worst > chance + 0.15
