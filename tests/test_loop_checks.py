"""The loop's boundary: strategy outputs, budgets, oracles, schedules, data identity (issue 8)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import fral.loop
from fral.datasets import digits_domains
from fral.loop import Initialization, data_fingerprint, initialize, run_experiment
from fral.models import SmallCNN
from fral.strategies import GENT
from fral.training import TrainConfig

TRAIN = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0.5, steps=1)
STANDARD = TrainConfig(epochs=1, batch_size=32, adversarial=False, warmup_epochs=0)


@pytest.fixture(scope="module")
def data():
    return digits_domains().subsample(train=150, validation=40, test=40, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model():
    return SmallCNN(10, 1, channels=(4, 8))


@pytest.fixture(scope="module")
def init(data):
    return initialize(data, model_fn=tiny_model, train=TRAIN, seed=0, attack_steps=1)


def run(data, strategy, **options):
    options.setdefault("rounds", 1)
    options.setdefault("seed", 0)
    options.setdefault("train", TRAIN)
    options.setdefault("budget_fraction", 0.05)
    return run_experiment(
        strategy,
        data,
        model_fn=tiny_model,
        standard=STANDARD,
        attack_steps=1,
        **options,
    )


class Scripted:
    """A user's strategy (no fral base class): returns ``output(pool)`` and records calls."""

    requires = frozenset()

    def __init__(self, output, budget=5, name="Scripted"):
        self.output, self.budget, self.name, self.calls = output, budget, name, []

    def select(
        self, model_r, model_s=None, pool=None, *, labeled=None, validation=None, group=None
    ):
        self.calls.append({"group": group, "validation": validation, "pool": len(pool)})
        return self.output(pool)


def no_training(*args, **kwargs):
    raise AssertionError("the run trained before rejecting its arguments")


# -- item 6: the strategy's output and the budget --------------------------------------------
@pytest.mark.parametrize(
    ("output", "error", "needle"),
    [
        (lambda pool: [0, 1, 2], TypeError, "returned a list"),
        (lambda pool: torch.arange(3, dtype=torch.int32), TypeError, "torch.int32"),
        (lambda pool: torch.arange(4).reshape(2, 2), ValueError, "shape (2, 2)"),
        (lambda pool: torch.tensor([3, 3, 4]), ValueError, "same index twice"),
        (lambda pool: torch.tensor([len(pool)]), ValueError, "outside the pool"),
        (lambda pool: torch.tensor([-1, 0]), ValueError, "outside the pool"),
        (lambda pool: torch.arange(6), ValueError, "over its budget"),
        (lambda pool: torch.tensor([0.0, 1.0]), TypeError, "torch.float32"),
        (lambda pool: None, TypeError, "returned a NoneType"),
    ],
)
def test_a_strategy_output_that_breaks_the_contract_is_rejected(
    data, init, output, error, needle
) -> None:
    with pytest.raises(error, match="Scripted") as caught:
        run(data, Scripted(output, name="Scripted"), initialization=init)
    assert needle in str(caught.value)


def test_a_valid_output_passes_and_is_recorded(data, init) -> None:
    strategy = Scripted(lambda pool: torch.tensor([7, 2, 5]))
    result = run(data, strategy, initialization=init)
    record = result.history[1]
    assert record["picked"] == 3 and record["budget"] == 5
    mask = torch.ones(len(data.train), dtype=torch.bool)
    mask[init.labeled] = False
    unlabeled = torch.nonzero(mask).flatten()
    assert result.labeled[-3:].tolist() == unlabeled[[7, 2, 5]].tolist()
    assert record["labeled"] == init.labeled.numel() + 3


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, math.nan, math.inf, True, "0.1"])
def test_budget_fraction_is_checked_before_training(data, monkeypatch, fraction) -> None:
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    with pytest.raises((ValueError, TypeError), match="budget_fraction"):
        run(data, "RAND", budget_fraction=fraction)


def run_with_fraction(data, budget_fraction, **options):
    return run_experiment(
        "RAND",
        data,
        model_fn=tiny_model,
        budget_fraction=budget_fraction,
        train=TRAIN,
        attack_steps=1,
        **options,
    )


def test_budget_fraction_zero_is_not_silently_one_label(data, monkeypatch) -> None:
    # Before: max(1, round(0 * N)) quietly labelled one sample per round.
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    with pytest.raises(ValueError, match=r"budget_fraction must lie in \(0, 1\]"):
        run_with_fraction(data, 0.0)


