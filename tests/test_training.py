"""TRADES against a step-by-step reference; the trainer's schedule, determinism and effect."""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fral.attacks import PGD
from fral.datasets import digits_domains
from fral.metrics import evaluate
from fral.models import MLP, SmallCNN
from fral.pool import Pool
from fral.training import (
    INHERIT,
    PRESETS,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    _channels_last_weights,
    adversarial_train,
    standard_train,
    trades_loss,
    warmup_cosine,
)
from tests.utils import make_net


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 3),
    )


def reference_fast_trades(model, x, y, *, beta, eps, alpha, steps, noise):
    """fral's two-pass form, step by step: the official attack, one clean train-mode pass."""
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
    robust = (1.0 / len(x)) * F.kl_div(
        F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="sum"
    )
    return natural + beta * robust


def official_trades(model, x_natural, y, *, step_size, epsilon, perturb_steps, beta):
    """yaodongyu/TRADES trades.py (L-inf), transcribed line by line for the CPU.

    The only edits: no ``.cuda()``, ``reduction="sum"`` for the deprecated
    ``size_average=False``, and no ``optimizer.zero_grad()`` (the caller's business).
    """
    criterion_kl = torch.nn.KLDivLoss(reduction="sum")
    model.eval()
    batch_size = len(x_natural)
    x_adv = x_natural.detach() + 0.001 * torch.randn(x_natural.shape).detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(
                F.log_softmax(model(x_adv), dim=1), F.softmax(model(x_natural), dim=1)
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).requires_grad_(False)
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(
        F.log_softmax(model(x_adv), dim=1), F.softmax(model(x_natural), dim=1)
    )
    return loss_natural + beta * loss_robust


def assert_same_step(ours, theirs, loss, expected) -> None:
    """Same loss, same gradients, same BatchNorm buffers (model state after the passes)."""
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-7)
    loss.backward()
    expected.backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)  # gradients flow through p(x) too
    for (name, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-7), name


@pytest.mark.parametrize("train", [True, False])
def test_fast_trades_loss_equals_the_two_pass_reference(train) -> None:
    ours, theirs = tiny_bn_net(), tiny_bn_net()
    ours.train(train)
    x, y = torch.rand(16, 1, 6, 6), torch.randint(0, 3, (16,))
    options = {"beta": 6.0, "eps": 0.1, "alpha": 0.03, "steps": 4}
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    loss = trades_loss(
        ours,
        x,
        y,
        generator=torch.Generator().manual_seed(5),
        form="fast",
        optimize=False,
        **options,
    )
    expected = reference_fast_trades(theirs, x, y, noise=noise, **options)
    assert_same_step(ours, theirs, loss, expected)
    assert int(ours[1].num_batches_tracked) == 2  # clean and adversarial passes
    assert ours.training is train  # mode restored
    assert all(p.requires_grad for p in ours.parameters())


@pytest.mark.parametrize("train", [True, False])
def test_official_trades_loss_equals_the_official_code(train) -> None:
    """Default form: same RNG draws (start and Dropout masks), loss, gradients, BN buffers."""
    ours, theirs = make_net(seed=2), make_net(seed=2)  # BatchNorm2d and Dropout
    for model in (ours, theirs):
        model.zero_grad(set_to_none=True)
    ours.train(train)
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 4, (12,))
    torch.manual_seed(11)
    loss = trades_loss(ours, x, y, beta=6.0, eps=0.1, alpha=0.03, steps=4, optimize=False)
    rng_ours = torch.get_rng_state()
    torch.manual_seed(11)
    expected = official_trades(theirs, x, y, step_size=0.03, epsilon=0.1, perturb_steps=4, beta=6.0)
    assert torch.equal(torch.get_rng_state(), rng_ours)  # the same draws, in the same order
    assert_same_step(ours, theirs, loss, expected)
    assert int(ours.features[1].num_batches_tracked) == int(theirs.features[1].num_batches_tracked)
    assert [m.training for m in ours.modules()] == [train] * len(list(ours.modules()))
    # The fast form differs exactly in the third pass: one BatchNorm update less.
    fast = make_net(seed=2)
    before = int(fast.features[1].num_batches_tracked)
    trades_loss(fast, x, y, eps=0.1, alpha=0.03, steps=4, form="fast")
    assert int(fast.features[1].num_batches_tracked) == before + 2
    assert int(ours.features[1].num_batches_tracked) == before + 3


