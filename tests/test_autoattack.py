"""AutoAttack as an evaluation attack: worst case with PGD, per group, model untouched, seeded."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
import torchattacks

from fral.attacks import PGD, as_attack
from fral.autoattack import AutoAttack
from fral.metrics import evaluate
from fral.pool import Pool
from tests.utils import assert_unchanged, make_net, snapshot

EPS = 0.1
QUICK = {"n_queries": 100}  # Square's 5000 queries dominate the cost; every other part standard


@pytest.fixture
def busy_net(trained_net):
    """The trained net in train mode with populated .grad: what fral must leave alone."""
    net = copy.deepcopy(trained_net)
    net.train()
    net(torch.rand(4, 1, 8, 8)).square().mean().backward()
    return net


def _pool(digits, n: int) -> Pool:
    x, y, z = digits
    return Pool(x[:n], z[:n], labels=y[:n])


def test_at_most_pgd_per_group_and_model_unchanged(busy_net, digits, one_torch_thread) -> None:
    data = _pool(digits, 48)
    before = snapshot(busy_net)
    pgd = evaluate(busy_net, data, attack=PGD(eps=EPS, alpha=EPS / 2))
    auto = evaluate(busy_net, data, attack=AutoAttack(EPS, **QUICK))
    assert_unchanged(busy_net, before)
    for name in ("accuracy", "f1"):
        assert torch.equal(auto.clean[name].per_group, pgd.clean[name].per_group)
    robust_pgd, robust_auto = pgd.robust["accuracy"], auto.robust["accuracy"]
    assert torch.equal(robust_auto.counts, robust_pgd.counts)
    assert robust_auto.counts.tolist() == torch.bincount(data.groups).tolist()
    assert (robust_auto.per_group <= robust_pgd.per_group).all()
    assert robust_auto.overall < robust_pgd.overall  # it finds what PGD-5 misses
    assert auto.attack.startswith("AutoAttack(eps=0.1") and "after PGD" in auto.attack


def test_standard_configuration_on_a_handful(trained_net, digits, one_torch_thread) -> None:
    data = _pool(digits, 8)
    attack = AutoAttack(EPS)
    built = attack._build(torch.nn.Linear(1, 1), n_classes=10, seed=0)
    assert isinstance(built, torchattacks.AutoAttack) and built.version == "standard"
    inner = built._autoattack.attacks
    assert [type(a).__name__ for a in inner] == ["APGD", "APGDT", "FAB", "Square"]
    assert [a.steps for a in inner[:3]] == [10, 10, 10] and inner[3].n_queries == 5000
    auto = evaluate(trained_net, data, attack="autoattack")  # standard, 4/255
    pgd = evaluate(trained_net, data)  # PGD-5, 4/255
    assert auto.robust["accuracy"].overall <= pgd.robust["accuracy"].overall
    assert (auto.robust["accuracy"].per_group <= pgd.robust["accuracy"].per_group).all()


def test_only_samples_correct_after_pgd_are_attacked(
    trained_net, digits, monkeypatch, one_torch_thread
) -> None:
    data = _pool(digits, 40)
    attacked = []
    perturb = AutoAttack._perturb

    def spy(self, run, x, y, n_classes, seed):
        attacked.append(x.shape[0])
        return perturb(self, run, x, y, n_classes, seed)

    monkeypatch.setattr(AutoAttack, "_perturb", spy)
    pgd = evaluate(
        trained_net, data, attack=PGD(eps=EPS, alpha=EPS / 2), random_state=5, batch_size=16
    )
    auto = evaluate(
        trained_net, data, attack=AutoAttack(EPS, **QUICK), random_state=5, batch_size=16
    )
    # The same PGD (same seed) runs first: AutoAttack sees exactly its survivors.
    survivors = round(float(pgd.robust["accuracy"].overall) * 40)
    assert sum(attacked) == survivors > 0
    # Per sample: robust under the worst case => robust under the PGD evaluation.
    labels = data.labels
    pgd_right = pgd.robust["accuracy"].samples[0] == labels
    auto_right = auto.robust["accuracy"].samples[0] == labels
    assert not (auto_right & ~pgd_right).any()
    clean_wrong = pgd.clean["accuracy"].overall < 1
    assert clean_wrong  # some samples are wrong on clean inputs: they count as non-robust
    alone = AutoAttack(EPS, pgd_first=False, **QUICK)
    attacked.clear()
    evaluate(trained_net, data, attack=alone, random_state=5)
    assert sum(attacked) == round(float(pgd.clean["accuracy"].overall) * 40)
    assert auto.robust["accuracy"].overall <= pgd.robust["accuracy"].overall


def test_seeded_and_the_global_rng_untouched(trained_net, digits, one_torch_thread) -> None:
    data = _pool(digits, 24)
    attack = AutoAttack(EPS, **QUICK)
    state = torch.get_rng_state()
    first = evaluate(trained_net, data, attack=attack, random_state=1)
    assert torch.equal(torch.get_rng_state(), state)
    second = evaluate(trained_net, data, attack=attack, random_state=1)
    for name in ("accuracy", "f1"):
        assert torch.equal(first.robust[name].per_group, second.robust[name].per_group)
    assert (
        first.robust["accuracy"].samples[0].tolist()
        == second.robust["accuracy"].samples[0].tolist()
    )


def test_other_bounds_are_rescaled_exactly(trained_net, digits, one_torch_thread) -> None:
    x, y, z = digits
    x, y, z = x[:24], y[:24], z[:24]

    class Signed(torch.nn.Module):
        """The same classifier on inputs in [-1, 1]."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner((v + 1) / 2)

    unit = evaluate(trained_net, Pool(x, z, labels=y), attack=AutoAttack(EPS, **QUICK))
    signed_attack = AutoAttack(2 * EPS, bounds=(-1.0, 1.0), **QUICK)
    signed = evaluate(Signed(trained_net), Pool(2 * x - 1, z, labels=y), attack=signed_attack)
    assert torch.equal(signed.robust["accuracy"].per_group, unit.robust["accuracy"].per_group)
    v = 2 * x[:8] - 1
    v_adv = signed_attack(Signed(trained_net), v, y[:8], generator=torch.Generator().manual_seed(0))
    assert (v_adv - v).abs().max() <= 2 * EPS + 1e-6
    assert v_adv.min() >= -1 and v_adv.max() <= 1