@pytest.mark.parametrize(("budget", "error"), [(0, ValueError), (2.5, ValueError)])
def test_a_strategy_without_a_usable_budget_is_named(data, monkeypatch, budget, error) -> None:
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    strategy = Scripted(lambda pool: torch.arange(1), budget=budget, name="MyPicker")
    with pytest.raises(error, match="strategy MyPicker has budget"):
        run(data, strategy)


def test_rounds_that_empty_the_pool_are_refused_at_the_start(data, monkeypatch) -> None:
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    # 150 samples: 30 initial + 8 per round leaves nothing for round 16.
    with pytest.raises(ValueError, match="leave no candidate for the last round"):
        run_with_fraction(data, 0.05, rounds=16)


# -- items 4 and 5: the strategy's own worst-group rule; the record names the groups ----------
class SpyGENT(GENT):
    """G-ENT that records the ``group`` and ``validation`` the loop passes."""

    def select(self, *args, **kwargs):
        self.seen = {"group": kwargs.get("group"), "validation": kwargs.get("validation")}
        return super().select(*args, **kwargs)


def test_the_loop_lets_the_strategy_rank_the_groups(data, init) -> None:
    # Before: the loop ranked the groups itself (its own criterion and attack) and passed
    # group=worst to group-aware strategies, overriding their worst-group options.
    spy = SpyGENT(5, criterion="clean", random_state=0)
    result = run(data, spy, initialization=init)
    assert spy.seen["group"] is None
    assert len(spy.seen["validation"]) == len(data.validation)
    record = result.history[1]
    picked_groups = data.train.z[result.labeled[-record["picked"] :]].unique().tolist()
    assert record["groups"] == picked_groups and len(picked_groups) == 1
    assert "worst_group_validation" not in record


def test_a_users_strategy_gets_the_validation_set_and_no_group(data, init) -> None:
    strategy = Scripted(lambda pool: torch.tensor([0, 1]))
    strategy.group_aware = True  # claims to be group-aware but keeps no worst_group options
    run(data, strategy, initialization=init)
    assert strategy.calls[0]["group"] is None
    assert len(strategy.calls[0]["validation"]) == len(data.validation)


def test_the_record_names_the_groups_the_strategy_reports(data, init) -> None:
    class Reporting(Scripted):
        def select(self, *args, **kwargs):
            picks = super().select(*args, **kwargs)
            self.last_selection = {"groups": [1, 0]}
            return picks

    result = run(data, Reporting(lambda pool: torch.tensor([4, 0, 9])), initialization=init)
    record = result.history[1]
    assert (record["groups"], record["groups_from"]) == ([1, 0], "strategy")
    assert sum(record["picked_per_group"]) == record["picked"] == 3


def test_without_a_report_the_groups_come_from_the_picks(data, init) -> None:
    result = run(data, Scripted(lambda pool: torch.tensor([4, 0, 9])), initialization=init)
    record = result.history[1]
    expected = []
    for group in data.train.z[result.labeled[-3:]].tolist():
        if group not in expected:
            expected.append(group)
    assert (record["groups"], record["groups_from"]) == (expected, "picks")


# -- item 10: the oracle ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "error", "needle"),
    [
        (lambda idx: None, TypeError, "returned None"),
        (lambda idx: torch.zeros(len(idx) + 1, dtype=torch.long), ValueError, "shape"),
        (lambda idx: torch.zeros(len(idx)), TypeError, "torch.float32"),
        (lambda idx: [0.5] * len(idx), TypeError, "float"),
        (lambda idx: torch.full((len(idx),), 10), ValueError, "outside 0..9"),
        (lambda idx: torch.full((len(idx),), -1), ValueError, "outside 0..9"),
        (lambda idx: ["cat"] * len(idx), TypeError, "returned a list"),
        (lambda idx: torch.zeros((len(idx), 1), dtype=torch.long), ValueError, "shape"),
    ],
)
def test_a_bad_oracle_answer_names_the_oracle(data, init, answer, error, needle) -> None:
    class Annotator:
        def __call__(self, indices):
            return answer(indices)

    with pytest.raises(error, match="the oracle Annotator") as caught:
        run(data, "RAND", initialization=init, oracle=Annotator())
    assert needle in str(caught.value)


def test_answers_given_before_a_bad_one_stay_on_disk(data, init, tmp_path) -> None:
    calls = []

    def oracle(indices):
        calls.append(indices.tolist())
        return data.train.y[indices] if len(calls) == 1 else None

    with pytest.raises(TypeError, match="oracle"):
        run(
            data,
            "RAND",
            initialization=init,
            oracle=oracle,
            oracle_batch_size=3,
            checkpoint_dir=tmp_path,
        )
    saved = json.loads((tmp_path / "open_round.json").read_text())
    assert saved["labels"] == data.train.y[calls[0]].tolist()
    result = run(data, "RAND", initialization=init, checkpoint_dir=tmp_path, resume=True)
    assert result.labeled[-8:-5].tolist() == calls[0]


