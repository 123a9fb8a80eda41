"""fairlearn-style group figures, bootstrap intervals of the worst group, pandas export."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from fral.metrics import (
    ConfidenceIntervals,
    GroupMetric,
    _multinomial_counts,
    evaluate,
    group_accuracy,
    group_f1,
)
from fral.pool import Pool
from tests.utils import make_net

# Group 0: 3 of 4 right; group 1: 1 of 2; group 2: declared, no sample; group 3: 2 of 2.
PRED = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
TRUE = torch.tensor([0, 1, 0, 0, 2, 1, 1, 0])
GROUP = torch.tensor([0, 0, 0, 0, 1, 1, 3, 3])


def test_fairlearn_figures_by_hand() -> None:
    metric = group_accuracy(PRED, TRUE, GROUP, 4, group_names=["a", "b", "c", "d"])
    assert metric.overall == pytest.approx(6 / 8)
    by_group = metric.by_group
    assert list(by_group) == ["a", "b", "c", "d"]
    assert by_group["a"] == 0.75 and by_group["b"] == 0.5 and by_group["d"] == 1.0
    assert math.isnan(by_group["c"])  # a group with no sample is shown, as NaN
    assert metric.group_min() == 0.5 == metric.worst
    assert metric.group_max() == 1.0
    assert metric.difference() == 0.5 == metric.disparity
    assert metric.ratio() == 0.5
    # to_overall: largest |group - overall| and smallest min(g / o, o / g), groups with samples
    assert metric.difference("to_overall") == pytest.approx(0.25)
    assert metric.ratio("to_overall") == pytest.approx(0.5 / 0.75)
    with pytest.raises(ValueError, match="between_groups"):
        metric.ratio("largest")
    figures = metric.to_dict()
    assert figures["overall"] == 0.75 and figures["group_max"] == 1.0 and figures["ratio"] == 0.5
    assert figures["per_group"][2] is None
    assert group_accuracy(PRED, TRUE, GROUP).by_group[0] == 0.75  # ids without names


def test_overall_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    pred, true, grp = rng.integers(0, 4, 90), rng.integers(0, 4, 90), rng.integers(0, 3, 90)
    args = torch.tensor(pred), torch.tensor(true), torch.tensor(grp)
    assert group_accuracy(*args).overall == pytest.approx(accuracy_score(true, pred))
    expected = f1_score(true, pred, average="macro", zero_division=0)
    assert group_f1(*args).overall == pytest.approx(expected)


def test_ratio_when_every_group_is_at_zero() -> None:
    wrong = group_accuracy(torch.tensor([1, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert wrong.group_max() == 0.0 and math.isnan(wrong.ratio())  # 0 / 0, as in fairlearn
    assert wrong.to_dict()["ratio"] is None  # NaN is not JSON
    assert wrong.difference() == 0.0
    # A group at 0 against a positive overall figure: ratio 0, not an error.
    mixed = group_accuracy(torch.tensor([1, 0]), torch.tensor([0, 0]), torch.tensor([0, 1]))
    assert mixed.ratio() == 0.0 and mixed.ratio("to_overall") == 0.0


def test_old_group_metric_without_samples_still_works() -> None:
    metric = GroupMetric("accuracy", torch.tensor([0.5, 0.25], dtype=torch.float64), torch.ones(2))
    assert metric.worst == 0.25 and metric.ratio() == 0.5
    with pytest.raises(ValueError, match="without its overall"):
        metric.difference("to_overall")
    with pytest.raises(ValueError, match="no samples to resample"):
        metric.bootstrap()
    with pytest.raises(ValueError, match="one name per group"):
        GroupMetric("accuracy", torch.zeros(2), torch.ones(2), group_names=("a",))


def test_multinomial_counts_have_the_multinomial_moments() -> None:
    counts = torch.tensor([5.0, 0.0, 3.0, 12.0])
    draws = _multinomial_counts(counts, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(draws.sum(1), torch.full((20000,), 20.0, dtype=torch.float64))
    assert (draws[:, 1] == 0).all()  # an empty cell is never drawn
    p = counts.double() / 20
    assert torch.allclose(draws.mean(0), 20 * p, atol=0.06)
    assert torch.allclose(draws.var(0), 20 * p * (1 - p), rtol=0.05, atol=1e-9)


def _naive_bootstrap(metric_fn, pred, true, grp, resamples, seed):
    """Index resampling within each group, the textbook way."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(grp == g) for g in np.unique(grp)]
    lows = []
    for _ in range(resamples):
        picks = np.concatenate([rng.choice(m, m.size) for m in members])
        metric = metric_fn(
            torch.tensor(pred[picks]), torch.tensor(true[picks]), torch.tensor(grp[picks])
        )
        lows.append(metric.group_min())
    return np.array(lows)


