"""The loop's final evaluation: bootstrap intervals, group names, AutoAttack as an option."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import fral.loop
from fral.autoattack import AutoAttack
from fral.datasets import digits_domains
from fral.loop import run_experiment
from fral.models import SmallCNN
from fral.training import TrainConfig

TRAIN = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0.5, steps=2)


@pytest.fixture(scope="module")
def data():
    return digits_domains().subsample(train=200, validation=40, test=60, seed=0)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def quick_autoattack(monkeypatch):
    """The loop's AutoAttack with Square at 50 queries, to keep the test in seconds."""
    built = []

    def quick(dataset, pgd):
        attack = AutoAttack(eps=dataset.eps, bounds=dataset.bounds, pgd=pgd, n_queries=50)
        built.append(attack)
        return attack

    monkeypatch.setattr(fral.loop, "_eval_autoattack", quick)
    return built


def run(data, **options):
    return run_experiment(
        "RAND",
        data,
        model_fn=lambda: SmallCNN(10, 1, channels=(4, 8)),
        train=TRAIN,
        budget_fraction=0.05,
        **options,
    )


def test_final_round_carries_intervals_and_autoattack(data, quick_autoattack) -> None:
    result = run(data, rounds=1, eval_attack="autoattack")
    first, final = result.history
    assert "ci" not in first["test"] and "test_autoattack" not in first
    assert first["test"]["group_names"] == ["MNIST", "UCI optdigits"]
    test, auto = final["test"], final["test_autoattack"]
    assert quick_autoattack and auto["attack"] == repr(quick_autoattack[-1])
    assert test["attack"].startswith("PGD(")
    for record in (test, auto):
        ci = record["ci"]["robust"]["accuracy"]
        worst = record["summary"]["robust_accuracy_worst"]
        assert ci["group_min"][0] <= worst <= ci["group_min"][1]
        assert ci["confidence_level"] == 0.95 and ci["n_resamples"] == 1000
        assert set(record["ci"]) == {"clean", "robust"}
    # The worst case of PGD and AutoAttack, on the same PGD: never above PGD, per group.
    pgd_groups = test["groups"]["robust"]["accuracy"]["per_group"]
    auto_groups = auto["groups"]["robust"]["accuracy"]["per_group"]
    assert all(a <= p for a, p in zip(auto_groups, pgd_groups, strict=True))
    assert auto["summary"]["clean_accuracy_worst"] == test["summary"]["clean_accuracy_worst"]
    plain = run(data, rounds=1)
    assert "test_autoattack" not in plain.history[-1]
    assert plain.history[-1]["test"]["summary"] == test["summary"]  # same PGD, same seed


def test_without_rounds_round_zero_is_the_final_evaluation(data, quick_autoattack) -> None:
    (only,) = run(data, rounds=0, eval_attack="autoattack").history
    assert "ci" in only["test"] and "ci" in only["test_autoattack"]


def test_autoattack_is_refused_before_training_where_it_cannot_run(data, monkeypatch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking eval_attack")

    monkeypatch.setattr(fral.loop.Trainer, "fit", no_training)
    with pytest.raises(ValueError, match="bounds=None"):
        run(dataclasses.replace(data, bounds=None), rounds=1, eval_attack="autoattack")
    with pytest.raises(ValueError, match="eval_attack must be one of"):
        run(data, rounds=1, eval_attack="fgsm")