# -- item 9: schedules that would fail in a later round --------------------------------------
def test_a_standard_finetune_shorter_than_its_warmup_runs(data, init) -> None:
    # Before: round 2 crashed in TrainConfig ("warmup_epochs must lie in [0, epochs]").
    class NeedsStandard(Scripted):
        requires = frozenset({"model_s"})

    standard = TrainConfig(epochs=3, batch_size=32, adversarial=False, warmup_epochs=2)
    result = run_experiment(
        NeedsStandard(lambda pool: torch.arange(2)),
        data,
        model_fn=tiny_model,
        train=TRAIN,
        standard=standard,
        standard_finetune_epochs=1,
        rounds=2,
        initialization=init,
        attack_steps=1,
    )
    assert [record["round"] for record in result.history] == [0, 1, 2]
    with pytest.raises(ValueError, match="standard_finetune_epochs must be >= 1"):
        run(data, "RAND", standard_finetune_epochs=0)


# -- item 7: data identity -------------------------------------------------------------------
def test_the_fingerprint_follows_the_content_not_the_name(data) -> None:
    other = digits_domains().subsample(train=150, validation=40, test=40, seed=1)
    assert data.name == other.name
    assert data_fingerprint(data)["train"] != data_fingerprint(other)["train"]
    again = digits_domains().subsample(train=150, validation=40, test=40, seed=0)
    assert data_fingerprint(again) == data_fingerprint(data)


def test_a_resume_on_other_data_with_the_same_name_is_refused(data, init, tmp_path) -> None:
    run(data, "RAND", initialization=init, checkpoint_dir=tmp_path)
    settings = (tmp_path / "settings.json").read_bytes()
    other = digits_domains().subsample(train=150, validation=40, test=40, seed=1)
    # Before: the resume continued on the other subsample (same name "digits_domains").
    with pytest.raises(ValueError, match=r"data\.train \(the train split's content"):
        run(other, "RAND", checkpoint_dir=tmp_path, resume=True, rounds=2)
    with pytest.raises(ValueError, match="model_signature"):
        run_experiment(
            "RAND",
            data,
            model_fn=lambda: SmallCNN(10, 1, channels=(4, 16)),
            train=TRAIN,
            budget_fraction=0.05,
            standard=STANDARD,
            attack_steps=1,
            rounds=2,
            checkpoint_dir=tmp_path,
            resume=True,
        )
    with pytest.raises(ValueError, match=r"train\.epochs \(1 then, 2 now\)"):
        run(
            data,
            "RAND",
            checkpoint_dir=tmp_path,
            resume=True,
            rounds=2,
            train=TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0.5, steps=1),
        )
    longer = run(data, "RAND", checkpoint_dir=tmp_path, resume=True, rounds=2)
    assert len(longer.history) == 3
    assert (tmp_path / "settings.json").read_bytes() == settings  # never rewritten


def test_an_initialization_is_matched_to_the_data_by_content(data, init, tmp_path) -> None:
    other = digits_domains().subsample(train=150, validation=40, test=40, seed=1)
    with pytest.raises(ValueError, match=r"initialization was made with other settings: data"):
        run(other, "RAND", initialization=init)
    path = tmp_path / "init.pt"
    init.save(path)
    loaded = Initialization.load(path, tiny_model, dataset=data)
    assert torch.equal(loaded.labeled, init.labeled)
    with pytest.raises(ValueError, match="data.train"):
        Initialization.load(path, tiny_model, dataset=other)
    with pytest.raises(ValueError, match="model_signature"):
        Initialization.load(path, lambda: SmallCNN(10, 1, channels=(8, 8)))


def test_a_stale_last_selection_is_not_reported(data, init) -> None:
    from fral.strategies import RAND

    class Stale(RAND):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.last_selection = {"groups": [0]}  # from some earlier call, never updated

    result = run(data, Stale(5, random_state=0), initialization=init)
    record = result.history[1]
    assert not (record["groups_from"] == "strategy" and record["groups"] == [0])


def test_a_bad_device_is_named(data, monkeypatch) -> None:
    monkeypatch.setattr(fral.loop, "initialize", no_training)
    with pytest.raises(ValueError, match="device must name a torch device"):
        run(data, "RAND", device="gpu0")