@pytest.mark.parametrize("form", ["official", "fast"])
def test_optimised_attack_equals_the_official_code_in_float64(form) -> None:
    """The default attack runs on the folded eval copy: in float64 the same x' and loss."""
    ours, theirs = make_net(seed=2).double(), make_net(seed=2).double()
    x, y = torch.rand(12, 1, 8, 8, dtype=torch.float64), torch.randint(0, 4, (12,))
    options = {"beta": 6.0, "eps": 0.1, "alpha": 0.03, "steps": 4}
    torch.manual_seed(11)
    loss = trades_loss(ours, x, y, form=form, **options)
    torch.manual_seed(11)
    exact = trades_loss(theirs, x, y, form=form, optimize=False, **options)
    assert loss.item() == pytest.approx(exact.item(), rel=1e-12)
    loss.backward()
    exact.backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12)
    assert all(p.requires_grad for p in ours.parameters())


def test_trainer_optimize_changes_nothing_beyond_rounding() -> None:
    """Trainer with the optimised attack and channels_last passes against optimize=False:
    float64 weights after a fit agree; a model flattening with .view (which channels_last
    features break) is detected and trained on its usual layout."""

    class Net(nn.Module):
        def __init__(self, flatten_with_view: bool) -> None:
            super().__init__()
            self.flatten_with_view = flatten_with_view
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 36, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            if self.flatten_with_view:
                return self.fc(h.view(h.shape[0], -1))
            return self.fc(h.flatten(1))

    generator = torch.Generator().manual_seed(1)
    x = torch.rand(64, 3, 6, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (64,), generator=generator)
    data = Pool(x, torch.zeros(64, dtype=torch.long), labels=labels)
    for flatten_with_view in (False, True):
        weights = []
        for optimize in (True, False):
            torch.manual_seed(0)
            model = Net(flatten_with_view).double()
            config = TrainConfig(epochs=1, batch_size=16, steps=2, optimize=optimize)
            trainer = Trainer(model, config, random_state=3)
            before = [id(p) for p in model.parameters()]
            strides = [p.stride() for p in model.parameters()]
            trainer.fit(data)
            assert trainer._channels_last is (optimize and not flatten_with_view)
            # the same Parameter objects, handed back in their own layout
            assert [id(p) for p in model.parameters()] == before
            assert [p.stride() for p in model.parameters()] == strides
            assert all(p.grad is None or p.grad.is_contiguous() for p in model.parameters())
            weights.append(model.state_dict())
        for key, value in weights[0].items():
            assert torch.allclose(value.double(), weights[1][key].double(), atol=1e-10), key