def test_called_as_an_attack(busy_net, digits, one_torch_thread) -> None:
    x, y, _ = digits
    before = snapshot(busy_net)
    attack = as_attack("autoattack", names=True)
    assert isinstance(attack, AutoAttack) and attack.eps == pytest.approx(4 / 255)
    quick = AutoAttack(EPS, **QUICK)
    x_adv = quick(busy_net, x[:16], y[:16], generator=torch.Generator().manual_seed(0))
    again = quick(busy_net, x[:16], y[:16], generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, again)
    assert (x_adv - x[:16]).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    unlabeled = quick(busy_net, x[:4])  # the model's own predictions as labels
    assert unlabeled.shape == x[:4].shape
    assert_unchanged(busy_net, before)


def test_clear_refusals(trained_net, digits, monkeypatch) -> None:
    with pytest.raises(ValueError, match="bounds=None"):
        AutoAttack(0.1, bounds=None)
    with pytest.raises(ValueError, match="bounds"):
        AutoAttack(0.1, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="eps"):
        AutoAttack(0.0)
    with pytest.raises(ValueError, match="same threat model"):
        AutoAttack(0.1, pgd=PGD(eps=0.05))
    with pytest.raises(TypeError, match="steps"):
        AutoAttack(0.1, steps=2.5)
    with pytest.raises(ValueError, match="'pgd' or 'autoattack'"):
        as_attack("fgsm", names=True)
    with pytest.raises(TypeError, match="build one"):  # strategies and scoring take objects
        as_attack("autoattack")
    x, y, z = digits
    with pytest.raises(ValueError, match="n_classes=5 but the model outputs"):
        evaluate(trained_net, Pool(x[:4], z[:4], labels=y[:4]), attack=AutoAttack(n_classes=5))
    with pytest.raises(ValueError, match="n_classes=3: .*at least 4 classes"):
        AutoAttack(n_classes=3)
    three = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 3))
    with pytest.raises(ValueError, match="n_classes=3: .*at least 4 classes"):
        evaluate(three, Pool(x[:4], z[:4], labels=y[:4] % 3), attack="autoattack")
    tabular = torch.nn.Sequential(torch.nn.Linear(5, 3))
    rows = Pool(torch.rand(4, 5), [0, 1, 0, 1], labels=[0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"image batches \(N, C, H, W\)"):
        evaluate(tabular, rows, attack="autoattack")
    with pytest.raises(ValueError, match="outside bounds"):
        evaluate(trained_net, Pool(x[:4] * 3, z[:4], labels=y[:4]), attack=AutoAttack(EPS))
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match="pip install torchattacks"):
        evaluate(
            make_net(num_classes=3),
            Pool(torch.rand(2, 1, 8, 8), [0, 1], labels=[0, 1]),
            attack="autoattack",
        )
