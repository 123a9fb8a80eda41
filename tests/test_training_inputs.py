"""The training boundary: every bad input to the training entry points is a clear error.

A "bad input matrix": each case x each public training entry point (``Trainer.fit``,
``adversarial_train``, ``standard_train``, ``trades_loss``) raises the expected
``TypeError``/``ValueError`` whose message names the argument (and the fix), before any
training step, leaving the model as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from fral.pool import Pool
from fral.training import TrainConfig, Trainer, adversarial_train, standard_train, trades_loss
from tests.utils import assert_unchanged, snapshot

NUM_CLASSES = 4


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, NUM_CLASSES),
    )


class TupleOut(nn.Module):
    """Returns (logits, features), as many user models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = small_net()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.body(x), x.flatten(1)


class DictOut(TupleOut):
    """Returns {"logits": ...}, as Hugging Face style models do."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"logits": self.body(x)}


def good_data(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 6, 6, generator=generator)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    return x, y


OPTIONS = {"epochs": 1, "batch_size": 4, "steps": 1, "warmup_epochs": 0}


def call_fit(model: Any, x: Any, y: Any) -> Any:
    return Trainer(model, TrainConfig(**OPTIONS), random_state=0).fit((x, y))


def call_adversarial(model: Any, x: Any, y: Any) -> Any:
    return adversarial_train(model, (x, y), random_state=0, progress=False, **OPTIONS)


def call_standard(model: Any, x: Any, y: Any) -> Any:
    return standard_train(model, (x, y), random_state=0, progress=False, **OPTIONS)


def call_trades(model: Any, x: Any, y: Any) -> Any:
    return trades_loss(model, x, y, steps=1)


# entry point -> (call, name of the inputs in messages, name of the labels in messages)
ENTRY_POINTS: dict[str, tuple[Callable[..., Any], str, str]] = {
    "Trainer.fit": (call_fit, "data", "labels"),
    "adversarial_train": (call_adversarial, "data", "labels"),
    "standard_train": (call_standard, "data", "labels"),
    "trades_loss": (call_trades, "x", "y"),
}


@dataclass
class Case:
    """A bad input: builds (model, x, y); the error type and a message pattern.

    ``{x}`` and ``{y}`` in the pattern stand for the entry point's names of the inputs and
    labels.
    """

    build: Callable[[], tuple[Any, Any, Any]]
    error: type[Exception]
    pattern: str
    skip: tuple[str, ...] = ()  # entry points for which the input is not an error


def with_x(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], tuple]:
    def build() -> tuple:
        x, y = good_data()
        return small_net(), transform(x), y

    return build


def with_y(transform: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], tuple]:
    def build() -> tuple:
        x, y = good_data()
        return small_net(), x, transform(y)

    return build


def with_model(transform: Callable[[nn.Module], Any]) -> Callable[[], tuple]:
    def build() -> tuple:
        x, y = good_data()
        return transform(small_net()), x, y

    return build


def poisoned(value: float, where: str) -> Callable[[nn.Module], nn.Module]:
    def transform(model: nn.Module) -> nn.Module:
        with torch.no_grad():
            tensor = model[1].running_var if where == "buffer" else model[0].weight
            tensor.view(-1)[0] = value
        return model

    return transform


def frozen(model: nn.Module) -> nn.Module:
    return model.requires_grad_(False)


def with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[3, 0, 2, 2] = float("nan")
    return x


def with_inf(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[7, 0, 0, 1] = float("-inf")
    return x


def out_of_range_label(y: torch.Tensor) -> torch.Tensor:
    y = y.clone()
    y[2] = NUM_CLASSES
    return y


def negative_label(y: torch.Tensor) -> torch.Tensor:
    y = y.clone()
    y[5] = -1
    return y


CASES: dict[str, Case] = {
    "uint8 images": Case(
        with_x(lambda x: (x * 255).to(torch.uint8)), TypeError, r"{x}.*uint8.*x\.float\(\) / 255"
    ),
    "int64 inputs": Case(
        with_x(lambda x: (x * 10).long()), TypeError, r"{x}.*int64.*x\.float\(\) / 255.*bounds"
    ),
    "float64 model, float32 data": Case(
        with_model(lambda m: m.double()), TypeError, r"{x} is torch.float32.*model\.float\(\)"
    ),
    "float32 model, float64 data": Case(
        with_x(lambda x: x.double()), TypeError, r"{x} is torch.float64.*x\.float\(\)"
    ),
    "model on meta": Case(with_model(lambda m: m.to("meta")), ValueError, r"model.*meta.*to_empty"),
    "data on meta": Case(
        with_x(lambda x: x.to("meta")), ValueError, r"(inputs are|{x} is) on the meta device"
    ),
    "model returns a tuple": Case(
        with_model(lambda m: TupleOut()), TypeError, r"model (must return a logits|returned).*tuple"
    ),
    "model returns a dict": Case(
        with_model(lambda m: DictOut()), TypeError, r"model (must return a logits|returned).*dict"
    ),
    "not a model": Case(with_model(lambda m: m.forward), TypeError, r"model must be a torch"),
    "frozen model": Case(with_model(frozen), ValueError, r"model has no trainable parameter"),
    "NaN in a weight": Case(
        with_model(poisoned(float("nan"), "weight")), ValueError, r"model has NaN.*0\.weight"
    ),
    "inf in a BatchNorm buffer": Case(
        with_model(poisoned(float("inf"), "buffer")), ValueError, r"model has NaN.*running_var"
    ),
    "NaN in inputs": Case(with_x(with_nan), ValueError, r"{x} holds NaN or infinite"),
    "inf in inputs": Case(with_x(with_inf), ValueError, r"{x} holds NaN or infinite"),
    "inputs above bounds": Case(
        with_x(lambda x: x * 2),
        ValueError,
        r"{x} lies outside bounds \(0\.0, 1\.0\)",
        skip=("standard_train",),
    ),
    "normalised inputs below bounds": Case(
        with_x(lambda x: (x - 0.5) / 0.25),
        ValueError,
        r"{x} lies outside bounds",
        skip=("standard_train",),
    ),
    "empty data": Case(lambda: (small_net(), *good_data(0)), ValueError, r"{x} is empty"),
    "label >= number of classes": Case(
        with_y(out_of_range_label), ValueError, r"{y} must lie in \[0, 4\).*got range \[\d, 4\]"
    ),
    "negative label": Case(with_y(negative_label), ValueError, r"{y}.*non-negative|{y} must lie"),
    "labels of another length": Case(
        with_y(lambda y: y[:9]), ValueError, r"{y} (has 9 entries|must have shape \(10,\))"
    ),
    "float labels": Case(with_y(lambda y: y.float()), TypeError, r"{y}.*(integers|int64)"),
}


def _prepare(case_name: str, entry: str) -> tuple[Case, Callable[..., Any], str, Any, Any, Any]:
    case = CASES[case_name]
    call, x_name, y_name = ENTRY_POINTS[entry]
    model, x, y = case.build()
    pattern = case.pattern.format(x=re.escape(x_name), y=re.escape(y_name))
    return case, call, pattern, model, x, y


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case_name", list(CASES))
def test_bad_training_input_is_a_clear_error(case_name: str, entry: str) -> None:
    case, call, pattern, model, x, y = _prepare(case_name, entry)
    # Models that can be snapshotted and compared (no meta tensors, no NaN != NaN).
    keep = isinstance(model, nn.Module) and not any(
        t.is_meta or (t.is_floating_point() and bool(t.isnan().any()))
        for t in (*model.parameters(), *model.buffers())
    )
    before = snapshot(model) if keep else None
    if entry in case.skip:
        call(model, x, y)  # not an error for this entry point: it trains
        return
    with pytest.raises(case.error, match=pattern):
        call(model, x, y)
    if before is not None:
        assert_unchanged(model, before)  # refused before any step or BatchNorm update


class Images(Dataset):
    """A Dataset of (image, label) pairs, one image replaced by ``bad`` from index ``at``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, at: int, bad: torch.Tensor) -> None:
        self.x, self.y, self.at, self.bad = x, y, at, bad

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.bad if index == self.at else self.x[index]
        return image, int(self.y[index])


