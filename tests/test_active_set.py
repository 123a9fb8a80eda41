"""fral.ActiveSet: the step-by-step object for users who keep their own training loop."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import fral._io
from fral import GENT, JIN, PGD, RAND, ActiveSet, FairDataset, Pool
from fral._io import CheckpointError, write_torch
from fral.datasets import UInt8Images
from fral.models import MLP
from fral.pool import initial_split
from tests.utils import assert_unchanged, make_net, snapshot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def arrays(digits) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """300 of scikit-learn's 8x8 digits: x (300, 1, 8, 8) in [0, 1], y, group = y odd."""
    x, y, g = digits
    return x[:300].clone(), y[:300].clone(), g[:300].clone()


@pytest.fixture(scope="module")
def data(arrays) -> FairDataset:
    return FairDataset.from_arrays(*arrays)


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    return make_net(seed=0, num_classes=10), make_net(seed=1, num_classes=10)


def state_of(active: ActiveSet) -> tuple[list[int], list[int], list[int]]:
    return (
        active.labeled_indices.tolist(),
        active.labeled_labels.tolist(),
        active.pending.tolist(),
    )


class Recorder:
    """A QueryStrategy that records what it is given and returns fixed pool positions."""

    requires = frozenset()

    def __init__(self, picks: Any, budget: int = 3) -> None:
        self.picks, self.budget, self.calls = picks, budget, []

    def select(
        self, model_r, model_s=None, pool=None, *, labeled=None, validation=None, group=None
    ):
        self.calls.append(
            {"pool": pool, "labeled": labeled, "validation": validation, "group": group}
        )
        return self.picks