def test_channels_last_weights_take_explicit_strides_and_give_them_back() -> None:
    """A grey-scale first convolution and a 1x1 convolution have weights contiguous in both
    layouts; inside the block they get explicit channels_last strides (so the convolution's
    output is channels_last and what follows runs in the fast layout), and after it the
    weights and their grads have their own strides again."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1), nn.Flatten(), nn.Linear(32, 3))
    model[0].weight.grad = torch.ones_like(model[0].weight)
    strides = [p.stride() for p in model.parameters()]
    x = torch.rand(5, 1, 6, 6)
    with _channels_last_weights(model, True):
        assert model[0].weight.stride() == (9, 1, 3, 1)
        assert model[1].weight.stride() == (4, 1, 4, 4)
        assert model[0](x).is_contiguous(memory_format=torch.channels_last)
        assert not model[0](x).is_contiguous()
        model(x.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert [p.stride() for p in model.parameters()] == strides
    assert [p.grad.stride() for p in model.parameters()] == strides
    assert model[0](x).is_contiguous()  # the user's layout again
    # a grad in a layout of its own (here transposed) keeps it
    transposed = torch.zeros(3, 3, 1, 4).permute(3, 2, 0, 1)
    model[0].weight.grad = transposed
    with warnings.catch_warnings():  # torch: "grad and param do not obey the ... contract"
        warnings.simplefilter("ignore", UserWarning)
        with _channels_last_weights(model, True):
            model(x.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert model[0].weight.grad.stride() == transposed.stride()
    assert model[0].weight.stride() == strides[0]


def test_config_optimize_round_trip() -> None:
    config = TrainConfig(optimize=False)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert (
        TrainConfig.from_dict(
            {k: v for k, v in TrainConfig().to_dict().items() if k != "optimize"}
        ).optimize
        is False
    )
    with pytest.raises(TypeError, match="optimize"):
        TrainConfig(optimize=1)


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
    assert all(
        p.eps == 4 / 255 and p.steps == 5 and p.weight_decay == 2e-4 for p in PRESETS.values()
    )


def small_data(n: int = 96) -> Pool:
    torch.manual_seed(1)
    return Pool(
        torch.rand(n, 1, 6, 6), torch.zeros(n, dtype=torch.long), labels=torch.randint(0, 3, (n,))
    )


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
    assert all(
        torch.equal(model_a.state_dict()[k], model_b.state_dict()[k]) for k in model_a.state_dict()
    )
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


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"eps": -0.01}, ValueError, r"eps must be a finite number >= 0"),
        ({"eps": float("inf")}, ValueError, r"eps must be a finite"),
        ({"alpha": 0.0}, ValueError, r"alpha must be a finite number > 0"),
        ({"alpha": float("nan")}, ValueError, r"alpha must be a finite"),
        ({"steps": 0}, ValueError, r"steps must be an int >= 1"),
        ({"steps": 2.5}, TypeError, r"steps must be an int"),
        ({"bounds": (1.0, 0.0)}, ValueError, r"bounds must be ordered"),
        ({"bounds": (0.5, 0.5)}, ValueError, r"bounds must be ordered"),
        ({"bounds": (float("-inf"), 1.0)}, ValueError, r"bounds\[0\] must be a finite"),
        ({"bounds": (0.0, 1.0, 2.0)}, TypeError, r"bounds must be None"),
        ({"bounds": "auto"}, TypeError, r"bounds must be None"),
        ({"beta": -1.0}, ValueError, r"beta must be a finite number >= 0"),
        ({"beta": float("nan")}, ValueError, r"beta must be a finite"),
        ({"lr": 0.0}, ValueError, r"lr must be a finite number > 0"),
        ({"lr": float("nan")}, ValueError, r"lr must be a finite"),
        ({"lr": "0.1"}, TypeError, r"lr must be a real number"),
        ({"momentum": -0.9}, ValueError, r"momentum must be a finite number >= 0"),
        ({"weight_decay": float("inf")}, ValueError, r"weight_decay must be a finite"),
        ({"epochs": 2.0}, TypeError, r"epochs must be an int >= 0"),
        ({"epochs": True}, TypeError, r"epochs must be an int"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an int >= 1"),
        (
            {"warmup_epochs": -1},
            ValueError,
            r"warmup_epochs must be a finite number in \[0, epochs\]",
        ),
        ({"warmup_epochs": float("nan")}, ValueError, r"warmup_epochs must be a finite"),
        ({"oversample": 1}, TypeError, r"oversample must be True or False"),
        ({"adversarial": "yes"}, TypeError, r"adversarial must be True or False"),
        ({"amp": None}, TypeError, r"amp must be True or False"),
        ({"trades": "paper"}, ValueError, r"trades must be one of \('official', 'fast'\)"),
    ],
)
def test_options_are_checked_when_the_config_is_made(options, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        TrainConfig(**options)


def test_valid_options_are_kept_and_normalised() -> None:
    config = TrainConfig(
        epochs=3, lr=1, momentum=0, weight_decay=0, warmup_epochs=3, beta=0, eps=0, bounds=[0, 1]
    )
    assert (config.lr, config.eps, config.bounds, config.warmup_epochs) == (1.0, 0.0, (0.0, 1.0), 3)
    assert TrainConfig(adversarial=False, steps=0).steps == 0  # no attack, no steps needed
    assert TrainConfig().trades == "official"
    # Data set threat models go through the same checks.
    with pytest.raises(ValueError, match="eps"):
        TrainConfig().inherit(-1.0)


def test_config_round_trip_and_old_dicts() -> None:
    for config in (TrainConfig(trades="fast", bounds=None), PRESETS["ham10000"], TrainConfig()):
        assert TrainConfig.from_dict(config.to_dict()) == config
    # A dict written before the option existed resumes with the two-pass form it computed.
    old = TrainConfig(epochs=2, warmup_epochs=1).to_dict()
    del old["trades"]
    assert TrainConfig.from_dict(old).trades == "fast"
    assert TrainConfig.from_dict({"epochs": 2, "warmup_epochs": 1}).eps == INHERIT


def bn1d_mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP(36, num_classes=3, hidden=(8,))


def bn2d_pooled() -> nn.Module:
    """BatchNorm2d on a 1x1 map: a lone sample has one value per channel, as in BatchNorm1d."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