@pytest.mark.parametrize(
    ("bad", "error", "pattern"),
    [
        (torch.full((1, 6, 6), 1.5), ValueError, r"data lies outside bounds \(0\.0, 1\.0\)"),
        (torch.full((1, 6, 6), float("nan")), ValueError, r"data holds NaN"),
        (torch.zeros(1, 6, 6, dtype=torch.float64), TypeError, r"data is torch\.float64"),
    ],
)
def test_a_dataset_backed_pool_is_checked_batch_by_batch(bad, error, pattern) -> None:
    """A bad sample deep in a Dataset (not in the first batch, which is checked before
    training) stops training at its batch, before that batch's step."""
    x, y = good_data(40)
    dataset = Images(x, y, at=29, bad=bad)
    pool = Pool(dataset, torch.zeros(40, dtype=torch.long), labels=y)
    model = small_net()
    config = TrainConfig(epochs=1, batch_size=8, steps=1, warmup_epochs=0, trades="fast")
    with pytest.raises(error, match=pattern):
        Trainer(model, config, random_state=0).fit(pool)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The same data as a tensor is refused before the first step.
    tensor_x = torch.stack([dataset[i][0] for i in range(40)])
    if tensor_x.dtype == torch.float32:
        with pytest.raises(error, match=pattern):
            Trainer(small_net(), config, random_state=0).fit((tensor_x, y))