class CountingDataset(Dataset):
    """(x, y, group) items of tensors, counting the reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> None:
        self.x, self.y, self.g, self.reads = x, y, g, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        self.reads += 1
        return self.x[index], int(self.y[index]), int(self.g[index])


# -- the initial labelled set --------------------------------------------------------------------
def test_initial_fraction_leaves_the_draw_pending_for_the_oracle(data) -> None:
    active = ActiveSet(data, initial_fraction=0.25, seed=3)
    expected, _ = initial_split(len(data.train), 0.25, generator=torch.Generator().manual_seed(3))
    assert active.num_labeled == 0 and len(active) == len(data.train)
    assert torch.equal(active.pending, expected)
    assert active.unlabeled_indices.numel() == len(data.train)
    active.label(active.pending, torch.zeros(len(expected), dtype=torch.int64))
    assert active.num_labeled == len(expected) and active.pending.numel() == 0
    assert active.labeled_labels.tolist() == [0] * len(expected)


def test_initial_fraction_from_data_labels_the_loop_s_initial_set(data) -> None:
    active = ActiveSet(data, initial_fraction=0.25, labels="from_data", seed=3)
    expected, rest = initial_split(
        len(data.train), 0.25, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(active.labeled_indices, expected)
    assert torch.equal(active.labeled_labels, data.train.y[expected])
    assert torch.equal(active.unlabeled_indices, rest)
    assert active.pending.numel() == 0
    other = ActiveSet(data, initial_fraction=0.25, labels="from_data", seed=4)
    assert not torch.equal(other.labeled_indices, expected)


def test_given_labels_keep_their_order_and_never_come_from_the_data(data) -> None:
    labels = (data.train.y[[7, 2, 9]] + 1) % 10  # deliberately not the data's own
    active = ActiveSet(data, labeled=[7, 2, 9], labels=labels)
    assert active.labeled_indices.tolist() == [7, 2, 9]
    assert torch.equal(active.labeled_labels, labels)
    assert torch.equal(active.labels_of([9, 7]), labels[[2, 0]])
    assert active.is_labeled([2, 3, 9]).tolist() == [True, False, True]
    assert active.unlabeled_indices.numel() == len(data.train) - 3
    assert 2 not in active.unlabeled_indices.tolist()
    truth = ActiveSet(data, labeled=np.array([7, 2, 9]), labels="from_data")
    assert torch.equal(truth.labeled_labels, data.train.y[[7, 2, 9]])
    as_numpy = ActiveSet(data, labeled=np.array([7, 2, 9]), labels=labels.numpy())
    assert torch.equal(as_numpy.labeled_labels, labels)


def test_nothing_labelled_by_default(data) -> None:
    active = ActiveSet(data)
    assert active.num_labeled == 0 and active.pending.numel() == 0
    assert torch.equal(active.unlabeled_indices, torch.arange(len(data.train)))
    assert "0 labelled" in repr(active)


def bad_constructor_calls(data: FairDataset, arrays) -> list[tuple[Any, dict, type, str]]:
    x, y, g = arrays
    split = data.train
    return [
        (x, {}, TypeError, "data must be a fral.FairDataset"),
        (TensorDataset(x, y, g), {}, TypeError, "FairDataset.from_dataset"),
        (data, {"labeled": [1, 2]}, ValueError, "labeled= needs labels="),
        (data, {"labels": [1, 2]}, ValueError, "labels= needs labeled="),
        (data, {"labels": "from_data"}, ValueError, "labels= needs labeled="),
        (data, {"labeled": [1], "labels": [1], "initial_fraction": 0.2}, ValueError, "not both"),
        (data, {"initial_fraction": 0.2, "labels": [1]}, ValueError, "labels= must be None"),
        (
            data,
            {"initial_fraction": 0.2, "labels": np.array([1, 2])},
            ValueError,
            "labels= must be None",
        ),
        (data, {"initial_fraction": 0.0}, ValueError, "initial_fraction"),
        (data, {"initial_fraction": 1.0}, ValueError, "initial_fraction"),
        (data, {"initial_fraction": float("nan")}, ValueError, "initial_fraction"),
        (data, {"initial_fraction": "0.2"}, TypeError, "initial_fraction"),
        (data, {"initial_fraction": True}, TypeError, "initial_fraction"),
        (data, {"labeled": [1], "labels": "truth"}, ValueError, "from_data"),
        (data, {"labeled": [1, 10_000], "labels": [0, 0]}, ValueError, "labeled must be"),
        (data, {"labeled": [-1], "labels": [0]}, ValueError, "labeled must be"),
        (data, {"labeled": [1, 1], "labels": [0, 0]}, ValueError, "more than once"),
        (data, {"labeled": [1.0], "labels": [0]}, TypeError, "labeled must hold integers"),
        (data, {"labeled": [[1]], "labels": [0]}, ValueError, "labeled must be 1-D"),
        (data, {"labeled": [1, 2], "labels": [0]}, ValueError, "one label per index"),
        (data, {"labeled": [1], "labels": [10]}, ValueError, "labels must lie in [0, 10)"),
        (data, {"labeled": [1], "labels": [0.5]}, TypeError, "labels must hold integers"),
        (data, {"seed": 1.5}, TypeError, "seed must be an integer"),
        (data, {"num_classes": 3}, ValueError, "has 10 classes"),
        (data, {"validation": data.validation}, ValueError, "brings its own validation"),
        (split, {}, ValueError, "num_classes is required"),
        (split, {"num_classes": 5}, ValueError, "labels reach 9"),
        (split, {"num_classes": 0}, ValueError, "num_classes must be >= 1"),
        (split, {"num_classes": 10, "validation": x}, TypeError, "validation must be"),
        (
            split,
            {"num_classes": 10, "validation": Pool(x[:5], g[:5])},
            ValueError,
            "validation must be a Pool with labels",
        ),
        (
            split,
            {"num_classes": 10, "validation": Pool(x[:5], g[:5], labels=y[:5], num_groups=3)},
            ValueError,
            "num_groups=3",
        ),
        (
            Pool(x, g),
            {"num_classes": 10, "labeled": [0], "labels": "from_data"},
            ValueError,
            "holds no labels",
        ),
        (Pool(x[:0], g[:0]), {"num_classes": 10}, ValueError, "data is empty"),
    ]


def test_every_malformed_constructor_call_is_a_clear_error(data, arrays) -> None:
    for given, options, error, message in bad_constructor_calls(data, arrays):
        with pytest.raises(error, match=re.escape(message)):
            ActiveSet(given, **options)


# -- label ---------------------------------------------------------------------------------------
def bad_label_calls(size: int) -> list[tuple[Any, Any, type, str]]:
    return [
        ([0.0, 1.0], [0, 0], TypeError, "indices must hold integers"),
        (torch.tensor([True, False]), [0, 0], TypeError, "indices must hold integers"),
        ("12", [0], TypeError, "indices must be a 1-D sequence"),
        (None, [0], TypeError, "indices must be a 1-D sequence"),
        (torch.tensor(3), [0], ValueError, "one index: [3]"),
        ([[3, 4]], [[0, 0]], ValueError, "indices must be 1-D"),
        ([3, 4], [0], ValueError, "labels has 1 entries for 2 indices"),
        ([3, size], [0, 0], ValueError, f"indices must be dataset indices in [0, {size})"),
        ([-1], [0], ValueError, "indices must be dataset indices"),
        ([3, 3], [0, 0], ValueError, "indices lists [3] more than once"),
        ([5, 0], [1, 1], ValueError, "indices [0] are labelled already"),
        ([3, 4], [0, 10], ValueError, "labels must lie in [0, 10), got [10]"),
        ([3, 4], [-1, 0], ValueError, "labels must lie in [0, 10), got [-1]"),
        ([3, 4], [0.0, 1.0], TypeError, "labels must hold integers"),
        ([3, 4], "ab", TypeError, "labels must be a 1-D sequence"),
        ([3, 4], [object(), 1], TypeError, "labels must be a 1-D sequence"),
    ]


def test_label_is_all_or_nothing_with_a_clear_error_for_each_bad_input(data) -> None:
    active = ActiveSet(data, labeled=[0, 1], labels=[2, 3])
    active._pending = torch.tensor([3, 4, 5])
    before = state_of(active)
    for indices, labels, error, message in bad_label_calls(len(active)):
        with pytest.raises(error, match=re.escape(message)):
            active.label(indices, labels)
        assert state_of(active) == before, (indices, labels)
        assert torch.equal(
            active.is_labeled(torch.arange(len(active))).nonzero().flatten(), torch.tensor([0, 1])
        )


def test_label_accepts_any_unlabelled_sample_and_prunes_pending(data) -> None:
    active = ActiveSet(data)
    active._pending = torch.tensor([5, 9, 4])
    active.label([9, 20], [1, 2])  # 20 was never selected: the oracle is the user's
    assert active.pending.tolist() == [5, 4]
    active.label([], [])  # an empty answer changes nothing
    active.label(np.array([4], dtype=np.int32), np.array([7], dtype=np.uint8))
    assert active.labeled_indices.tolist() == [9, 20, 4]
    assert active.labeled_labels.tolist() == [1, 2, 7]
    assert active.pending.tolist() == [5]
    with pytest.raises(ValueError, match=r"indices \[5, 6\] are not labelled"):
        active.labels_of([4, 5, 6])
    with pytest.raises(ValueError, match="indices must be dataset indices"):
        active.is_labeled([len(active)])


# -- views ---------------------------------------------------------------------------------------
def test_labelled_and_unlabelled_datasets_are_lazy_snapshots() -> None:
    torch.manual_seed(0)
    x, y, g = torch.rand(40, 3), torch.arange(40) % 4, torch.arange(40) % 2
    source = CountingDataset(x, y, g)
    data = FairDataset.from_dataset(
        source,
        bounds=None,
        splits={"train": range(30), "validation": [34, 35], "test": [30, 31, 32, 33]},
    )
    active = ActiveSet(data, labeled=[4, 1], labels=[3, 0])
    source.reads = 0
    labelled, unlabelled = active.labeled_dataset(), active.unlabeled_dataset()
    assert source.reads == 0  # nothing is read until an item is asked for
    assert len(labelled) == 2 and labelled.indices.tolist() == [4, 1]
    item = labelled[1]
    assert source.reads == 1
    assert torch.equal(item[0], x[1]) and item[1:] == (0, int(g[1]))
    assert len(unlabelled) == 28 and unlabelled.indices[:3].tolist() == [0, 2, 3]
    x0, g0 = unlabelled[0]
    assert torch.equal(x0, x[0]) and g0 == int(g[0])
    active.label([0], [2])
    assert len(labelled) == 2 and len(unlabelled) == 28  # snapshots
    assert len(active.labeled_dataset()) == 3
    xb, yb, gb = next(iter(DataLoader(active.labeled_dataset(), batch_size=8)))
    assert xb.shape == (3, 3) and yb.dtype == torch.int64 and yb.tolist() == [3, 0, 2]
    assert gb.tolist() == g[[4, 1, 0]].tolist()


def test_pools_carry_the_given_labels_and_dataset_indices(data) -> None:
    active = ActiveSet(data, labeled=[6, 3], labels=[1, 8])
    labelled = active.labeled_pool()
    assert labelled.labels.tolist() == [1, 8] and labelled.ids.tolist() == [6, 3]
    assert torch.equal(labelled.inputs, data.train.x[[6, 3]])
    assert labelled.num_groups == data.num_groups
    unlabelled = active.unlabeled_pool()
    assert unlabelled.labels is None
    assert torch.equal(unlabelled.ids, active.unlabeled_indices)
    assert torch.equal(unlabelled.groups, data.train.z[active.unlabeled_indices])
    assert torch.equal(active.validation_pool().labels, data.validation.y)
    assert torch.equal(active.groups, data.train.z)


# -- select --------------------------------------------------------------------------------------
def test_select_maps_pool_positions_to_dataset_indices_and_hides_the_data_labels(data) -> None:
    active = ActiveSet(data, labeled=[0, 2, 4], labels=[9, 9, 9])
    strategy = Recorder(torch.tensor([1, 0, 5]))
    model = make_net(num_classes=10)
    picks = active.select(strategy, model, group=1)
    # Unlabelled indices are 1, 3, 5, 6, 7, 8...: positions 1, 0, 5 are 3, 1, 8.
    assert picks.tolist() == [3, 1, 8] and picks.dtype == torch.int64
    assert active.pending.tolist() == [3, 1, 8] and active.num_labeled == 3
    call = strategy.calls[0]
    assert call["pool"].labels is None  # the strategy never sees the data's labels
    assert torch.equal(call["pool"].ids, active.unlabeled_indices)
    assert call["labeled"].labels.tolist() == [9, 9, 9] and call["group"] == 1
    assert call["validation"] is active.validation_pool()
    active.label(picks, [0, 0, 0])
    strategy.picks = torch.tensor([0])
    active.select(strategy, model, validation=None)
    assert strategy.calls[1]["validation"] is None
    active.label(active.pending, [0])
    active.select(strategy, model, validation=data.test)
    assert torch.equal(strategy.calls[2]["validation"].labels, data.test.y)


def test_select_warns_when_the_previous_picks_were_not_labelled(data) -> None:
    active = ActiveSet(data)
    model = make_net(num_classes=10)
    active.select(Recorder(torch.tensor([0, 1])), model)
    active.label([0], [1])
    with pytest.warns(UserWarning, match="1 picks of the previous selection were not labelled"):
        picks = active.select(Recorder(torch.tensor([0])), model)
    assert active.pending.tolist() == picks.tolist() == [1]


@pytest.mark.parametrize(
    ("picks", "error", "message"),
    [
        ([0, 1], TypeError, "returned a list"),
        (torch.tensor([0.0]), TypeError, "returned torch.float32 indices"),
        (torch.tensor([0, 0]), ValueError, "the same index twice"),
        (torch.tensor([0, 1, 2, 3]), ValueError, "over its budget"),
        (torch.tensor([10_000]), ValueError, "outside the pool"),
        (torch.tensor([[0]]), ValueError, "shape (1, 1)"),
    ],
)
def test_select_refuses_malformed_picks(data, picks, error, message) -> None:
    active = ActiveSet(data)
    with pytest.raises(error, match=re.escape(message)):
        active.select(Recorder(picks), make_net(num_classes=10))
    assert active.pending.numel() == 0


def test_select_refuses_bad_arguments(data) -> None:
    model = make_net(num_classes=10)
    active = ActiveSet(data)
    with pytest.raises(TypeError, match="strategy must be a fral strategy"):
        active.select("JIN", model)
    with pytest.raises(TypeError, match="validation must be"):
        active.select(RAND(2), model, validation="valid")
    with pytest.raises(ValueError, match="requires `model_s`"):
        active.select(JIN(2), model)
    everything = ActiveSet(data, labeled=range(len(data.train)), labels="from_data")
    with pytest.raises(ValueError, match="all 189 samples are labelled"):
        everything.select(RAND(2), model)


def test_select_with_jin_is_deterministic_and_leaves_the_models_alone(data, models) -> None:
    model_r, model_s = models
    before_r, before_s = snapshot(model_r), snapshot(model_s)
    first = ActiveSet(data, initial_fraction=0.3, labels="from_data")
    second = ActiveSet(data, initial_fraction=0.3, labels="from_data")
    picks = first.select(JIN(12, random_state=0), model_r, model_s)
    assert torch.equal(picks, second.select(JIN(12, random_state=0), model_r, model_s))
    assert_unchanged(model_r, before_r)
    assert_unchanged(model_s, before_s)
    assert picks.numel() == 12 and not bool(first.is_labeled(picks).any())
    # JIN draws from the worst group on the validation set, then tops up from the other.
    groups = data.train.z[picks].tolist()
    assert groups == sorted(groups, key=lambda group: group != groups[0])


def test_strategies_follow_the_data_set_s_own_threat_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y, g = rng.integers(0, 2, 120), rng.integers(0, 2, 120)
    tabular = FairDataset.from_arrays(x, y, g, bounds=None, eps=0.1)
    active = ActiveSet(tabular, initial_fraction=0.3, labels="from_data")
    jin = active.strategy("JIN", 5)
    assert (jin.attack.eps, jin.attack.alpha, jin.attack.bounds) == (0.1, 0.05, None)
    torch.manual_seed(0)
    model_r, model_s = MLP(5, 2), MLP(5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picks = active.select(jin, model_r, model_s)
    active.label(picks, tabular.train.y[picks])
    # The image default clamps to [0, 1]: the warning names the fix before the attack fails.
    with (
        pytest.warns(UserWarning, match=r"JIN attacks with eps=0.01569.*declares eps=0.1"),
        pytest.raises(ValueError, match="outside bounds"),
    ):
        active.select(JIN(5, random_state=0), model_r, model_s)
    unbounded = PGD(eps=0.2, alpha=0.05, bounds=None)
    with pytest.warns(UserWarning, match=r"G-ENT attacks with eps=0.2, .*declares eps=0.1"):
        active.select(GENT(5, attack=unbounded, random_state=0), model_r)
    assert active.pending.numel() == 5
    split = ActiveSet(tabular.train, num_classes=2)
    with pytest.raises(TypeError, match="ActiveSet.strategy needs a FairDataset"):
        split.strategy("JIN", 5)


# -- state ---------------------------------------------------------------------------------------
def test_state_dict_round_trip_is_plain_and_exact(data) -> None:
    active = ActiveSet(data, initial_fraction=0.2, labels="from_data", seed=5)
    active._pending = torch.tensor([active.unlabeled_indices[3], active.unlabeled_indices[0]])
    state = active.state_dict()
    plain = {key: value for key, value in state.items() if not isinstance(value, torch.Tensor)}
    assert json.loads(json.dumps(plain)) == plain  # metadata is JSON-ready
    assert {key for key in state if key not in plain} == {"labeled", "labels", "pending"}
    restored = ActiveSet(data)
    restored.load_state_dict(state)
    assert state_of(restored) == state_of(active)
    assert restored.seed == 5 and restored.initial_fraction == 0.2
    assert torch.equal(restored.unlabeled_indices, active.unlabeled_indices)
    restored.label(restored.pending[:1], [0])  # the bookkeeping works on after a load
    assert restored.num_labeled == active.num_labeled + 1


def test_a_state_from_other_data_is_refused(data, arrays) -> None:
    state = ActiveSet(data, labeled=[1], labels=[1]).state_dict()
    x, y, g = arrays
    other = FairDataset.from_arrays(x, y, g, seed=1)  # another split of the same samples
    target = ActiveSet(other)
    with pytest.raises(
        ValueError, match=r"saved on other data \(.*data\.train \(the train split's content"
    ):
        target.load_state_dict(state)
    assert target.num_labeled == 0
    split_state = ActiveSet(data.train, num_classes=10).state_dict()
    with pytest.raises(ValueError, match="form"):
        ActiveSet(data).load_state_dict(split_state)
    with pytest.raises(ValueError, match="other data"):
        ActiveSet(data.validation, num_classes=10).load_state_dict(split_state)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda s: s.update(format="other"), ValueError, "not an ActiveSet state"),
        (lambda s: s.pop("labels"), ValueError, "missing ['labels']"),
        (lambda s: s.update(version=99), ValueError, "version 99"),
        (lambda s: s.update(labeled=torch.tensor([1, 1])), ValueError, "more than once"),
        (lambda s: s.update(labels=torch.tensor([1, 99])), ValueError, "labels must lie"),
        (lambda s: s.update(labeled=[1, 2]), ValueError, "not a tensor"),
        (lambda s: s.update(pending=torch.tensor([1])), ValueError, "pending must hold"),
        (lambda s: s.update(pending=torch.tensor([999])), ValueError, "pending must be"),
    ],
)
def test_an_inconsistent_state_is_refused_and_changes_nothing(data, change, error, message) -> None:
    state = ActiveSet(data, labeled=[1, 2], labels=[3, 4]).state_dict()
    change(state)
    target = ActiveSet(data, labeled=[7], labels=[0])
    with pytest.raises(error, match=re.escape(message)):
        target.load_state_dict(state)
    assert state_of(target) == ([7], [0], [])
    with pytest.raises(TypeError, match="must be a dict"):
        target.load_state_dict([1, 2])


def test_save_and_load_through_a_checksummed_file(data, tmp_path: Path) -> None:
    active = ActiveSet(data, initial_fraction=0.2, labels="from_data")
    active._pending = active.unlabeled_indices[:4]
    path = active.save(tmp_path / "round" / "active.pt")
    assert [p.name for p in path.parent.iterdir()] == ["active.pt"]  # no temporary file left
    loaded = ActiveSet.load(path, data)
    assert state_of(loaded) == state_of(active)
    assert torch.equal(loaded.validation_pool().labels, data.validation.y)
    split = ActiveSet(data.train, num_classes=10, labeled=[3], labels=[4])
    split_path = split.save(tmp_path / "split.pt")
    assert ActiveSet.load(split_path, data.train).num_classes == 10  # the saved one


def test_a_damaged_or_foreign_file_is_an_error_naming_it(data, arrays, tmp_path: Path) -> None:
    path = ActiveSet(data, labeled=[1], labels=[1]).save(tmp_path / "active.pt")
    content = path.read_bytes()
    cases = {
        "truncated.pt": content[: len(content) // 2],
        "flipped.pt": content[:-10] + bytes([content[-10] ^ 1]) + content[-9:],
        "empty.pt": b"",
    }
    for name, damaged in cases.items():
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / name))):
            ActiveSet.load(tmp_path / name, data)
    with pytest.raises(CheckpointError, match="missing"):
        ActiveSet.load(tmp_path / "nothing.pt", data)
    write_torch(tmp_path / "other.pt", {"model": 1})
    with pytest.raises(CheckpointError, match="not an ActiveSet file"):
        ActiveSet.load(tmp_path / "other.pt", data)
    other = FairDataset.from_arrays(*arrays, seed=1)
    with pytest.raises(
        ValueError, match=re.escape(f"the ActiveSet file {path} was saved on other data")
    ):
        ActiveSet.load(path, other)


def test_a_failed_save_keeps_the_previous_file(data, tmp_path: Path, monkeypatch) -> None:
    active = ActiveSet(data, labeled=[1], labels=[1])
    path = active.save(tmp_path / "active.pt")
    active.label([2], [2])

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fral._io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        active.save(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["active.pt"]
    assert ActiveSet.load(path, data).labeled_indices.tolist() == [1]


def test_fingerprint_reads_a_dataset_once_and_uses_its_own_fingerprint(arrays) -> None:
    x, y, g = arrays
    source = CountingDataset(x, y, g)
    data = FairDataset.from_dataset(source)
    active = ActiveSet(data)
    source.reads = 0
    first = active.fingerprint()
    assert source.reads == len(source)  # every split read once, batch by batch
    assert active.fingerprint() == first and source.reads == len(source)
    images = UInt8Images((x * 255).round().to(torch.uint8).numpy())
    pool = Pool(images, g)
    calls = []
    images.fingerprint = lambda: calls.append(1) or "digest"  # a cheap fingerprint() is used
    ActiveSet(pool, num_classes=10).fingerprint()
    assert calls == [1]


# -- the forms of data, and a restart, give the same picks --------------------------------------
def rounds(active: ActiveSet, models, count: int, strategy=None) -> list[list[int]]:
    strategy = strategy or JIN(10, random_state=0)
    picked = []
    for _ in range(count):
        picks = active.select(strategy, *models)
        active.label(picks, torch.arange(picks.numel()) % 10)
        picked.append(picks.tolist())
    return picked


def test_in_memory_and_dataset_backed_data_give_identical_picks(arrays, models) -> None:
    x, y, g = arrays
    in_memory = FairDataset.from_arrays(x, y, g)
    backed = FairDataset.from_dataset(TensorDataset(x, y, g))
    assert not in_memory.train.lazy and backed.train.lazy
    first = ActiveSet(in_memory, initial_fraction=0.3, labels="from_data")
    second = ActiveSet(backed, initial_fraction=0.3, labels="from_data")
    assert state_of(first) == state_of(second)
    assert rounds(first, models, 2) == rounds(second, models, 2)
    assert state_of(first) == state_of(second)
    for one, other in zip(first.labeled_dataset(), second.labeled_dataset(), strict=True):
        assert torch.equal(one[0], other[0]) and one[1:] == other[1:]
    split = ActiveSet(
        in_memory.train,
        num_classes=10,
        initial_fraction=0.3,
        labels="from_data",
        validation=in_memory.validation,
    )
    pool = ActiveSet(
        in_memory.train.pool(),
        num_classes=10,
        initial_fraction=0.3,
        labels="from_data",
        validation=in_memory.validation.pool(),
    )
    assert (
        rounds(split, models, 2)
        == rounds(pool, models, 2)
        == rounds(ActiveSet(in_memory, initial_fraction=0.3, labels="from_data"), models, 2)
    )


def test_a_restart_from_the_saved_file_continues_as_if_uninterrupted(
    data, models, tmp_path: Path
) -> None:
    uninterrupted = ActiveSet(data, initial_fraction=0.3, labels="from_data")
    expected = rounds(uninterrupted, models, 3)

    strategy = JIN(10, random_state=0)
    active = ActiveSet(data, initial_fraction=0.3, labels="from_data")
    first = rounds(active, models, 1, strategy)
    active.save(tmp_path / "active.pt")
    torch.save(strategy.state_dict(), tmp_path / "strategy.pt")
    del active, strategy  # the process ends here

    strategy = JIN(10, random_state=123)
    strategy.load_state_dict(torch.load(tmp_path / "strategy.pt"))
    resumed = ActiveSet.load(tmp_path / "active.pt", data)
    assert first + rounds(resumed, models, 2, strategy) == expected
    assert state_of(resumed) == state_of(uninterrupted)
