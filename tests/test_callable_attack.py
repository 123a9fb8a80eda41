"""A user's own attack function cannot change the model it is handed, and repeats under a seed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fral import JIN, Pool
from fral.attacks import as_attack
from tests.utils import assert_unchanged, make_net, snapshot


def careless_attack(model, x, y):
    """Puts the model in train mode (BatchNorm statistics move), calls backward (``.grad``
    accumulates) and draws its random start from torch's global RNG."""
    model.train()
    x_adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    loss.backward()
    return (x_adv + 0.02 * x_adv.grad.sign()).clamp(0, 1).detach()


def test_a_careless_attack_leaves_the_model_as_it_was() -> None:
    for train in (False, True):
        model = make_net(train=train)
        before = snapshot(model)
        x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 4
        x_adv = as_attack(careless_attack)(model, x, y, generator=torch.Generator().manual_seed(0))
        assert x_adv.shape == x.shape and not torch.equal(x_adv, x)
        assert_unchanged(model, before)


def test_two_identical_calls_give_the_same_scores() -> None:
    model_r, model_s = make_net(seed=0), make_net(seed=1)
    pool = Pool(torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(3)), [0, 1] * 6)
    before = snapshot(model_r)
    first = JIN(4, attack=careless_attack, random_state=5).score(model_r, model_s, pool)
    torch.manual_seed(123)  # the global RNG moves between the calls: no effect
    second = JIN(4, attack=careless_attack, random_state=5).score(model_r, model_s, pool)
    assert torch.equal(first, second)
    assert_unchanged(model_r, before)
