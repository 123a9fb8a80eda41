"""The strategy part of the bad-input matrix: every strategy x every bad option or input.

Each case must raise ``ValueError`` or ``TypeError`` with a message naming the argument, at
the boundary (the constructor or the start of ``select``), never from deep inside torch and
never a silent answer. NumPy integers are accepted wherever an int is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from fral.pool import Pool
from fral.strategies import STRATEGIES, build_strategy
from tests.utils import make_net

GROUPS = 3

# Options that make each strategy cheap enough to run in a test.
CHEAP: dict[str, dict[str, Any]] = {
    "fairal": {"top_k": 3, "max_labels": 1, "finetune_steps": 1, "validation_size": 8},
}
CHEAP["fairal"]["progress"] = False

# Which constructor options each strategy has (beyond budget and random_state).
HAS = {
    "batch_size": {"jin", "ent", "cset", "badge", "g-rand", "g-ent", "minmax", "opt", "fairal"},
    "criterion": {"jin", "g-rand", "g-ent", "minmax", "opt", "fairal"},
    "metric": {"jin", "g-rand", "g-ent"},
    "attack": {"jin", "g-rand", "g-ent", "minmax", "opt", "fairal"},
    "amp": {"jin", "ent", "cset", "badge", "g-rand", "g-ent", "minmax", "opt"},
    "fill": {"jin", "g-rand", "g-ent", "minmax", "opt", "fairal"},
    "model": {"ent", "g-ent"},
    "components": {"jin"},
    "weights": {"jin"},
    "optimize": {"jin"},
    "step": {"minmax"},
    "k_min": {"minmax"},
    "patience": {"minmax"},
    "risk": {"minmax", "opt"},
    "exploration": {"opt"},
    "sub_batches": {"opt"},
    "alpha": {"fairal"},
    "top_k": {"fairal"},
    "label_mass": {"fairal"},
    "lr": {"fairal"},
    "finetune_steps": {"fairal"},
    "replay": {"fairal"},
    "progress": {"fairal"},
    "adversarial": {"fairal"},
    "chunk_size": {"cset"},
    "layer": {"cset", "badge"},
    "features": {"cset", "badge"},
}

# (option, bad value, exception, text the message must hold)
BAD_OPTIONS = [
    ("budget", True, TypeError, "budget"),
    ("budget", 2.5, TypeError, "budget"),
    ("budget", "4", TypeError, "budget"),
    ("budget", None, TypeError, "budget"),
    ("budget", 0, ValueError, "budget"),
    ("budget", -3, ValueError, "budget"),
    ("budget", np.int64(0), ValueError, "budget"),
    ("random_state", 1.5, TypeError, "random_state"),
    ("random_state", "seed", TypeError, "random_state"),
    ("random_state", -1, ValueError, "random_state"),
    ("batch_size", 0, ValueError, "batch_size"),
    ("batch_size", True, TypeError, "batch_size"),
    ("batch_size", 32.0, TypeError, "batch_size"),
    ("batch_size", "32", TypeError, "batch_size"),
    ("criterion", "worst", ValueError, "criterion"),
    ("criterion", 3, ValueError, "criterion"),
    ("criterion", ["mean"], ValueError, "criterion"),
    ("metric", "auc", ValueError, "metric"),
    ("metric", None, ValueError, "metric"),
    ("attack", 5, TypeError, "attack"),
    ("attack", "pgd", TypeError, "attack"),
    ("amp", "yes", TypeError, "amp"),
    ("amp", torch.int8, TypeError, "amp"),
    ("fill", "no", TypeError, "fill"),
    ("fill", 1, TypeError, "fill"),
    ("model", "teacher", ValueError, "model"),
    ("model", 1, ValueError, "model"),
    ("components", ("standard", "adversarial"), ValueError, "components"),
    ("components", (), ValueError, "components"),
    ("components", 5, TypeError, "components"),
    ("weights", (math.nan, 1.0), ValueError, "weights"),
    ("weights", (1.0,), ValueError, "weights"),
    ("weights", ("a", 1.0), TypeError, "weights"),
    ("optimize", "yes", TypeError, "optimize"),
    ("step", 0.0, ValueError, "step"),
    ("step", math.nan, ValueError, "step"),
    ("step", "half", TypeError, "step"),
    ("k_min", 0, ValueError, "k_min"),
    ("patience", 1.5, TypeError, "patience"),
    ("risk", "hinge", ValueError, "risk"),
    ("exploration", -1.0, ValueError, "exploration"),
    ("exploration", math.inf, ValueError, "exploration"),
    ("exploration", "big", TypeError, "exploration"),
    ("sub_batches", 0, ValueError, "sub_batches"),
    ("sub_batches", 2.0, TypeError, "sub_batches"),
    ("alpha", 1.5, ValueError, "alpha"),
    ("alpha", math.nan, ValueError, "alpha"),
    ("top_k", 1, ValueError, "top_k"),
    ("top_k", 4.0, TypeError, "top_k"),
    ("label_mass", 0.0, ValueError, "label_mass"),
    ("lr", 0.0, ValueError, "lr"),
    ("lr", "fast", TypeError, "lr"),
    ("finetune_steps", 0, ValueError, "finetune_steps"),
    ("replay", -1, ValueError, "replay"),
    ("progress", "no", TypeError, "progress"),
    ("adversarial", None, TypeError, "adversarial"),
    ("chunk_size", 0, ValueError, "chunk_size"),
    ("layer", 5, TypeError, "layer"),
    ("features", "penultimate", TypeError, "features"),
]


def _option_cases() -> list[Any]:
    cases = []
    for name in sorted(STRATEGIES):
        for option, value, error, match in BAD_OPTIONS:
            if option in {"budget", "random_state"} or name in HAS[option]:
                case_id = f"{name}-{option}={value!r}"
                cases.append(pytest.param(name, option, value, error, match, id=case_id))
    return cases


@pytest.mark.parametrize(("name", "option", "value", "error", "match"), _option_cases())
def test_bad_options_are_refused_by_the_constructor(name, option, value, error, match) -> None:
    options = {"budget": 2, **CHEAP.get(name, {}), option: value}
    budget = options.pop("budget")
    with pytest.raises(error, match=match):
        build_strategy(name, budget, **options)


def make_pool(size: int, seed: int, *, labels: bool = False, groups: int = GROUPS) -> Pool:
    generator = torch.Generator().manual_seed(seed)
    group_ids = torch.arange(size) % groups
    classes = torch.randint(0, 4, (size,), generator=generator) if labels else None
    inputs = torch.rand(size, 1, 8, 8, generator=generator)
    return Pool(inputs, group_ids, labels=classes, num_groups=groups)


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    return {
        "model_r": make_net(0),
        "model_s": make_net(1),
        "pool": make_pool(24, 0),
        "labeled": make_pool(9, 1, labels=True),
        "validation": make_pool(12, 2, labels=True),
        "group": None,
    }


def _empty(labels: bool) -> Pool:
    nothing = torch.empty(0, dtype=torch.int64)
    return Pool(torch.empty(0, 1, 8, 8), nothing, labels=nothing if labels else None)


# (input, bad value builder, exception, text the message must hold)
BAD_INPUTS = [
    ("model_r", lambda: "model", TypeError, "model_r"),
    ("model_r", lambda: None, TypeError, "model_r"),
    ("model_s", lambda: "model", TypeError, "model_s"),
    ("pool", lambda: torch.rand(5, 1, 8, 8), TypeError, "pool"),
    ("pool", lambda: None, ValueError, "pool"),
    ("pool", lambda: _empty(False), ValueError, "empty pool"),
    ("validation", lambda: torch.rand(5, 1, 8, 8), TypeError, "validation"),
    ("validation", lambda: make_pool(12, 2), ValueError, "validation must be a Pool with labels"),
    ("validation", lambda: _empty(True), ValueError, "validation is empty"),
    ("validation", lambda: make_pool(12, 2, labels=True, groups=2), ValueError, "num_groups"),
    ("validation", lambda: make_pool(12, 2, labels=True, groups=4), ValueError, "num_groups"),
    ("labeled", lambda: torch.rand(5, 1, 8, 8), TypeError, "labeled"),
    ("labeled", lambda: [0, 1, 2], TypeError, "labeled"),
    ("labeled", lambda: make_pool(9, 1, labels=True, groups=5), ValueError, "num_groups"),
    ("group", lambda: True, TypeError, "group"),
    ("group", lambda: 1.0, TypeError, "group"),
    ("group", lambda: "1", TypeError, "group"),
    ("group", lambda: 3, ValueError, "group 3"),
    ("group", lambda: -1, ValueError, "group -1"),
    ("group", lambda: np.int64(7), ValueError, "group 7"),
]


def _input_cases() -> list[Any]:
    return [
        pytest.param(name, key, build, error, match, id=f"{name}-{key}-{position}")
        for name in sorted(STRATEGIES)
        for position, (key, build, error, match) in enumerate(BAD_INPUTS)
    ]


@pytest.mark.parametrize(("name", "key", "build", "error", "match"), _input_cases())
def test_bad_inputs_are_refused_by_select(name, key, build, error, match, inputs) -> None:
    strategy = build_strategy(name, 2, random_state=0, **CHEAP.get(name, {}))
    call = {**inputs, key: build()}
    model_r, model_s, pool = call.pop("model_r"), call.pop("model_s"), call.pop("pool")
    with pytest.raises(error, match=match):
        strategy.select(model_r, model_s, pool, **call)
    assert strategy.last_selection is None


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_numpy_integers_are_accepted(name, inputs) -> None:
    strategy = build_strategy(name, np.int64(3), random_state=np.int64(0), **CHEAP.get(name, {}))
    call = {**inputs, "group": np.int64(1)}
    model_r, model_s, pool = call.pop("model_r"), call.pop("model_s"), call.pop("pool")
    picks = strategy.select(model_r, model_s, pool, **call)
    assert strategy.budget == 3 and type(strategy.budget) is int
    assert picks.dtype == torch.int64 and 0 < picks.numel() <= 3
    if name not in {"minmax", "opt"}:  # they choose their groups themselves
        assert set(pool.groups[picks].tolist()) == {1}