@pytest.mark.parametrize("model_fn", [bn1d_mlp, bn2d_pooled])
@pytest.mark.parametrize("oversample", [False, True])
def test_a_last_batch_of_one_sample_joins_the_previous_batch(model_fn, oversample) -> None:
    """Pool size % batch_size == 1 with BatchNorm (fral's MLP crashed on Adult)."""
    n, batch_size = 33, 8
    labels = torch.arange(n) % 3  # 11 per class: the oversampled epoch is 33 samples too
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    pool = Pool(x, torch.zeros(n, dtype=torch.long), labels=labels)
    model = model_fn()
    seen: list[int] = []
    model.register_forward_pre_hook(
        lambda m, args: seen.append(len(args[0])) if m.training else None
    )
    config = TrainConfig(
        epochs=2,
        batch_size=batch_size,
        warmup_epochs=0,
        steps=1,
        oversample=oversample,
        adversarial=False,
    )
    history = Trainer(model, config, random_state=0).fit(pool)
    assert seen == [8, 8, 8, 9] * 2  # every sample each epoch, no batch of one
    assert len(history) == 2
    # TRADES too (adversarial_train, the repro), on both forms.
    for form in ("official", "fast"):
        adversarial_train(
            model_fn(),
            pool,
            epochs=1,
            batch_size=batch_size,
            steps=1,
            warmup_epochs=0,
            progress=False,
            trades=form,
        )


def test_the_learning_rate_schedule_counts_the_joined_batch_once() -> None:
    model = tiny_bn_net()
    lrs: list[float] = []
    trainer = Trainer(
        model, TrainConfig(epochs=1, batch_size=4, warmup_epochs=1, adversarial=False, lr=0.4)
    )
    original = trainer.optimizer.step

    def step(*args, **kwargs):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        return original(*args, **kwargs)

    trainer.optimizer.step = step
    trainer.fit(small_data(9))  # batches of 4 and 5
    assert lrs == pytest.approx([0.2, 0.4])  # two warm-up steps, peak reached at the last


