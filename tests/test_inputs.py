"""The bad-input matrix: every public call that runs a model or scores logits, against every kind
of bad input a user hands it. Each case must raise a ValueError or TypeError at the boundary whose
message names the problem, never answer, never fail deep inside torch."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from fral import PGD, Pool, evaluate
from fral.attacks import as_attack, pgd
from fral.metrics import group_ranking
from fral.predict import embeddings, logits, probabilities
from fral.scores import (
    entropy,
    fuse,
    kl_from_logits,
    robust_inconsistency,
    standard_inconsistency,
    zscore,
)
from fral.scoring import entropy_scores, inconsistency_scores
from tests.utils import make_net

N = 6


def _net() -> nn.Module:
    return make_net(num_classes=4)


class ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out, out


class ReturnsDict(ReturnsTuple):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": self.net(x)}


class ReturnsMap(ReturnsTuple):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, :, None]


def _nan_weights() -> nn.Module:
    model = _net()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    return model


def _images(n: int = N) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


# Each bad input: (model, inputs, labels) -> expected exception and a word its message holds.
GOOD_LABELS = torch.arange(N) % 4
BAD_INPUTS: dict[str, tuple[Callable[[], tuple], type[Exception], str]] = {
    "uint8 images": (
        lambda: (_net(), (_images() * 255).to(torch.uint8), GOOD_LABELS),
        TypeError,
        r"x.float\(\) / 255",
    ),
    "int64 inputs": (lambda: (_net(), _images().long(), GOOD_LABELS), TypeError, "floating"),
    "NaN inputs": (
        lambda: (_net(), _images().index_fill(0, torch.tensor([2]), float("nan")), GOOD_LABELS),
        ValueError,
        "NaN",
    ),
    "inf inputs": (
        lambda: (_net(), _images().index_fill(0, torch.tensor([1]), float("inf")), GOOD_LABELS),
        ValueError,
        "infinite",
    ),
    "float64 model, float32 data": (
        lambda: (_net().double(), _images(), GOOD_LABELS),
        TypeError,
        "float64",
    ),
    "model on meta": (lambda: (_net().to("meta"), _images(), GOOD_LABELS), ValueError, "meta"),
    "inputs on meta": (lambda: (_net(), _images().to("meta"), GOOD_LABELS), ValueError, "meta"),
    "model returns a tuple": (
        lambda: (ReturnsTuple(), _images(), GOOD_LABELS),
        TypeError,
        "logits",
    ),
    "model returns a dict": (lambda: (ReturnsDict(), _images(), GOOD_LABELS), TypeError, "logits"),
    "model returns 3-D": (lambda: (ReturnsMap(), _images(), GOOD_LABELS), TypeError, "logits"),
    "NaN weights": (lambda: (_nan_weights(), _images(), GOOD_LABELS), ValueError, "NaN"),
    "labels above the classes": (
        lambda: (_net(), _images(), torch.tensor([0, 1, 2, 3, 4, 0])),
        ValueError,
        r"must lie in \[0, 4\)",
    ),
    "empty data": (lambda: (_net(), _images(0), GOOD_LABELS[:0]), ValueError, "empty"),
    "not a model": (lambda: (lambda x: x, _images(), GOOD_LABELS), TypeError, "nn.Module"),
}


def _pool(x: torch.Tensor, y: torch.Tensor) -> Pool:
    return Pool(x, torch.arange(len(x)) % 2, labels=y)


def _callable_attack(model, x, y):
    """A user's FGSM."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), x)
    return (x + 0.03 * grad.sign()).clamp(0, 1).detach()


# Each public call: (model, x, y) -> result. Labels matter only where the call uses them.
CALLS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], object]] = {
    "logits": lambda m, x, y: logits(m, x),
    "logits(pool)": lambda m, x, y: logits(m, _pool(x, y)),
    "probabilities": lambda m, x, y: probabilities(m, x),
    "embeddings": lambda m, x, y: embeddings(m, x),
    "pgd": lambda m, x, y: pgd(m, x),
    "pgd(labels)": lambda m, x, y: pgd(m, x, y),
    "PGD(kl)": lambda m, x, y: PGD(objective="kl")(m, x),
    "callable attack": lambda m, x, y: as_attack(_callable_attack)(m, x, y),
    "evaluate": lambda m, x, y: evaluate(m, _pool(x, y)),
    "evaluate(clean)": lambda m, x, y: evaluate(m, _pool(x, y), robust=False),
    "group_ranking": lambda m, x, y: group_ranking(m, _pool(x, y)),
    "inconsistency_scores": lambda m, x, y: inconsistency_scores(
        m, _pool(x, y), copy.deepcopy(m) if isinstance(m, nn.Module) else m
    ),
    "entropy_scores": lambda m, x, y: entropy_scores(m, _pool(x, y)),
}

