"""Every public call that runs a model, over a zoo of ordinary user models, in train and eval
mode: the answer equals the model's own eval-mode answer and the model comes back unchanged."""

from __future__ import annotations

import warnings

import pytest
import torch

from fral import JIN, PGD, Pool, evaluate
from fral._modules import OptimizationWarning, clear_cache, evaluation_view
from fral.attacks import pgd
from fral.metrics import group_ranking
from fral.predict import embeddings, logits, probabilities
from fral.scores import entropy
from fral.scoring import inconsistency_scores
from fral.strategies import BADGE, ENT, STRATEGIES, build_strategy
from tests.utils import assert_unchanged, snapshot
from tests.zoo import NUM_CLASSES, ZOO, build, eval_logits

CASES = [(name, train) for name in ZOO for train in (False, True)]
IDS = [f"{name}-{'train' if train else 'eval'}" for name, train in CASES]
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def hook_count(model: torch.nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]


def pools(x: torch.Tensor) -> tuple[Pool, Pool]:
    groups = torch.arange(len(x)) % 2
    labels = torch.arange(len(x)) % NUM_CLASSES
    return Pool(x, groups), Pool(x, groups, labels=labels)


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize(("name", "train"), CASES, ids=IDS)
def test_inference_equals_the_models_own_eval_forward(name: str, train: bool) -> None:
    model, x = build(name, train)
    before, hooks = snapshot(model), hook_count(model)
    expected = eval_logits(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)
        for _ in range(2):  # the first call builds the kept copy, the second reuses it
            torch.testing.assert_close(logits(model, x, batch_size=4), expected, **TOLERANCE)
        torch.testing.assert_close(
            probabilities(model, x), expected.softmax(1), rtol=1e-4, atol=1e-6
        )
        emb, out = embeddings(model, x, return_logits=True)
        torch.testing.assert_close(out, expected, **TOLERANCE)
        assert emb.shape[0] == len(x)
    assert_unchanged(model, before)
    assert hook_count(model) == hooks


@pytest.mark.parametrize(("name", "train"), CASES, ids=IDS)
def test_attacks_scores_and_selection_equal_the_plain_models(name: str, train: bool) -> None:
    """In float64, so that the optimised and the plain model take the same attack steps."""
    model, x = build(name, train)
    model, x = model.double(), x.double()
    model_s, _ = build(name, not train)
    model_s = model_s.double()
    before, before_s = snapshot(model), snapshot(model_s)
    pool, labelled = pools(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizationWarning)
        fast = pgd(model, x, generator=torch.Generator().manual_seed(0))
        plain = pgd(model, x, generator=torch.Generator().manual_seed(0), optimize=False)
        torch.testing.assert_close(fast, plain)
        torch.testing.assert_close(
            PGD(objective="kl")(model, x, generator=torch.Generator().manual_seed(1)),
            PGD(objective="kl", optimize=False)(
                model, x, generator=torch.Generator().manual_seed(1)
            ),
        )
        scores = inconsistency_scores(model, pool, model_s, generator=torch.Generator())
        plain_scores = inconsistency_scores(
            model, pool, model_s, generator=torch.Generator(), optimize=False
        )
        for key in scores:
            torch.testing.assert_close(scores[key], plain_scores[key], rtol=1e-6, atol=1e-9)
        picks = JIN(3, random_state=0).select(model, model_s, pool, validation=labelled)
        plain_picks = JIN(3, random_state=0, optimize=False).select(
            model, model_s, pool, validation=labelled
        )
        assert picks.tolist() == plain_picks.tolist()
        ent = ENT(3).select(model, pool=pool)
        expected = torch.sort(entropy(eval_logits(model, x)), descending=True, stable=True)
        assert ent.tolist() == expected.indices[:3].tolist()
        badge = BADGE(3, random_state=0).select(model, pool=pool)
        assert badge.numel() == 3 and badge.unique().numel() == 3
        result = evaluate(model, labelled, attack=PGD(), random_state=0)
        plain_result = evaluate(model, labelled, attack=PGD(optimize=False), random_state=0)
        assert result.to_dict() == plain_result.to_dict()
        correct = (eval_logits(model, x).argmax(1) == labelled.labels).double()
        per_group = [float(correct[labelled.groups == g].mean()) for g in (0, 1)]
        assert result.clean["accuracy"].per_group.tolist() == pytest.approx(per_group)
        group_ranking(model, labelled, random_state=0)
    assert_unchanged(model, before)
    assert_unchanged(model_s, before_s)


