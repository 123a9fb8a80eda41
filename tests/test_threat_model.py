"""The threat model a user declares (on a data set or a TrainConfig) is the one trained at."""

from __future__ import annotations

import dataclasses

import pytest

from fral.datasets import digits_domains
from fral.loop import run_experiment
from fral.models import SmallCNN
from fral.training import INHERIT, TrainConfig


def test_unset_fields_inherit_and_alpha_follows_eps() -> None:
    config = TrainConfig(epochs=2)
    assert config.eps == INHERIT and config.alpha == INHERIT and config.bounds == INHERIT
    assert not config.threat_model_set
    inherited = config.inherit(0.05, 0.01, None)
    assert (inherited.eps, inherited.alpha, inherited.bounds) == (0.05, 0.01, None)
    # eps given, alpha not: the paper's ratio eps / 2, not the data set's alpha.
    own = TrainConfig(eps=8 / 255).inherit(0.05, 0.01, (0.0, 1.0))
    assert own.eps == 8 / 255 and own.alpha == pytest.approx(4 / 255)
    assert own.bounds == (0.0, 1.0)
    kept = TrainConfig(eps=0.1, alpha=0.03, bounds=(-1.0, 1.0)).inherit(0.05, 0.01, None)
    assert (kept.eps, kept.alpha, kept.bounds) == (0.1, 0.03, (-1.0, 1.0))
    paper = config.resolved()
    assert (paper.eps, paper.alpha, paper.bounds) == (4 / 255, 2 / 255, (0.0, 1.0))
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(inherited.to_dict()) == inherited


def test_the_loop_trains_at_the_datasets_eps(tmp_path) -> None:
    """A TrainConfig without eps on a data set declared at eps 0.05 trains at 0.05."""
    data = digits_domains().subsample(train=120, validation=40, test=40, seed=0)
    data = dataclasses.replace(data, eps=0.05, alpha=0.02)
    result = run_experiment(
        "RAND",
        data,
        rounds=1,
        budget_fraction=0.05,
        model_fn=lambda: SmallCNN(10, 1, channels=(4, 8)),
        train=TrainConfig(epochs=1, batch_size=32, warmup_epochs=0, steps=1),
    )
    for name in ("train", "finetune", "standard"):
        settings = result.settings[name]
        assert (settings["eps"], settings["alpha"], settings["bounds"]) == (0.05, 0.02, [0.0, 1.0])
