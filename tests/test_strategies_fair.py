"""MinMax, OPT and FairAL: the fair-active-learning baselines, on tiny models and pools."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fral.metrics import evaluate, group_risks
from fral.pool import Pool
from fral.predict import logits
from fral.scores import entropy
from fral.strategies.fairal import FairAL, fairal_scores, label_weights, min_max_normalise
from fral.strategies.minmax import (
    MinMax,
    largest_remainder,
    split_budget,
    update_weights,
)
from fral.strategies.opt import OPT, optimistic_bounds, plan_draws
from tests.utils import assert_unchanged, make_net, snapshot

GROUPS = 3


def make_pool(size: int, seed: int, *, labels: bool = False, groups: int = GROUPS) -> Pool:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(size, 1, 8, 8, generator=generator)
    group_ids = torch.randint(0, groups, (size,), generator=generator)
    classes = torch.randint(0, 4, (size,), generator=generator) if labels else None
    return Pool(inputs, group_ids, labels=classes, num_groups=groups)


@pytest.fixture(scope="module")
def data() -> dict[str, Pool]:
    return {
        "pool": make_pool(120, 0),
        "validation": make_pool(90, 1, labels=True),
        "labeled": make_pool(30, 2, labels=True),
    }


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return make_net(0)


def tiny_fairal(budget: int = 2, **options) -> FairAL:
    settings = {
        "top_k": 4,
        "max_labels": 2,
        "finetune_steps": 2,
        "validation_size": 32,
        "progress": False,
        "random_state": 0,
    }
    settings.update(options)
    return FairAL(budget, **settings)


def manual_group_cross_entropy(model: nn.Module, validation: Pool) -> torch.Tensor:
    """Mean clean cross-entropy of ``model`` per validation group, by hand."""
    losses = F.cross_entropy(logits(model, validation), validation.labels, reduction="none")
    return torch.stack(
        [losses[validation.groups == g].mean() for g in range(validation.num_groups)]
    ).double()


def check_picks(picks: torch.Tensor, pool: Pool, budget: int) -> None:
    assert picks.dtype == torch.int64 and picks.device.type == "cpu"
    assert picks.dim() == 1 and 0 < picks.numel() <= budget
    assert picks.unique().numel() == picks.numel()
    assert int(picks.min()) >= 0 and int(picks.max()) < len(pool)


STRATEGIES = {
    "minmax": lambda seed: MinMax(10, random_state=seed),
    "opt": lambda seed: OPT(10, sub_batches=3, random_state=seed),
    "fairal": lambda seed: tiny_fairal(random_state=seed),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_valid_and_reproducible_picks(name: str, data: dict[str, Pool], model: nn.Module) -> None:
    build = STRATEGIES[name]
    picks = build(0).select(model, pool=data["pool"], **_inputs(data))
    check_picks(picks, data["pool"], build(0).budget)
    assert torch.equal(picks, build(0).select(model, pool=data["pool"], **_inputs(data)))


def _inputs(data: dict[str, Pool]) -> dict[str, Pool]:
    return {"validation": data["validation"], "labeled": data["labeled"]}


@pytest.mark.parametrize("name", ["minmax", "opt"])
def test_random_draws_differ_across_seeds(
    name: str, data: dict[str, Pool], model: nn.Module
) -> None:
    build = STRATEGIES[name]
    first = build(0).select(model, pool=data["pool"], **_inputs(data))
    second = build(1).select(model, pool=data["pool"], **_inputs(data))
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("train", [True, False])
def test_models_come_back_unchanged(name: str, train: bool, data: dict[str, Pool]) -> None:
    net = make_net(3, train=train)
    before = snapshot(net)
    STRATEGIES[name](0).select(net, pool=data["pool"], **_inputs(data))
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_missing_validation_is_a_clear_error(
    name: str, data: dict[str, Pool], model: nn.Module
) -> None:
    with pytest.raises(ValueError, match="requires `validation`"):
        STRATEGIES[name](0).select(model, pool=data["pool"], labeled=data["labeled"])


# MinMax


def test_update_weights_by_hand() -> None:
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    moved = update_weights(uniform, torch.tensor([0.2, 0.5, 0.1]), 0.5)
    assert torch.allclose(moved, torch.tensor([1 / 6, 2 / 3, 1 / 6], dtype=torch.float64))
    tied = update_weights(uniform, torch.tensor([0.5, 0.5, 0.1]), 0.5)
    assert torch.allclose(tied, torch.tensor([5 / 12, 5 / 12, 1 / 6], dtype=torch.float64))
    unknown = update_weights(uniform, torch.tensor([math.nan, 0.3, 0.1]), 1.0)
    assert torch.equal(unknown, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="no group has a known risk"):
        update_weights(uniform, torch.full((3,), math.nan), 0.5)
    with pytest.raises(ValueError, match="step"):
        update_weights(uniform, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="one entry per group"):
        update_weights(uniform, torch.zeros(2), 0.5)


@pytest.mark.parametrize(
    ("budget", "weights", "available", "expected"),
    [
        (10, [0.5, 0.3, 0.2], [50, 50, 50], [5, 3, 2]),
        (10, [1 / 3, 1 / 3, 1 / 3], [50, 50, 50], [4, 3, 3]),  # remainder to the lower id
        (7, [0.45, 0.35, 0.2], [50, 50, 50], [3, 3, 1]),  # quotas 3.15, 2.45, 1.4
        (10, [0.6, 0.2, 0.2], [2, 10, 10], [2, 4, 4]),  # group 0's rest split 1:1
        (7, [1.0, 0.0, 0.0], [3, 5, 2], [3, 3, 1]),  # rest by spare candidates 5:2
        (10, [0.2, 0.3, 0.5], [2, 1, 0], [2, 1, 0]),  # fewer candidates than budget
    ],
)
def test_split_budget_by_hand(budget, weights, available, expected) -> None:
    counts = split_budget(budget, torch.tensor(weights), torch.tensor(available))
    assert counts.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    budget=st.integers(1, 40),
    weights=st.lists(st.floats(0, 1), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    data=st.data(),
)
def test_split_budget_properties(budget: int, weights: list[float], data) -> None:
    available = data.draw(
        st.lists(st.integers(0, 15), min_size=len(weights), max_size=len(weights))
    )
    weights = torch.tensor(weights, dtype=torch.float64)
    counts = split_budget(budget, weights, torch.tensor(available))
    assert int(counts.sum()) == min(budget, sum(available))
    assert bool((counts >= 0).all()) and bool((counts <= torch.tensor(available)).all())
    if sum(available) >= budget and min(available) >= budget:
        assert counts.tolist() == largest_remainder(budget, weights).tolist()


def test_split_budget_rejects_bad_weights() -> None:
    with pytest.raises(ValueError, match="positive sum"):
        split_budget(5, torch.zeros(2), torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="non-negative"):
        split_budget(5, torch.tensor([1.0, -1.0]), torch.tensor([3, 3]))


def test_group_risks_match_metrics_and_hand_computation(
    data: dict[str, Pool], model: nn.Module
) -> None:
    validation = data["validation"]
    accuracy = evaluate(model, validation, robust=False).clean["accuracy"].per_group
    errors = group_risks(model, validation, risk="error", criterion="clean")
    assert torch.allclose(errors, 1 - accuracy)
    cross_entropy = group_risks(model, validation, risk="ce", criterion="clean")
    assert torch.allclose(cross_entropy, manual_group_cross_entropy(model, validation), atol=1e-5)
    missing = Pool(validation.inputs, validation.groups, labels=validation.labels, num_groups=4)
    assert math.isnan(group_risks(model, missing, criterion="clean")[3])


def test_minmax_splits_the_budget_by_updated_weights(
    data: dict[str, Pool], model: nn.Module
) -> None:
    pool, validation = data["pool"], data["validation"]
    risks = group_risks(model, validation, risk="error", criterion="clean")
    strategy = MinMax(12, step=0.5, criterion="clean", random_state=0)
    picks = strategy.select(model, pool=pool, validation=validation)
    expected = update_weights(torch.full((GROUPS,), 1 / GROUPS), risks, 0.5)
    assert torch.allclose(strategy.group_weights, expected)
    counts = torch.bincount(pool.groups[picks], minlength=GROUPS)
    assert counts.tolist() == split_budget(12, expected, pool.group_counts()).tolist()
    # The weights persist: a second call moves them again from where they were. The risks have
    # not improved (same model), so APStar's K grows to 2 and the step halves.
    picks_again = strategy.select(model, pool=pool, validation=validation)
    assert torch.allclose(strategy.group_weights, update_weights(expected, risks, 0.5, shrink=2))
    assert not torch.equal(picks, picks_again)


def test_minmax_state_round_trip(data: dict[str, Pool], model: nn.Module) -> None:
    pool, validation = data["pool"], data["validation"]
    strategy = MinMax(8, criterion="clean", random_state=0)
    strategy.select(model, pool=pool, validation=validation)
    state = strategy.state_dict()
    resumed = MinMax(8, criterion="clean", random_state=99)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.group_weights, strategy.group_weights)
    assert torch.equal(
        resumed.select(model, pool=pool, validation=validation),
        strategy.select(model, pool=pool, validation=validation),
    )
    assert torch.equal(resumed.group_weights, strategy.group_weights)
    assert not torch.equal(state["group_weights"], strategy.group_weights)  # a copy, not a view
    fresh = MinMax(8, random_state=0)
    fresh.load_state_dict(MinMax(8, random_state=0).state_dict())
    assert fresh.group_weights is None


def test_minmax_rejects_a_changed_group_count(data: dict[str, Pool], model: nn.Module) -> None:
    strategy = MinMax(4, criterion="clean", random_state=0)
    strategy.select(model, pool=data["pool"], validation=data["validation"])
    two_groups = make_pool(40, 5, groups=2)
    validation = make_pool(30, 6, labels=True, groups=2)
    with pytest.raises(ValueError, match="weights for 3 groups"):
        strategy.select(model, pool=two_groups, validation=validation)


def test_minmax_warns_when_the_budget_exceeds_the_pool(
    data: dict[str, Pool], model: nn.Module
) -> None:
    small = make_pool(9, 7)
    with pytest.warns(UserWarning, match="exceeds"):
        picks = MinMax(20, criterion="clean", random_state=0).select(
            model, pool=small, validation=data["validation"]
        )
    assert sorted(picks.tolist()) == list(range(9))


# OPT


def test_optimistic_bounds_by_hand() -> None:
    bounds = optimistic_bounds(torch.tensor([0.5, 0.45, 0.3]), torch.tensor([4, 16, 0]), 1.0)
    assert torch.allclose(bounds[:2], torch.tensor([1.0, 0.7], dtype=torch.float64))
    assert bounds[2] == math.inf
    no_bonus = optimistic_bounds(torch.tensor([0.5, 0.3]), torch.tensor([0, 9]), 0.0)
    assert torch.allclose(no_bonus, torch.tensor([0.5, 0.3], dtype=torch.float64))


def test_plan_draws_recomputes_the_bonus_between_sub_batches() -> None:
    losses, labeled = torch.tensor([0.5, 0.45]), torch.tensor([4, 4])
    available = torch.tensor([50, 50])
    # Bounds 1.0 vs 0.95 -> group 0 (N0 = 6: 0.908) -> group 1 (N1 = 6: 0.858)
    # -> group 0 (N0 = 8: 0.854) -> group 1.
    plan = plan_draws(8, losses, labeled, available, exploration=1.0, sub_batches=4)
    assert plan == [(0, 2), (1, 2), (0, 2), (1, 2)]
    assert plan_draws(8, losses, labeled, available, exploration=1.0, sub_batches=1) == [(0, 8)]
    assert plan_draws(3, losses, labeled, available, exploration=1.0, sub_batches=9) == [
        (0, 1),
        (1, 1),
        (0, 1),
    ]


def test_plan_draws_skips_exhausted_and_unmeasured_groups() -> None:
    losses = torch.tensor([0.9, 0.5, math.nan])
    labeled = torch.tensor([10, 10, 0])
    plan = plan_draws(5, losses, labeled, torch.tensor([2, 9, 9]), exploration=0.0, sub_batches=1)
    assert plan == [(0, 2), (1, 3)]
    short = plan_draws(9, losses, labeled, torch.tensor([1, 2, 9]), exploration=0.0, sub_batches=2)
    assert short == [(0, 1), (1, 2)]
    assert (
        plan_draws(4, losses, labeled, torch.tensor([0, 0, 5]), exploration=0.0, sub_batches=1)
        == []
    )


def test_opt_picks_the_group_of_largest_loss(data: dict[str, Pool], model: nn.Module) -> None:
    pool, validation = data["pool"], data["validation"]
    losses = manual_group_cross_entropy(model, validation)
    strategy = OPT(10, exploration=0.0, sub_batches=1, criterion="clean", random_state=0)
    picks = strategy.select(model, pool=pool, validation=validation, labeled=data["labeled"])
    assert set(pool.groups[picks].tolist()) == {int(losses.argmax())}


def test_opt_draws_first_from_a_group_without_labels(
    data: dict[str, Pool], model: nn.Module
) -> None:
    pool, validation, labeled = data["pool"], data["validation"], data["labeled"]
    without_group_2 = labeled.subset(torch.nonzero(labeled.groups != 2).flatten())
    strategy = OPT(6, sub_batches=1, criterion="clean", random_state=0)
    picks = strategy.select(model, pool=pool, validation=validation, labeled=without_group_2)
    assert pool.groups[picks].tolist() == [2] * 6


def test_opt_sub_batches_follow_the_plan(data: dict[str, Pool], model: nn.Module) -> None:
    pool, validation, labeled = data["pool"], data["validation"], data["labeled"]
    losses = manual_group_cross_entropy(model, validation)
    strategy = OPT(12, exploration=3.0, sub_batches=6, criterion="clean", random_state=0)
    picks = strategy.select(model, pool=pool, validation=validation, labeled=labeled)
    plan = plan_draws(
        12, losses, labeled.group_counts(), pool.group_counts(), exploration=3.0, sub_batches=6
    )
    assert len({group for group, _ in plan}) > 1  # the bonus did move the argmax
    expected = [group for group, count in plan for _ in range(count)]
    assert pool.groups[picks].tolist() == expected


def test_opt_needs_a_labelled_set(data: dict[str, Pool], model: nn.Module) -> None:
    with pytest.raises(ValueError, match="requires `labeled`"):
        OPT(5).select(model, pool=data["pool"], validation=data["validation"])
    with pytest.raises(ValueError, match="sub_batches"):
        OPT(5, sub_batches=0)
    with pytest.raises(ValueError, match="exploration"):
        OPT(5, exploration=-1.0)


# FairAL


def test_fairal_score_composition_by_hand() -> None:
    entropies = torch.tensor([0.1, 0.5, 0.3])
    gains = torch.tensor([0.2, 0.0, 0.1])
    scores = fairal_scores(entropies, gains, 0.25)
    assert torch.allclose(
        scores, 0.25 * torch.tensor([0.0, 1.0, 0.5]) + 0.75 * torch.tensor([1.0, 0.0, 0.5])
    )
    constant = fairal_scores(entropies, torch.zeros(3), 0.5)
    assert torch.allclose(constant, 0.5 * torch.tensor([0.0, 1.0, 0.5]))
    assert torch.equal(min_max_normalise(torch.full((4,), 2.0)), torch.zeros(4))


def test_label_weights_by_hand() -> None:
    probabilities = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    labels, weights = label_weights(probabilities, 0.8, None)
    assert labels.tolist() == [[1, 2], [2, 0]]
    assert torch.allclose(weights, torch.tensor([[2 / 3, 1 / 3], [0.75, 0.25]]))
    labels, weights = label_weights(probabilities, 1.0, 1)
    assert labels.tolist() == [[1], [2]] and torch.equal(weights, torch.ones(2, 1))
    _, weights = label_weights(torch.tensor([[0.7, 0.3, 0.0], [0.4, 0.3, 0.3]]), 1.0, None)
    assert weights[0].tolist() == pytest.approx([0.7, 0.3, 0.0])


def test_fairal_picks_only_from_the_entropy_filter(data: dict[str, Pool], model: nn.Module) -> None:
    pool = data["pool"]
    top = set(torch.topk(entropy(logits(model, pool)), 4).indices.tolist())
    picks = tiny_fairal(3).select(model, pool=pool, validation=data["validation"])
    assert set(picks.tolist()) <= top


def linear_case() -> tuple[nn.Module, Pool, Pool]:
    """Three unit-vector inputs; only fine-tuning on ``e2`` with label 1 can fix group 1.

    Validation: ``e1`` (group 0, label 0, right) and ``e2`` (group 1, label 1, wrong, p = 0.45).
    Candidates ``e1, e2, e3``: without a bias, a step on ``e_i`` changes column ``i`` only.
    ``e3`` is the most uncertain (p = 0.5), ``e2`` the only one with a fairness gain.
    """
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, 0.2, 0.0], [-2.0, 0.0, 0.0]]))
    eye = torch.eye(3)
    pool = Pool(eye, [0, 1, 0])
    validation = Pool(
        torch.cat([eye[:1].repeat(5, 1), eye[1:2].repeat(5, 1)]),
        [0] * 5 + [1] * 5,
        labels=[0] * 5 + [1] * 5,
    )
    return model, pool, validation


def test_fairal_prefers_the_candidate_that_fixes_the_worst_group() -> None:
    model, pool, validation = linear_case()
    options = {"top_k": 3, "finetune_steps": 2, "lr": 0.5, "label_mass": 1.0}
    options |= {"progress": False, "random_state": 0}
    fairness = FairAL(1, alpha=0.0, **options).select(model, pool=pool, validation=validation)
    uncertainty = FairAL(1, alpha=1.0, **options).select(model, pool=pool, validation=validation)
    assert fairness.tolist() == [1]
    assert uncertainty.tolist() == [2]
    ranking = FairAL(3, alpha=0.0, **options).select(model, pool=pool, validation=validation)
    assert ranking.tolist() == [1, 2, 0]  # e3 and e1 tie at no gain: the more uncertain first


def test_fairal_attacked_criterion_replay_and_adversarial_finetuning(
    data: dict[str, Pool], model: nn.Module
) -> None:
    strategy = tiny_fairal(
        2,
        top_k=2,
        max_labels=1,
        finetune_steps=1,
        validation_size=16,
        criterion="mean",
        adversarial=True,
        replay=3,
    )
    assert strategy.requires == {"validation", "labeled"}
    before = snapshot(model)
    picks = strategy.select(model, pool=data["pool"], **_inputs(data))
    check_picks(picks, data["pool"], 2)
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="requires `labeled`"):
        strategy.select(model, pool=data["pool"], validation=data["validation"])


def test_fairal_restricts_to_a_given_group(data: dict[str, Pool], model: nn.Module) -> None:
    pool = data["pool"]
    picks = tiny_fairal(2).select(model, pool=pool, validation=data["validation"], group=1)
    assert set(pool.groups[picks].tolist()) == {1}


def test_fairal_shows_progress(data: dict[str, Pool], model: nn.Module, capsys) -> None:
    tiny_fairal(1, top_k=1, max_labels=1, progress=True).select(
        model, pool=data["pool"], validation=data["validation"]
    )
    assert "FairAL" in capsys.readouterr().err


def test_fairal_rejects_an_empty_validation_set(data: dict[str, Pool], model: nn.Module) -> None:
    nothing = torch.empty(0, dtype=torch.int64)
    empty = Pool(torch.empty(0, 1, 8, 8), nothing, labels=nothing)
    with pytest.raises(ValueError, match="validation is empty"):
        tiny_fairal().select(model, pool=data["pool"], validation=empty)


def test_fairal_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="top_k"):
        FairAL(5, top_k=3)
    with pytest.raises(ValueError, match="alpha"):
        FairAL(5, alpha=1.5)
    with pytest.raises(ValueError, match="label_mass"):
        FairAL(5, label_mass=0.0)
    with pytest.raises(ValueError, match="criterion"):
        FairAL(5, criterion="worst")


def test_minmax_follows_the_official_apstar_rule_with_shrinking_steps_and_patience(
    data: dict[str, Pool], model: nn.Module
) -> None:
    # APStar (official code): K grows by one on every call that does not lower the best
    # maximal risk, the step is alpha / K towards the groups at or above that best risk, and
    # after more than `patience` calls without improvement the weights stop moving.
    sequence = [[0.2, 0.5, 0.1], [0.3, 0.4, 0.45], [0.5, 0.3, 0.3], [0.5, 0.3, 0.3]]
    sequence += [[0.9, 0.0, 0.0]]
    strategy = MinMax(6, criterion="clean", patience=1, random_state=0)
    strategy.group_risks = lambda request: torch.tensor(sequence.pop(0), dtype=torch.float64)
    expected = [
        [1 / 6, 2 / 3, 1 / 6],  # improvement: best 0.5, K = 1, towards group 1
        [1 / 12, 1 / 3, 7 / 12],  # improvement: best 0.45, towards group 2
        [7 / 18, 4 / 18, 7 / 18],  # no improvement: K = 2, towards risks >= 0.45 (group 0)
        [13 / 24, 4 / 24, 7 / 24],  # no improvement: K = 3
        [13 / 24, 4 / 24, 7 / 24],  # patience 1 exceeded: APStar has stopped
    ]
    for weights in expected:
        strategy.select(model, pool=data["pool"], validation=data["validation"])
        assert torch.allclose(strategy.group_weights, torch.tensor(weights, dtype=torch.float64))
    assert strategy.state_dict()["apstar"] == {"shrink": 3, "best_risk": 0.45, "stale": 2}