def bn1d_batch_statistics() -> nn.Module:
    """BatchNorm1d without running statistics: batch statistics in eval mode too."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(36, 8),
        nn.BatchNorm1d(8, track_running_stats=False),
        nn.Linear(8, 3),
    )


@pytest.mark.parametrize("model_fn", [bn1d_mlp, bn2d_pooled, bn1d_batch_statistics])
def test_a_batch_of_one_that_batchnorm_cannot_take_is_a_clear_error(model_fn) -> None:
    pool = small_data(6)
    with pytest.raises(ValueError, match=r"batch of one sample.*batch_size >= 2 \(now 1\)"):
        standard_train(model_fn(), pool, batch_size=1, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"batch of one sample"):
        adversarial_train(model_fn(), pool.subset([0]), epochs=1, progress=False)
    # A model without BatchNorm trains on batches of one.
    standard_train(
        nn.Sequential(nn.Flatten(), nn.Linear(36, 3)),
        pool,
        batch_size=1,
        epochs=1,
        warmup_epochs=0,
        progress=False,
    )


def test_fit_for_fewer_epochs_than_the_warmup_clips_the_warmup() -> None:
    """The loop's fine-tuning calls fit(epochs=k) every round: k < warmup must not fail."""
    config = TrainConfig(epochs=4, warmup_epochs=2, adversarial=False, batch_size=32)
    assert config.for_epochs(1) == replace(config, epochs=1, warmup_epochs=1)
    assert config.for_epochs(3) == replace(config, epochs=3)
    assert config.for_epochs(0).warmup_epochs == 0
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        config.for_epochs(-1)
    with pytest.raises(TypeError, match="epochs must be an int"):
        config.for_epochs(1.5)
    trainer = Trainer(tiny_bn_net(), config, random_state=0)
    trainer.fit(small_data())
    history = trainer.fit(small_data(), epochs=1)  # warm-up clipped to 1 epoch
    assert len(history) == 1 and history[0]["lr"] == pytest.approx(0.1)  # ends at the peak
    assert trainer.fit(small_data(), epochs=0) == []
    finetune = TrainConfig(epochs=1, warmup_epochs=0.5, adversarial=False, batch_size=32)
    assert len(trainer.fit(small_data(), config=finetune)) == 1
    with pytest.raises(TypeError, match="config must be a fral.training.TrainConfig"):
        trainer.fit(small_data(), config={"epochs": 1})


class NaNAfter(nn.Module):
    """A linear model whose train-mode forward returns NaN from its ``bad``-th call on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(36, 3)
        self.calls, self.bad = 0, bad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls >= self.bad:
                out = out * float("nan")
        return out


def test_a_non_finite_loss_stops_training_naming_epoch_and_batch() -> None:
    model = NaNAfter(bad=6)  # 3 batches per epoch: epoch 2, batch 3
    config = TrainConfig(epochs=3, batch_size=32, warmup_epochs=0, adversarial=False)
    trainer = Trainer(model, config, random_state=0)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, batch 3 of 3.*lower lr"):
        trainer.fit(small_data())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no step was taken on it
    assert model.calls == 6
    assert issubclass(NonFiniteLossError, ValueError)  # the CLI's one-line errors
    assert issubclass(NonFiniteLossError, FloatingPointError)
    # A diverging learning rate is stopped the same way.
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+, batch \d+"):
        standard_train(
            tiny_bn_net(),
            small_data(),
            lr=1e30,
            epochs=3,
            batch_size=32,
            warmup_epochs=0,
            progress=False,
        )


def test_the_default_is_the_official_form_and_fast_differs() -> None:
    config = TrainConfig(epochs=1, batch_size=32, warmup_epochs=0, steps=1)
    weights = {}
    for form in ("official", "fast"):
        model = make_net(seed=1, num_classes=3, size=6)
        Trainer(model, replace(config, trades=form), random_state=0).fit(small_data())
        weights[form] = model.head.weight.detach().clone()
    model = make_net(seed=1, num_classes=3, size=6)
    Trainer(model, config, random_state=0).fit(small_data())
    assert torch.equal(model.head.weight, weights["official"])
    assert not torch.equal(weights["official"], weights["fast"])


def test_adversarial_training_on_digits_domains_gives_real_robustness() -> None:
    data = digits_domains()
    train = data.train.pool().subset(torch.arange(1200))
    test = data.test.pool().subset(torch.arange(600))
    torch.manual_seed(0)
    model = SmallCNN(channels=(16, 32))
    adversarial_train(
        model, train, epochs=6, batch_size=64, lr=0.1, warmup_epochs=1, random_state=0
    )
    result = evaluate(model, test, attack=PGD(eps=data.eps, alpha=data.alpha))
    chance = 1 / data.num_classes
    assert result.robust["accuracy"].average > chance + 0.25
    assert result.robust["accuracy"].worst > chance + 0.15