def test_first_dataset_batch_is_checked_before_any_step() -> None:
    x, y = good_data(12)
    dataset = Images((x * 255).to(torch.uint8), y, at=-1, bad=torch.zeros(0))
    pool = Pool(dataset, torch.zeros(12, dtype=torch.long), labels=y)
    model = small_net()
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"data must be a floating-point.*x\.float\(\) / 255"):
        Trainer(model, TrainConfig(**OPTIONS), random_state=0).fit(pool)
    assert_unchanged(model, before)


def test_trades_loss_refuses_bad_options_and_misplaced_labels() -> None:
    model, (x, y) = small_net(), good_data()
    cases = [
        ({"eps": -0.1}, ValueError, r"eps must be a finite number >= 0"),
        ({"eps": float("nan")}, ValueError, r"eps must be a finite"),
        ({"alpha": 0}, ValueError, r"alpha must be a finite number > 0"),
        ({"steps": 0}, ValueError, r"steps must be an int >= 1"),
        ({"steps": 2.0}, TypeError, r"steps must be an int"),
        ({"beta": -1}, ValueError, r"beta must be a finite number >= 0"),
        ({"bounds": (1.0, 0.0)}, ValueError, r"bounds must be ordered"),
        ({"bounds": (0.0, float("inf"))}, ValueError, r"bounds\[1\] must be a finite"),
        ({"bounds": "0,1"}, TypeError, r"bounds must be None .* or a pair"),
        ({"form": "paper"}, ValueError, r"form must be one of \('official', 'fast'\)"),
    ]
    for options, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            trades_loss(model, x, y, **options)
    with pytest.raises(ValueError, match=r"y must have shape \(10,\)"):
        trades_loss(model, x, y[:5])
    with pytest.raises(TypeError, match=r"y must be an int64 tensor.*y\.long\(\)"):
        trades_loss(model, x, y.int())
    with pytest.raises(ValueError, match=r"x is on meta|x is on the meta"):
        trades_loss(model, x.to("meta"), y)
    # Unbounded features (bounds=None) take any finite value.
    assert torch.isfinite(trades_loss(model, x * 5 - 2, y, bounds=None, steps=1))


def test_training_does_not_clamp_inputs_outside_bounds_when_they_are_unbounded() -> None:
    """bounds=None: features outside [0, 1] train; with bounds set they are refused."""
    x, y = good_data()
    adversarial_train(small_net(), (x * 3 - 1, y), bounds=None, progress=False, **OPTIONS)
    with pytest.raises(ValueError, match="bounds"):
        adversarial_train(small_net(), (x * 3 - 1, y), bounds=(0, 1), progress=False, **OPTIONS)


def test_a_model_without_parameters_is_refused_by_name() -> None:
    x, y = good_data()
    with pytest.raises(ValueError, match="model has no parameters to train"):
        standard_train(nn.Flatten(), (x, y), progress=False, **OPTIONS)


def test_a_refused_fit_leaves_the_trainer_as_it_was() -> None:
    """A refused call does not advance the trainer's generator: a retry trains the same."""
    trainer = Trainer(small_net(), TrainConfig(**OPTIONS), random_state=0)
    state = trainer.state_dict()
    x, y = good_data()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        trainer.fit((x, out_of_range_label(y)))
    assert torch.equal(trainer.generator.get_state(), state["generator"])
    assert trainer.epochs_done == 0
