"""Group metrics against scikit-learn and hand computations; worst-group selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from fral.attacks import PGD
from fral.metrics import (
    evaluate,
    group_accuracy,
    group_f1,
    group_ranking,
    rank_groups,
    select_worst_group,
    worst_group,
)
from fral.pool import Pool
from tests.utils import assert_unchanged, make_net, snapshot


def test_accuracy_and_summaries_by_hand() -> None:
    pred = torch.tensor([0, 1, 1, 0, 2, 2, 1])
    true = torch.tensor([0, 1, 0, 0, 2, 1, 1])
    grp = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    metric = group_accuracy(pred, true, grp)
    assert torch.allclose(metric.per_group, torch.tensor([2 / 3, 1.0, 0.5], dtype=torch.float64))
    assert metric.worst == pytest.approx(0.5) and metric.worst_group == 2
    assert metric.disparity == pytest.approx(0.5)
    assert metric.average == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert metric.counts.tolist() == [3, 2, 2]


def test_empty_groups_are_skipped_in_summaries() -> None:
    metric = group_accuracy(torch.tensor([1, 1]), torch.tensor([1, 0]), torch.tensor([0, 2]), 4)
    assert math.isnan(metric.per_group[1]) and math.isnan(metric.per_group[3])
    assert metric.worst == 0.0 and metric.worst_group == 2 and metric.average == 0.5
    assert metric.to_dict()["per_group"] == [1.0, None, 0.0, None]


def test_group_metrics_match_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, groups, classes = rng.integers(5, 80), rng.integers(1, 5), rng.integers(2, 7)
        pred, true = rng.integers(0, classes, n), rng.integers(0, classes, n)
        grp = rng.integers(0, groups, n)
        acc = group_accuracy(torch.tensor(pred), torch.tensor(true), torch.tensor(grp), groups)
        f1 = group_f1(torch.tensor(pred), torch.tensor(true), torch.tensor(grp), groups)
        for g in range(groups):
            mask = grp == g
            if not mask.any():
                assert math.isnan(acc.per_group[g]) and acc.counts[g] == 0
                continue
            assert acc.per_group[g] == pytest.approx(accuracy_score(true[mask], pred[mask]))
            expected = f1_score(true[mask], pred[mask], average="macro", zero_division=0)
            assert f1.per_group[g] == pytest.approx(expected)


def test_rank_groups_criteria_and_ties() -> None:
    clean = torch.tensor([0.9, 0.6, 0.7, float("nan")])
    robust = torch.tensor([0.2, 0.5, 0.3, float("nan")])
    assert rank_groups(clean, robust, "clean").tolist() == [1, 2, 0]
    assert rank_groups(clean, robust, "robust").tolist() == [0, 2, 1]
    assert rank_groups(clean, robust, "mean").tolist() == [2, 0, 1]
    assert select_worst_group(torch.tensor([0.5, 0.5, 0.9]), criterion="clean") == 0
    with pytest.raises(ValueError, match="robust"):
        rank_groups(clean, None, "mean")
    with pytest.raises(ValueError, match="criterion"):
        rank_groups(clean, robust, "median")
    with pytest.raises(ValueError, match="no group"):
        rank_groups(torch.tensor([float("nan")]), criterion="clean")


def test_evaluate_with_a_real_attack(trained_net, digits) -> None:
    x, y, z = digits
    data = Pool(x[:600], z[:600], labels=y[:600])
    before = snapshot(trained_net)
    result = evaluate(trained_net, data, attack=PGD(eps=0.1, alpha=0.02, steps=5))
    assert_unchanged(trained_net, before)
    with torch.no_grad():
        pred = trained_net(x[:600]).argmax(1)
    expected = group_accuracy(pred, y[:600], z[:600])
    assert torch.allclose(result.clean["accuracy"].per_group, expected.per_group)
    clean, robust = result.clean["accuracy"], result.robust["accuracy"]
    assert (robust.per_group < clean.per_group).all()
    summary = result.summary()
    assert summary["clean_accuracy_worst"] == clean.worst
    assert set(summary) == {
        f"{s}_{m}_{k}"
        for s in ("clean", "robust")
        for m in ("accuracy", "f1")
        for k in ("worst", "disparity", "average")
    }
    assert result.to_dict()["robust"]["f1"]["counts"] == robust.counts.tolist()
    again = evaluate(trained_net, data, attack=PGD(eps=0.1, alpha=0.02, steps=5))
    assert again.summary() == summary  # seeded random start
    clean_only = evaluate(trained_net, data, robust=False, metrics=("f1",))
    assert clean_only.robust == {} and set(clean_only.clean) == {"f1"}


def test_worst_group_follows_the_criterion(trained_net, digits) -> None:
    x, y, _ = digits
    # Group 1 holds the 8s and 9s the model gets wrong most: corrupt them to make sure.
    groups = (y >= 8).long()
    x = torch.where((groups == 1).view(-1, 1, 1, 1), x.flip(-1), x)
    val = Pool(x[:500], groups[:500], labels=y[:500])
    assert worst_group(trained_net, val, criterion="clean") == 1
    assert worst_group(trained_net, val, attack=PGD(eps=0.05, alpha=0.02)) == 1
    ranking = group_ranking(trained_net, val, criterion="robust")
    assert sorted(ranking.tolist()) == [0, 1]


def test_bad_metric_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        group_accuracy(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="integer"):
        group_f1(torch.tensor([0.5]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="no samples"):
        group_accuracy(
            torch.tensor([], dtype=torch.long),
            torch.tensor([], dtype=torch.long),
            torch.tensor([], dtype=torch.long),
        )
    net = make_net()
    unlabeled = Pool(torch.rand(4, 1, 8, 8), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="labels"):
        evaluate(net, unlabeled)
    with pytest.raises(TypeError, match="Pool"):
        evaluate(net, torch.rand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="metrics"):
        evaluate(net, Pool(torch.rand(2, 1, 8, 8), [0, 1], labels=[0, 1]), metrics=("auc",))