ATTACKS = {"pgd", "pgd(labels)", "PGD(kl)", "callable attack"}
LABEL_CALLS = {"pgd(labels)", "callable attack", "evaluate", "evaluate(clean)", "group_ranking"}


def _applies(call: str, case: str) -> bool:
    if case == "labels above the classes":
        return call in LABEL_CALLS
    return True


MATRIX = [(call, case) for call in CALLS for case in BAD_INPUTS if _applies(call, case)]


@pytest.mark.parametrize(("call", "case"), MATRIX, ids=[f"{c}-{b}" for c, b in MATRIX])
def test_bad_inputs_are_refused_clearly(call: str, case: str) -> None:
    make, error, words = BAD_INPUTS[case]
    model, x, y = make()
    if case == "empty data" and call in ATTACKS:
        assert CALLS[call](model, x, y).shape == x.shape  # nothing to attack: a right answer
        return
    with pytest.raises(error, match=words):
        CALLS[call](model, x, y)


# The attack's options and bounds.
ATTACK_OPTIONS = [
    ({"eps": float("nan")}, "eps"),
    ({"eps": float("inf")}, "eps"),
    ({"eps": -0.1}, "eps"),
    ({"eps": True}, "eps"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"steps": -1}, "steps"),
    ({"steps": 2.0}, "steps"),
    ({"steps": True}, "steps"),
    ({"objective": "hinge"}, "objective"),
    ({"bounds": (1.0, 0.0)}, "bounds"),
    ({"bounds": (0.0, float("nan"))}, "bounds"),
    ({"bounds": (0.0, 0.5, 1.0)}, "bounds"),
    ({"bounds": "unit"}, "bounds"),
]


@pytest.mark.parametrize(("options", "name"), ATTACK_OPTIONS)
def test_bad_attack_options_name_the_option(options: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PGD(**options)
    with pytest.raises(ValueError, match=name):
        pgd(_net(), _images(), **options)


def test_inputs_outside_bounds_name_bounds() -> None:
    with pytest.raises(ValueError, match="bounds"):
        pgd(_net(), _images() * 3)
    with pytest.raises(ValueError, match="bounds"):
        evaluate(_net(), _pool(_images() * 3, GOOD_LABELS))


@pytest.mark.parametrize("batch_size", [0, -2, True, 2.5])
def test_bad_batch_sizes(batch_size) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        logits(_net(), _images(), batch_size=batch_size)


@pytest.mark.parametrize(
    ("num_groups", "error"),
    [(2.0, TypeError), (True, TypeError), ("2", TypeError), (1, ValueError)],
)
def test_num_groups_must_be_an_int_above_every_id(num_groups, error) -> None:
    with pytest.raises(error, match="num_groups"):
        Pool(_images(), [0, 1, 0, 1, 0, 1], num_groups=num_groups)


LOGITS = torch.randn(5, 3)
SCORE_CASES = [
    (lambda: kl_from_logits(LOGITS, LOGITS.index_fill(0, torch.tensor([1]), float("nan"))), "NaN"),
    (lambda: kl_from_logits(LOGITS, LOGITS[:4]), "same shape"),
    (lambda: standard_inconsistency(LOGITS.long(), LOGITS), "floating"),
    (lambda: robust_inconsistency(LOGITS[0], LOGITS[0]), "shape"),
    (lambda: entropy(LOGITS.index_fill(0, torch.tensor([0]), float("inf"))), "infinite"),
    (lambda: entropy([[0.1, 0.9]]), "Tensor"),
    (lambda: zscore(torch.tensor([])), "empty"),
    (lambda: zscore(torch.tensor([1.0, float("nan")])), "NaN"),
    (lambda: fuse(torch.rand(3), torch.rand(4)), "shape"),
    (lambda: fuse(), "at least one"),
    (lambda: fuse(torch.rand(3), weights=[1.0, 2.0]), "weights"),
]


@pytest.mark.parametrize("index", range(len(SCORE_CASES)))
def test_scorers_refuse_bad_logits(index: int) -> None:
    call, words = SCORE_CASES[index]
    with pytest.raises((ValueError, TypeError), match=words):
        call()