@pytest.mark.parametrize("metric_fn", [group_accuracy, group_f1])
def test_bootstrap_matches_index_resampling(metric_fn) -> None:
    rng = np.random.default_rng(0)
    sizes = [40, 25, 60]
    grp = np.repeat(np.arange(3), sizes)
    true = rng.integers(0, 3, grp.size)
    pred = np.where(rng.random(grp.size) < np.array([0.8, 0.6, 0.7])[grp], true, (true + 1) % 3)
    metric = metric_fn(torch.tensor(pred), torch.tensor(true), torch.tensor(grp))
    intervals = metric.bootstrap(n_resamples=3000, confidence_level=0.9, random_state=0)
    naive = _naive_bootstrap(metric_fn, pred, true, grp, 1500, 1)
    low, high = np.quantile(naive, [0.05, 0.95])
    assert intervals.group_min[0] == pytest.approx(low, abs=0.03)
    assert intervals.group_min[1] == pytest.approx(high, abs=0.03)
    assert intervals.worst == intervals.group_min
    assert intervals.group_min[0] <= metric.group_min() <= intervals.group_min[1]
    for g in range(3):
        assert intervals.by_group[g, 0] <= metric.per_group[g] <= intervals.by_group[g, 1]
    assert intervals.overall[0] <= metric.overall <= intervals.overall[1]


def test_bootstrap_is_seeded_and_checks_its_options() -> None:
    metric = group_f1(PRED, TRUE, GROUP, 4)
    first = metric.bootstrap(200, random_state=3)
    assert first.to_dict() == metric.bootstrap(200, random_state=3).to_dict()
    assert first.to_dict() != metric.bootstrap(200, random_state=4).to_dict()
    assert isinstance(first, ConfidenceIntervals)
    assert first.to_dict()["by_group"][2] == [None, None]  # the empty group
    # Group 3 is always right: every resample of it is too.
    assert first.by_group[3].tolist() == [1.0, 1.0]
    wider = metric.bootstrap(200, confidence_level=0.99, random_state=3)
    assert wider.group_min[0] <= first.group_min[0] and wider.group_min[1] >= first.group_min[1]
    with pytest.raises(ValueError, match="confidence_level"):
        metric.bootstrap(confidence_level=95)
    with pytest.raises(ValueError, match="n_resamples"):
        metric.bootstrap(n_resamples=0)


def test_evaluation_bootstrap_and_names() -> None:
    net = make_net(num_classes=3)
    torch.manual_seed(0)
    data = Pool(torch.rand(40, 1, 8, 8), torch.arange(40) % 2, labels=torch.arange(40) % 3)
    result = evaluate(net, data, attack="pgd", group_names=("young", "old"))
    assert list(result.clean["accuracy"].by_group) == ["young", "old"]
    intervals = result.bootstrap(n_resamples=100, random_state=0)
    assert set(intervals) == {"clean", "robust"} and set(intervals["robust"]) == {"accuracy", "f1"}
    again = result.bootstrap(n_resamples=100, random_state=0)
    assert intervals["robust"]["f1"].to_dict() == again["robust"]["f1"].to_dict()
    assert result.attack is not None and result.attack.startswith("PGD(")


class _FakeFrame:
    def __init__(self, data, index=None):
        self.data, self.index = data, index


def test_to_frame_with_and_without_pandas(monkeypatch) -> None:
    metric = group_accuracy(PRED, TRUE, GROUP, 4, group_names=["a", "b", "c", "d"])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        metric.to_frame()
    fake = types.ModuleType("pandas")
    fake.DataFrame = _FakeFrame
    fake.Index = lambda values, name=None: (list(values), name)
    monkeypatch.setitem(sys.modules, "pandas", fake)
    frame = metric.to_frame()
    assert frame.index == (["a", "b", "c", "d"], "group")
    assert frame.data["count"] == [4, 2, 0, 2]
    assert frame.data["accuracy"][:2] == [0.75, 0.5]
    net = make_net(num_classes=3)
    data = Pool(torch.rand(6, 1, 8, 8), [0, 1, 0, 1, 0, 1], labels=[0, 1, 2, 0, 1, 2])
    table = evaluate(net, data, attack="pgd").to_frame()
    assert list(table.data) == [
        "clean_accuracy",
        "clean_f1",
        "robust_accuracy",
        "robust_f1",
        "count",
    ]
    assert table.index == ([0, 1], "group")
