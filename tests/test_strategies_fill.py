"""Equal budgets: every group-aware strategy tops up from the next group; ``last_selection``.

Pool groups have 50, 14 and 36 candidates; on ``validation`` (clean accuracy) group 1 is the
worst, then group 0, then group 2.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from fral.pool import Pool
from fral.strategies import STRATEGIES, build_strategy
from fral.strategies.fairal import FairAL
from fral.strategies.group_entropy import GENT
from fral.strategies.group_random import GRAND
from fral.strategies.jin import JIN
from fral.strategies.minmax import MinMax
from fral.strategies.opt import OPT
from tests.test_strategies_basic import GROUP_SIZES, make_pool, validation_with_ranking
from tests.utils import make_net

SMALL = GROUP_SIZES[1]  # group 1, the worst one


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_pool()


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return make_net(0), make_net(1)


@pytest.fixture(scope="module")
def validation(models) -> Pool:
    return validation_with_ranking(models[0], {0: 0.5, 1: 0.0, 2: 1.0})


def tiny_fairal(budget: int, **options) -> FairAL:
    settings = {"top_k": budget, "max_labels": 1, "finetune_steps": 1, "validation_size": 16}
    settings |= {"progress": False, "random_state": 0}
    return FairAL(budget, **settings | options)


# Each builds a group-aware strategy of the given budget whose candidates come group by group.
GROUP_AWARE = {
    "JIN": lambda budget, **options: JIN(budget, criterion="clean", random_state=0, **options),
    "G-ENT": lambda budget, **options: GENT(budget, criterion="clean", **options),
    "G-RAND": lambda budget, **options: GRAND(budget, criterion="clean", random_state=0, **options),
    "FairAL": tiny_fairal,
}


@pytest.mark.parametrize("name", GROUP_AWARE)
def test_a_short_group_is_topped_up_from_the_next_by_id(name, pool, models, validation):
    budget = SMALL + 6
    strategy = GROUP_AWARE[name](budget)
    picks = strategy.select(*models, pool, validation=validation, group=1)
    assert picks.numel() == budget and picks.unique().numel() == budget
    assert sorted(picks[:SMALL].tolist()) == pool.group_indices(1).tolist()
    assert bool((pool.groups[picks[SMALL:]] == 0).all())  # group=k: the others by id
    assert strategy.last_selection == {"groups": [1, 0]}


@pytest.mark.parametrize("name", GROUP_AWARE)
def test_fill_false_keeps_the_papers_strict_rule(name, pool, models, validation):
    strategy = GROUP_AWARE[name](SMALL + 6, fill=False)
    with pytest.warns(UserWarning, match=f"budget {SMALL + 6} exceeds the {SMALL} candidates"):
        picks = strategy.select(*models, pool, validation=validation, group=1)
    assert sorted(picks.tolist()) == pool.group_indices(1).tolist()
    assert strategy.last_selection == {"groups": [1]}


@pytest.mark.parametrize("name", ["JIN", "G-ENT", "G-RAND"])
def test_without_a_group_the_top_up_follows_the_validation_ranking(name, pool, models, validation):
    budget = SMALL + GROUP_SIZES[0] + 3
    strategy = GROUP_AWARE[name](budget)
    picks = strategy.select(*models, pool, validation=validation)
    assert pool.groups[picks].tolist() == [1] * SMALL + [0] * GROUP_SIZES[0] + [2] * 3
    assert strategy.last_selection == {"groups": [1, 0, 2]}


@pytest.mark.parametrize("name", ["JIN", "G-ENT"])
def test_the_top_up_ranks_the_next_group_by_its_own_scores(name, pool, models, validation):
    # Each group is ranked within itself: the top-up equals the strategy asked for that group.
    build = GROUP_AWARE[name]
    picks = build(SMALL + 6).select(*models, pool, validation=validation)
    worst = build(SMALL).select(*models, pool, group=1)
    next_group = build(6).select(*models, pool, group=0)
    assert torch.equal(picks, torch.cat([worst, next_group]))


def test_the_top_up_skips_an_exhausted_group(models, validation):
    full = make_pool()
    keep = full.groups != 0  # group 0, next after the worst, has no candidates left
    pool = Pool(full.inputs[keep], full.groups[keep], num_groups=3)
    strategy = JIN(SMALL + 5, criterion="clean", random_state=0)
    picks = strategy.select(*models, pool, validation=validation)
    assert pool.groups[picks].tolist() == [1] * SMALL + [2] * 5
    assert strategy.last_selection == {"groups": [1, 2]}


def _worst_first_validation(model: torch.nn.Module, groups: int) -> Pool:
    """Validation with only groups 0 and 1 (pool has ``groups``), group 1 the worse."""
    validation = validation_with_ranking(model, {0: 0.5, 1: 0.0, 2: 1.0})
    keep = validation.groups < 2
    return Pool(
        validation.inputs[keep],
        validation.groups[keep],
        labels=validation.labels[keep],
        num_groups=groups,
    )


def test_minmax_fill_gives_a_short_groups_share_to_the_others(pool, models, validation):
    # First call: mu = (1/6, 2/3, 1/6) (group 1 has the largest error), budget 30 -> shares
    # (5, 20, 5), but group 1 has only 14 candidates.
    strict = MinMax(30, criterion="clean", fill=False, random_state=0)
    with pytest.warns(UserWarning, match="budget 30 exceeds"):
        picks = strict.select(models[0], pool=pool, validation=validation)
    assert torch.bincount(pool.groups[picks], minlength=3).tolist() == [5, SMALL, 5]
    filled = MinMax(30, criterion="clean", random_state=0)
    picks = filled.select(models[0], pool=pool, validation=validation)
    counts = torch.bincount(pool.groups[picks], minlength=3)
    assert int(counts.sum()) == 30 and int(counts[1]) == SMALL
    assert filled.last_selection == {"groups": [1, 0, 2]}


def test_opt_fill_tops_up_from_groups_without_validation_samples(pool, models):
    validation = _worst_first_validation(models[0], 3)
    labeled = Pool(pool.inputs[:30], pool.groups[:30], num_groups=3)
    budget = GROUP_SIZES[0] + SMALL + 4
    strict = OPT(budget, criterion="clean", random_state=0, fill=False)
    with pytest.warns(UserWarning, match=f"budget {budget} exceeds"):
        picks = strict.select(models[0], pool=pool, validation=validation, labeled=labeled)
    assert sorted(set(pool.groups[picks].tolist())) == [0, 1]
    assert picks.numel() == GROUP_SIZES[0] + SMALL
    filled = OPT(budget, criterion="clean", random_state=0)
    picks = filled.select(models[0], pool=pool, validation=validation, labeled=labeled)
    assert picks.numel() == budget
    assert pool.groups[picks[-4:]].tolist() == [2] * 4
    assert filled.last_selection["groups"][-1] == 2


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_reports_its_groups(name, pool, models, validation):
    options = {"random_state": 0}
    if name == "fairal":
        options |= {"top_k": 4, "max_labels": 1, "finetune_steps": 1, "validation_size": 16}
        options |= {"progress": False}
    strategy = build_strategy(name, 4, **options)
    assert strategy.last_selection is None
    labeled = Pool(pool.inputs[:10], pool.groups[:10], num_groups=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picks = strategy.select(*models, pool, labeled=labeled, validation=validation)
    groups = strategy.last_selection["groups"]
    if name in {"rand", "ent", "cset", "badge", "fairal"}:
        assert groups is None  # group-blind: the whole pool
        picks = strategy.select(*models, pool, labeled=labeled, validation=validation, group=2)
        assert strategy.last_selection == {"groups": [2]}
    else:
        seen = list(dict.fromkeys(pool.groups[picks].tolist()))
        assert groups == seen and groups


def test_jin_without_validation_or_group_warns_that_it_ignores_groups(pool, models, validation):
    with pytest.warns(UserWarning, match="neither `validation` nor `group`.*no fairness"):
        JIN(3, random_state=0).select(*models, pool)
    strategy = JIN(3, criterion="clean", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strategy.select(*models, pool, group=2)
        strategy.select(*models, pool, validation=validation)
    assert strategy.last_selection == {"groups": [1]}


def test_drawing_only_from_groups_without_validation_samples_warns(pool, models):
    validation = _worst_first_validation(models[0], 3)
    only_2 = pool.subset(pool.group_indices(2))
    only_2 = Pool(only_2.inputs, only_2.groups, num_groups=3)
    strategy = GRAND(5, criterion="clean", random_state=0)
    with pytest.warns(UserWarning, match=r"worst group\(s\) \[1, 0\] have no candidates left"):
        picks = strategy.select(models[0], pool=only_2, validation=validation)
    assert picks.numel() == 5 and strategy.last_selection == {"groups": [2]}
