"""RAND, ENT, G-RAND and G-ENT: the selection contract, group handling, seeds, entropy ranking.

Also: every strategy's warnings point at the user's ``select`` call.
"""

from __future__ import annotations

import copy

import pytest
import torch

from fral.pool import Pool
from fral.predict import logits
from fral.strategies.badge import BADGE
from fral.strategies.coreset import CSET
from fral.strategies.entropy import ENT
from fral.strategies.group_entropy import GENT
from fral.strategies.group_random import GRAND
from fral.strategies.jin import JIN
from fral.strategies.minmax import MinMax
from fral.strategies.random import RAND
from tests.utils import assert_unchanged, make_net, snapshot

GROUP_SIZES = (50, 14, 36)  # group 1 is smaller than some budgets below


def make_pool(seed: int = 0) -> Pool:
    generator = torch.Generator().manual_seed(seed)
    groups = torch.cat([torch.full((size,), g) for g, size in enumerate(GROUP_SIZES)])
    groups = groups[torch.randperm(groups.numel(), generator=generator)]
    return Pool(torch.rand(groups.numel(), 1, 8, 8, generator=generator), groups)


def hand_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of an eval-mode copy of ``model``, in float64, without fral."""
    clone = copy.deepcopy(model).eval().double()
    with torch.no_grad():
        return clone(x.double())


def hand_entropy(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    p = hand_logits(model, x).softmax(1)
    return -(p * p.log()).sum(1)


def validation_with_ranking(model: torch.nn.Module, accuracy: dict[int, float]) -> Pool:
    """A validation set on which ``model`` has (clean) accuracy ``accuracy[g]`` in group g."""
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(60, 1, 8, 8, generator=generator)
    groups = torch.arange(60) % 3
    predicted = logits(model, x).argmax(1)
    labels = predicted.clone()
    for group, share in accuracy.items():
        members = torch.nonzero(groups == group).flatten()
        wrong = members[: round(len(members) * (1 - share))]
        labels[wrong] = (predicted[wrong] + 1) % 4
    return Pool(x, groups, labels=labels)


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_pool()


@pytest.fixture(scope="module")
def model_r() -> torch.nn.Module:
    return make_net(0)


@pytest.fixture(scope="module")
def model_s() -> torch.nn.Module:
    return make_net(1)


@pytest.fixture(scope="module")
def validation(model_r) -> Pool:
    # group 1 worst, then group 0, then group 2
    return validation_with_ranking(model_r, {0: 0.5, 1: 0.0, 2: 1.0})


STRATEGIES = {
    "RAND": lambda budget, seed: RAND(budget, random_state=seed),
    "ENT": lambda budget, seed: ENT(budget, random_state=seed),
    "ENT-standard": lambda budget, seed: ENT(budget, model="standard", random_state=seed),
    "G-RAND": lambda budget, seed: GRAND(budget, criterion="clean", random_state=seed),
    "G-ENT": lambda budget, seed: GENT(budget, criterion="clean", random_state=seed),
}


def check_picks(picks: torch.Tensor, pool: Pool, budget: int) -> None:
    assert picks.dtype == torch.int64 and picks.device.type == "cpu" and picks.dim() == 1
    assert 0 < picks.numel() <= budget
    assert picks.unique().numel() == picks.numel()
    assert int(picks.min()) >= 0 and int(picks.max()) < len(pool)


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("budget", [1, 9, 14])
def test_contract(name, budget, pool, model_r, model_s, validation):
    picks = STRATEGIES[name](budget, 0).select(model_r, model_s, pool, validation=validation)
    check_picks(picks, pool, budget)
    assert picks.numel() == budget


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("group", [0, 1, 2])
def test_group_restriction(name, group, pool, model_r, model_s):
    picks = STRATEGIES[name](10, 0).select(model_r, model_s, pool, group=group)
    check_picks(picks, pool, 10)
    assert picks.numel() == 10
    assert bool((pool.groups[picks] == group).all())


@pytest.mark.parametrize("name", ["RAND", "G-RAND"])
def test_random_strategies_are_seeded(name, pool, model_r, validation):
    def picks(seed: int) -> torch.Tensor:
        return STRATEGIES[name](12, seed).select(model_r, pool=pool, validation=validation)

    assert torch.equal(picks(3), picks(3))
    assert not torch.equal(picks(3), picks(4))
    strategy = STRATEGIES[name](12, 3)
    first = strategy.select(model_r, pool=pool, validation=validation)
    second = strategy.select(model_r, pool=pool, validation=validation)
    assert not torch.equal(first, second), "consecutive rounds must draw afresh"


def test_rand_covers_the_pool_uniformly(pool, model_r):
    counts = torch.zeros(len(pool))
    strategy = RAND(10, random_state=0)
    for _ in range(300):
        counts[strategy.select(model_r, pool=pool)] += 1
    expected = 300 * 10 / len(pool)
    assert float(counts.min()) > expected / 3 and float(counts.max()) < expected * 2


@pytest.mark.parametrize("which", ["robust", "standard"])
def test_ent_ranks_by_entropy_computed_by_hand(which, pool, model_r, model_s):
    strategy = ENT(15, model=which)
    picks = strategy.select(model_r, model_s, pool)
    entropy = hand_entropy(model_r if which == "robust" else model_s, pool.inputs)
    expected = torch.sort(entropy, descending=True, stable=True).indices[:15]
    assert torch.equal(picks, expected)
    score = strategy.score(model_r, model_s, pool)
    torch.testing.assert_close(score.double(), entropy, rtol=1e-4, atol=1e-5)


def test_ent_group_ranks_within_the_group(pool, model_r):
    picks = ENT(8).select(model_r, pool=pool, group=1)
    members = pool.group_indices(1)
    entropy = hand_entropy(model_r, pool.inputs[members])
    assert torch.equal(picks, members[torch.sort(entropy, descending=True).indices[:8]])


def test_gent_takes_the_worst_group_then_ranks_by_entropy(pool, model_r, validation):
    picks = GENT(8, criterion="clean").select(model_r, pool=pool, validation=validation)
    members = pool.group_indices(1)
    entropy = hand_entropy(model_r, pool.inputs[members])
    assert torch.equal(picks, members[torch.sort(entropy, descending=True).indices[:8]])
    other = validation_with_ranking(model_r, {0: 0.0, 1: 1.0, 2: 0.5})
    picks = GENT(8, criterion="clean").select(model_r, pool=pool, validation=other)
    assert bool((pool.groups[picks] == 0).all())


def test_gent_with_the_default_criterion_picks_one_group(pool, model_r, validation):
    picks = GENT(8, random_state=0).select(model_r, pool=pool, validation=validation)
    check_picks(picks, pool, 8)
    assert pool.groups[picks].unique().numel() == 1


def test_gent_strict_returns_a_small_group_whole_with_a_warning(pool, model_r):
    with pytest.warns(UserWarning, match="budget 20 exceeds"):
        picks = GENT(20, fill=False).select(model_r, pool=pool, group=1)
    assert sorted(picks.tolist()) == pool.group_indices(1).tolist()


def test_grand_fills_from_the_next_worst_group(pool, model_r, validation):
    budget = GROUP_SIZES[1] + 10
    picks = GRAND(budget, criterion="clean", random_state=0).select(
        model_r, pool=pool, validation=validation
    )
    check_picks(picks, pool, budget)
    assert picks.numel() == budget
    head, tail = picks[: GROUP_SIZES[1]], picks[GROUP_SIZES[1] :]
    assert sorted(head.tolist()) == pool.group_indices(1).tolist()
    assert bool((pool.groups[tail] == 0).all())


def test_grand_with_a_group_fills_by_ascending_id(pool, model_r):
    small, first = GROUP_SIZES[1], GROUP_SIZES[1] + GROUP_SIZES[0]
    picks = GRAND(first + 5, random_state=0).select(model_r, pool=pool, group=1)
    assert sorted(picks[:small].tolist()) == pool.group_indices(1).tolist()
    assert sorted(picks[small:first].tolist()) == pool.group_indices(0).tolist()
    assert bool((pool.groups[picks[first:]] == 2).all()) and picks[first:].numel() == 5


def test_grand_without_fill_stays_in_the_worst_group(pool, model_r, validation):
    strategy = GRAND(30, criterion="clean", fill=False, random_state=0)
    with pytest.warns(UserWarning, match="budget 30 exceeds"):
        picks = strategy.select(model_r, pool=pool, validation=validation)
    assert sorted(picks.tolist()) == pool.group_indices(1).tolist()


def test_budget_above_the_pool_returns_everything_with_a_warning(pool, model_r, validation):
    for strategy in (RAND(500, random_state=0), GRAND(500, criterion="clean", random_state=0)):
        with pytest.warns(UserWarning, match="exceeds"):
            picks = strategy.select(model_r, pool=pool, validation=validation)
        assert sorted(picks.tolist()) == list(range(len(pool)))


def test_warnings_point_at_the_select_call(pool, model_r, model_s, validation):
    # select -> _select -> helper (-> helper) -> warn: the user is told where *they* asked.
    keep = pool.groups != 1  # the worst group of `validation`
    without_worst = Pool(pool.inputs[keep], pool.groups[keep], num_groups=pool.num_groups)
    labeled = Pool(pool.inputs[:5], pool.groups[:5])
    small = Pool(pool.inputs[:7], pool.groups[:7])
    calls = [
        ("budget 500 exceeds", lambda: RAND(500).select(model_r, pool=pool)),
        ("budget 500 exceeds", lambda: ENT(500).select(model_r, pool=pool)),
        ("budget 20 exceeds", lambda: GENT(20, fill=False).select(model_r, pool=pool, group=1)),
        (
            "no candidates left",
            lambda: GENT(5, criterion="clean").select(
                model_r, pool=without_worst, validation=validation
            ),
        ),
        (
            "budget 30 exceeds",
            lambda: GRAND(30, criterion="clean", fill=False).select(
                model_r, pool=pool, validation=validation
            ),
        ),
        ("budget 20 exceeds", lambda: JIN(20, fill=False).select(model_r, model_s, pool, group=1)),
        (
            "no candidates left",
            lambda: JIN(5, criterion="clean").select(
                model_r, model_s, without_worst, validation=validation
            ),
        ),
        ("budget 10 exceeds", lambda: CSET(10).select(model_r, pool=small, labeled=labeled)),
        ("budget 10 exceeds", lambda: BADGE(10).select(model_r, pool=small)),
        (
            "budget 10 exceeds",
            lambda: MinMax(10, criterion="clean").select(
                model_r, pool=small, validation=validation
            ),
        ),
    ]
    for match, call in calls:
        with pytest.warns(UserWarning, match=match) as record:
            call()
        assert {w.filename for w in record if match in str(w.message)} == {__file__}, match


@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("train", [False, True])
def test_models_come_back_unchanged(name, train, pool):
    model_r, model_s = make_net(0, train=train), make_net(1, train=train)
    validation = validation_with_ranking(model_r, {0: 0.5, 1: 0.0, 2: 1.0})
    before_r, before_s = snapshot(model_r), snapshot(model_s)
    STRATEGIES[name](9, 0).select(model_r, model_s, pool, validation=validation)
    assert_unchanged(model_r, before_r)
    assert_unchanged(model_s, before_s)


def test_group_strategies_default_criterion_leaves_models_unchanged(pool, validation):
    model_r = make_net(0, train=True)
    before = snapshot(model_r)
    for strategy in (GRAND(9, random_state=0), GENT(9, random_state=0)):
        strategy.select(model_r, pool=pool, validation=validation)
    assert_unchanged(model_r, before)


def test_names_and_requirements():
    assert RAND(1).name == "RAND" and ENT(1).name == "ENT"
    assert GRAND(1).name == "G-RAND" and GENT(1).name == "G-ENT"
    assert RAND(1).requires == frozenset() and ENT(1).requires == frozenset()
    assert ENT(1, model="standard").requires == {"model_s"}
    assert GRAND(1).requires == {"validation"} and GENT(1).requires == {"validation"}
    assert GENT(1, model="standard").requires == {"validation", "model_s"}
    assert GRAND.validation_finds_group and GENT.validation_finds_group


@pytest.mark.parametrize("strategy", [GRAND(5), GENT(5)], ids=["G-RAND", "G-ENT"])
def test_group_strategies_need_validation_or_a_group(strategy, pool, model_r):
    with pytest.raises(ValueError, match="requires `validation`"):
        strategy.select(model_r, pool=pool)
    check_picks(strategy.select(model_r, pool=pool, group=2), pool, 5)


def test_bad_inputs_raise_clear_errors(pool, model_r, validation):
    with pytest.raises(ValueError, match="requires `model_s`"):
        ENT(5, model="standard").select(model_r, pool=pool)
    with pytest.raises(ValueError, match="model must be one of"):
        ENT(5, model="teacher")
    with pytest.raises(ValueError, match="criterion must be one of"):
        GRAND(5, criterion="worst")
    with pytest.raises(ValueError, match="metric must be one of"):
        GENT(5, metric="auc")
    with pytest.raises(ValueError, match="batch_size"):
        ENT(5, batch_size=0)
    with pytest.raises(ValueError, match="budget"):
        RAND(0)
    with pytest.raises(ValueError, match="not a group id"):
        RAND(5).select(model_r, pool=pool, group=3)
    unlabelled = Pool(validation.inputs, validation.groups)
    with pytest.raises(ValueError, match="labels"):
        GRAND(5).select(model_r, pool=pool, validation=unlabelled)
    empty_group = Pool(pool.inputs, pool.groups, num_groups=4)
    with pytest.raises(ValueError, match="group 3 has no candidates"):
        GENT(5).select(model_r, pool=empty_group, group=3)
