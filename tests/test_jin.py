"""JIN against a brute-force ranking; the protocol's checks; models left as they were."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fral import JIN, PGD, Pool, QueryStrategy
from fral.attacks import pgd
from fral.protocol import Strategy, check_budget, top_budget
from fral.scores import kl_from_logits, zscore
from tests.utils import assert_unchanged, make_net, snapshot

NO_START = PGD(random_start=False)

# Most tests here score the whole pool on purpose; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:JIN got neither:UserWarning")


def brute_force(model_r, model_s, x):
    """Eq. 2-4 computed directly, sample by sample, with plain model calls."""
    model_r.eval()
    model_s.eval()
    rows_std, rows_rob = [], []
    for xi in x.split(1):
        with torch.no_grad():
            lr, ls = model_r(xi), model_s(xi)
        x_adv = pgd(model_r, xi, random_start=False, optimize=False)
        with torch.no_grad():
            la = model_r(x_adv)
        rows_std.append(kl_from_logits(ls, lr))
        rows_rob.append(kl_from_logits(lr, la))
    return torch.cat(rows_std), torch.cat(rows_rob)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model_r, model_s = make_net(seed=1), make_net(seed=2)
    x = torch.rand(60, 1, 8, 8)
    groups = torch.arange(60) % 3
    return model_r, model_s, Pool(x, groups), x


def ranking(scores: torch.Tensor) -> torch.Tensor:
    return torch.sort(scores, descending=True, stable=True).indices


def test_picks_equal_a_brute_force_ranking(setup) -> None:
    model_r, model_s, pool, x = setup
    std, rob = brute_force(model_r, model_s, x)
    fused = zscore(std) + zscore(rob)
    picks = JIN(15, attack=NO_START).select(model_r, model_s, pool)
    assert torch.equal(picks, ranking(fused)[:15])
    scores = JIN(15, attack=NO_START).score(model_r, model_s, pool)
    assert torch.allclose(scores, fused, atol=1e-4)


def test_group_restriction_and_ablations(setup) -> None:
    model_r, model_s, pool, x = setup
    std, rob = brute_force(model_r, model_s, x)
    members = pool.group_indices(2)
    picks = JIN(8, attack=NO_START).select(model_r, model_s, pool, group=2)
    assert picks.dtype == torch.int64 and len(set(picks.tolist())) == 8
    assert (pool.groups[picks] == 2).all()
    fused = zscore(std[members]) + zscore(rob[members])  # z-scores over the group only
    assert torch.equal(picks, members[ranking(fused)[:8]])
    s_only = JIN(8, attack=NO_START, components=("standard",)).select(
        model_r, model_s, pool, group=2
    )
    assert torch.equal(s_only, members[ranking(std[members])[:8]])
    r_only = JIN(8, attack=NO_START, components=("robust",))
    assert r_only.requires == frozenset()
    assert torch.equal(
        r_only.select(model_r, None, pool, group=2), members[ranking(rob[members])[:8]]
    )
    weighted = JIN(8, attack=NO_START, weights=(2.0, 0.5)).score(model_r, model_s, pool)
    assert torch.allclose(weighted, 2 * zscore(std) + 0.5 * zscore(rob), atol=1e-4)


def test_worst_group_comes_from_validation(trained_net, digits) -> None:
    x, y, _ = digits
    groups = (y >= 8).long()
    x = torch.where((groups == 1).view(-1, 1, 1, 1), x.flip(-1), x)  # group 1 is hard
    validation = Pool(x[:400], groups[:400], labels=y[:400])
    pool = Pool(x[400:900], groups[400:900])
    model_s = make_net(num_classes=10)
    picks = JIN(20, random_state=0).select(trained_net, model_s, pool, validation=validation)
    assert (pool.groups[picks] == 1).all()
    scores = JIN(20, random_state=0).score(
        trained_net, model_s, pool, indices=pool.group_indices(1)
    )
    chosen = scores[torch.searchsorted(pool.group_indices(1), picks)]
    assert (chosen[:-1] >= chosen[1:]).all()  # best first
    # Group 1 exhausted: the next-worst group with candidates is used, with a warning.
    only_easy = Pool(
        x[400:900][groups[400:900] == 0], groups[400:900][groups[400:900] == 0], num_groups=2
    )
    with pytest.warns(UserWarning, match="no candidates left"):
        fallback = JIN(5, random_state=0).select(
            trained_net, model_s, only_easy, validation=validation
        )
    assert len(fallback) == 5


def test_same_seed_same_picks_with_random_starts(setup) -> None:
    model_r, model_s, pool, _ = setup
    attack = PGD(eps=0.3, alpha=0.1, steps=2)
    a = JIN(10, attack=attack, random_state=7).select(model_r, model_s, pool)
    b = JIN(10, attack=attack, random_state=7).select(model_r, model_s, pool)
    assert torch.equal(a, b)
    strategy = JIN(10, attack=attack, random_state=7)
    strategy.select(model_r, model_s, pool)
    state = strategy.state_dict()
    second = strategy.select(model_r, model_s, pool)
    strategy.load_state_dict(state)
    assert torch.equal(strategy.select(model_r, model_s, pool), second)


@pytest.mark.parametrize("train", [True, False])
def test_models_come_back_unchanged(setup, train) -> None:
    model_r, model_s, pool, x = setup
    model_r.train(train)
    model_s.train(not train)
    before_r, before_s = snapshot(model_r), snapshot(model_s)
    validation = Pool(x[:30], pool.groups[:30], labels=torch.arange(30) % 4)
    JIN(5).select(model_r, model_s, pool, validation=validation)
    JIN(5, optimize=False).select(model_r, model_s, pool)
    JIN(5).score(model_r, model_s, pool)
    assert_unchanged(model_r, before_r)
    assert_unchanged(model_s, before_s)


def test_budget_above_candidates_returns_all_with_a_warning(setup) -> None:
    model_r, model_s, pool, _ = setup
    with pytest.warns(UserWarning, match="exceeds the 20 candidates"):
        picks = JIN(50, fill=False).select(model_r, model_s, pool, group=1)
    assert sorted(picks.tolist()) == pool.group_indices(1).tolist()


def test_bad_inputs_name_the_problem(setup) -> None:
    model_r, model_s, pool, _ = setup
    jin = JIN(5)
    with pytest.raises(ValueError, match="requires `model_s`"):
        jin.select(model_r, None, pool)
    with pytest.raises(TypeError, match="Pool as model_s"):
        jin.select(model_r, pool)
    with pytest.raises(ValueError, match="needs the pool"):
        jin.select(model_r, model_s)
    with pytest.raises(ValueError, match="empty pool"):
        jin.select(model_r, model_s, Pool(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=int)))
    with pytest.raises(ValueError, match="group 3"):
        jin.select(model_r, model_s, pool, group=3)
    with pytest.raises(ValueError, match="group 1 has no candidates"):
        jin.select(model_r, model_s, Pool(torch.rand(4, 1, 8, 8), [0, 0, 2, 2]), group=1)
    with pytest.raises(TypeError, match="group"):
        jin.select(model_r, model_s, pool, group=1.0)
    with pytest.raises(TypeError, match="model_r"):
        jin.select("model", model_s, pool)
    with pytest.raises(ValueError, match="labels"):
        jin.select(model_r, model_s, pool, validation=pool)
    with pytest.raises(ValueError, match="budget"):
        JIN(0)
    with pytest.raises(TypeError, match="budget"):
        JIN(2.5)
    with pytest.raises(ValueError, match="components"):
        JIN(3, components=("standard", "adversarial"))
    with pytest.raises(ValueError, match="weights"):
        JIN(3, weights=(1.0,))
    with pytest.raises(ValueError, match="criterion"):
        JIN(3, criterion="max")


def test_nan_logits_are_refused(setup) -> None:
    model_r, _, pool, _ = setup

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.flatten(1)) * float("nan")

    with pytest.raises(ValueError, match="NaN"):
        JIN(3).select(model_r, Broken(), pool)


def test_models_on_different_devices_are_refused_on_any_machine(setup) -> None:
    model_r, model_s, pool, _ = setup
    with pytest.raises(ValueError, match="model_r is on the meta device"):
        JIN(3).select(copy.deepcopy(model_r).to("meta"), model_s, pool)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_models_on_different_devices_are_refused(setup) -> None:
    model_r, model_s, pool, _ = setup
    with pytest.raises(ValueError, match="one device"):
        JIN(3).select(model_r.cuda(), model_s, pool)


def test_protocol_and_helpers() -> None:
    assert isinstance(JIN(3), QueryStrategy)
    assert not isinstance(object(), QueryStrategy)
    assert check_budget(3) == 3
    with pytest.raises(TypeError):
        check_budget(True)
    scores = torch.tensor([0.5, 2.0, 0.5, 2.0, 1.0])
    assert top_budget(scores, 4).tolist() == [1, 3, 4, 0]  # ties: lower position first
    with pytest.raises(ValueError, match="NaN"):
        top_budget(torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(NotImplementedError):
        Strategy(2).select(make_net(), None, Pool(torch.rand(3, 1, 8, 8), [0, 1, 0]))