def test_a_mutable_attribute_read_in_forward_is_followed() -> None:
    model, x = build("mutable_attributes", train=False)
    logits(model, x)
    model.temperature = 2.0  # a plain attribute: the copy is rebuilt
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)
    model.options["shift"] = 0.7  # mutated in place: only the output check can see it
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)
    model.mean_shift = torch.zeros(1)
    model.options["shift"] = -0.3
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)


def test_tensor_constants_changed_in_place_are_followed() -> None:
    model, x = build("tensor_constants", train=False)
    logits(model, x)
    model.mean.fill_(0.1)
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)


def test_a_hook_added_or_removed_later_is_followed() -> None:
    model, x = build("batchnorm_dropout", train=False)
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)
    handle = model.register_forward_hook(lambda _m, _i, output: output - 3.0)
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)
    handle.remove()
    torch.testing.assert_close(logits(model, x), eval_logits(model, x), **TOLERANCE)


def test_a_first_call_inside_inference_mode_does_not_poison_later_calls() -> None:
    model, x = build("batchnorm_dropout", train=True)
    with torch.inference_mode():
        first = logits(model, x)
    torch.testing.assert_close(first, eval_logits(model, x), **TOLERANCE)
    x_adv = pgd(model, x, generator=torch.Generator().manual_seed(0))  # needs gradients
    assert not torch.equal(x_adv, x)
    with torch.inference_mode():
        torch.testing.assert_close(logits(model, x), first)


@pytest.mark.parametrize(
    ("name", "level"),
    [("batchnorm_dropout", "folded+channels_last"), ("view_flatten", "folded")],
)
def test_common_models_keep_their_speed_silently(name: str, level: str) -> None:
    """A plain conv-BN net is folded and channels_last; one that flattens with ``.view`` keeps
    the folding without channels_last. No warning either way."""
    model, x = build(name, train=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizationWarning)
        with evaluation_view(model) as view, torch.no_grad():
            view(x)
            assert view.level == level


def test_falling_back_to_the_model_warns_once_naming_why() -> None:
    model, x = build("root_forward_hook", train=False)

    class Opaque(torch.nn.Module):  # cannot be copied, and wraps a hooked model
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def __deepcopy__(self, memo):
            raise TypeError("holds a handle that cannot be copied")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    wrapped = Opaque(model)
    with pytest.warns(OptimizationWarning, match="cannot be copied"):
        logits(wrapped, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizationWarning)
        torch.testing.assert_close(logits(wrapped, x), eval_logits(model, x), **TOLERANCE)


STRATEGY_MODELS = [
    "view_flatten",
    "root_forward_hook",
    "pruned",
    "old_weight_norm",
    "tabular_batchnorm1d",
]


@pytest.mark.parametrize("name", STRATEGY_MODELS)
def test_every_strategy_selects_on_user_models_and_leaves_them_unchanged(name: str) -> None:
    model, x = build(name, train=True)
    model_s, _ = build(name, train=False)
    before, before_s = snapshot(model), snapshot(model_s)
    pool, labelled = pools(x)
    options = {"labeled": labelled, "validation": labelled}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in STRATEGIES:
            picks = build_strategy(strategy, 3, random_state=0).select(
                model, model_s, pool, **options
            )
            assert picks.dtype == torch.int64 and 0 < picks.numel() <= 3, strategy
            assert picks.unique().numel() == picks.numel(), strategy
            assert int(picks.min()) >= 0 and int(picks.max()) < len(pool), strategy
    assert_unchanged(model, before)
    assert_unchanged(model_s, before_s)
