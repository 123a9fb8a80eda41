"""CSET and BADGE: exactly the brute-force picks, bounded-memory pieces, contract and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fral._random import make_generator
from fral.pool import Pool
from fral.predict import embeddings
from fral.strategies.badge import BADGE, badge_kmeanspp, gradient_scale
from fral.strategies.coreset import CSET, center_, kcenter_greedy
from tests.utils import assert_unchanged, make_net, snapshot

# ---------------------------------------------------------------- brute-force references


def brute_kcenter(pool: np.ndarray, labeled: np.ndarray, budget: int, first: int | None) -> list:
    """k-center greedy over the full distance matrix of the pool to pool + labelled set."""
    points = np.concatenate([labeled, pool])
    distances = ((pool[:, None, :] - points[None, :, :]) ** 2).sum(-1)  # (N, M + N)
    centres = list(range(len(labeled)))
    picks = []
    for _ in range(budget):
        if not centres:
            pick = first
        else:
            nearest = distances[:, centres].min(1)
            nearest[picks] = -1
            pick = int(np.argmax(nearest))
        picks.append(pick)
        centres.append(len(labeled) + pick)
    return picks


def brute_badge(scale: np.ndarray, features: np.ndarray, budget: int, seed: int) -> list:
    """k-means++ seeding over explicit gradient embeddings and their full distance matrix."""
    gradients = (scale[:, :, None] * features[:, None, :]).reshape(len(scale), -1)
    distances = ((gradients[:, None, :] - gradients[None, :, :]) ** 2).sum(-1)  # (N, N)
    uniforms = torch.rand(budget - 1, generator=make_generator(seed), dtype=torch.float64)
    picks = [int(np.argmax((gradients**2).sum(1)))]
    for uniform in uniforms.tolist():
        weights = distances[:, picks].min(1)
        weights[picks] = 0
        cumulative = np.cumsum(weights)
        picks.append(int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right")))
    return picks


def gaussian(rows: int, cols: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- core algorithms


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 2**24])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_matches_brute_force(chunk_size, seed):
    pool, labeled = gaussian(80, 5, seed), gaussian(9, 5, seed + 100) + 0.5
    picks = kcenter_greedy(pool, labeled, 20, chunk_size=chunk_size)
    assert picks.tolist() == brute_kcenter(pool.numpy(), labeled.numpy(), 20, None)


@pytest.mark.parametrize("seed", [0, 5])
def test_kcenter_without_labels_starts_from_a_seeded_random_point(seed):
    pool = gaussian(60, 4, seed)
    first = int(torch.randint(60, (1,), generator=make_generator(seed)))
    for labeled in (None, pool[:0]):
        picks = kcenter_greedy(pool, labeled, 12, generator=make_generator(seed), chunk_size=50)
        assert picks.tolist() == brute_kcenter(pool.numpy(), pool[:0].numpy(), 12, first)


def test_kcenter_in_float32_matches_float64_brute_force():
    pool, labeled = gaussian(200, 16, 3, torch.float32), gaussian(20, 16, 4, torch.float32)
    picks = kcenter_greedy(pool, labeled, 30, chunk_size=500)
    expected = brute_kcenter(pool.double().numpy(), labeled.double().numpy(), 30, None)
    assert picks.tolist() == expected


def test_centring_keeps_float32_exact_far_from_the_origin():
    pool = gaussian(200, 16, 3, torch.float32) + 300
    labeled = gaussian(20, 16, 4, torch.float32) + 300
    expected = brute_kcenter(pool.double().numpy(), labeled.double().numpy(), 30, None)
    before = torch.cdist(pool[:5].double(), labeled.double())
    center_(pool, labeled)
    torch.testing.assert_close(torch.cdist(pool[:5].double(), labeled.double()), before)
    assert abs(float(pool.mean())) < 1e-3
    assert kcenter_greedy(pool, labeled, 30).tolist() == expected


def test_kcenter_never_repeats_duplicates():
    base = gaussian(5, 3, 0)
    pool = torch.cat([base, base, base[:2]])  # 12 points, only 5 distinct
    picks = kcenter_greedy(pool, base[:1], 12)
    assert sorted(picks.tolist()) == list(range(12))
    assert set(picks[:4].tolist()) <= set(range(1, 5)), "the 4 uncovered points come first"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_matches_brute_force(seed):
    logits, features = gaussian(50, 4, seed) * 2, gaussian(50, 6, seed + 10).relu()
    scale = gradient_scale(logits)
    picks = badge_kmeanspp(scale, features, 15, generator=make_generator(seed + 20))
    assert picks.tolist() == brute_badge(scale.numpy(), features.numpy(), 15, seed + 20)


def test_badge_gradient_scale_is_the_cross_entropy_gradient():
    logits = gaussian(6, 3, 0).requires_grad_()
    predicted = logits.argmax(1)
    loss = nn.functional.cross_entropy(logits, predicted, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(gradient_scale(logits.detach()), -gradient)


def test_badge_never_repeats_and_covers_duplicates():
    logits, features = gaussian(4, 3, 1), gaussian(4, 5, 2)
    picks = badge_kmeanspp(
        torch.cat([gradient_scale(logits)] * 3),
        torch.cat([features] * 3),
        12,
        generator=make_generator(0),
    )
    assert sorted(picks.tolist()) == list(range(12))
    assert sorted((picks[:4] % 4).tolist()) == [0, 1, 2, 3], "distinct points come first"


def test_badge_is_seeded():
    scale, features = gradient_scale(gaussian(100, 5, 0)), gaussian(100, 8, 1)
    draw = lambda seed: badge_kmeanspp(scale, features, 10, generator=make_generator(seed))  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))
    assert draw(3)[0] == draw(4)[0], "the first centre is the largest gradient, not random"


def test_core_functions_reject_bad_embeddings():
    with pytest.raises(ValueError, match="dimensions"):
        kcenter_greedy(gaussian(5, 3, 0), gaussian(2, 4, 0), 2)
    with pytest.raises(ValueError, match="2-D"):
        kcenter_greedy(torch.zeros(5), None, 2)
    with pytest.raises(ValueError, match="NaN"):
        kcenter_greedy(torch.full((3, 2), float("nan")), None, 1)
    with pytest.raises(ValueError, match="chunk_size"):
        kcenter_greedy(gaussian(5, 3, 0), None, 2, chunk_size=0)
    with pytest.raises(ValueError, match="rows"):
        badge_kmeanspp(gaussian(5, 3, 0), gaussian(4, 3, 0), 2)
    with pytest.raises(ValueError, match="budget"):
        badge_kmeanspp(gaussian(5, 3, 0), gaussian(5, 3, 0), 0)


# ---------------------------------------------------------------- the strategies


class Recorder:
    """Mixin keeping the seed of the last request, to replay the strategy's draws."""

    def _select(self, request):
        self.seed = request.seed
        return super()._select(request)


class RecordingCSET(Recorder, CSET):
    pass


class RecordingBADGE(Recorder, BADGE):
    pass


def make_pool(size: int, seed: int) -> Pool:
    generator = torch.Generator().manual_seed(seed)
    return Pool(torch.rand(size, 1, 8, 8, generator=generator), torch.arange(size) % 3)


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_pool(90, 0)


@pytest.fixture(scope="module")
def labeled() -> Pool:
    return make_pool(12, 1)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return make_net(0)


def test_cset_picks_the_brute_force_core_set(pool, labeled, model):
    picks = CSET(15, random_state=0).select(model, pool=pool, labeled=labeled)
    pool_emb, labeled_emb = embeddings(model, pool), embeddings(model, labeled)
    expected = brute_kcenter(pool_emb.double().numpy(), labeled_emb.double().numpy(), 15, None)
    assert picks.tolist() == expected


def test_cset_with_an_empty_labelled_set_is_seeded(pool, model):
    empty = Pool(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    strategy = RecordingCSET(10, random_state=3)
    picks = strategy.select(model, pool=pool, labeled=empty)
    first = int(torch.randint(len(pool), (1,), generator=make_generator(strategy.seed)))
    pool_emb = embeddings(model, pool).double().numpy()
    assert picks.tolist() == brute_kcenter(pool_emb, pool_emb[:0], 10, first)
    again = CSET(10, random_state=3).select(model, pool=pool, labeled=empty)
    other = CSET(10, random_state=5).select(model, pool=pool, labeled=empty)
    assert torch.equal(picks, again) and not torch.equal(picks, other)


@pytest.mark.parametrize("random_state", [0, 1])
def test_badge_picks_the_brute_force_seeding(pool, model, random_state):
    strategy = RecordingBADGE(15, random_state=random_state)
    picks = strategy.select(model, pool=pool)
    features, logits = embeddings(model, pool, return_logits=True)
    scale = gradient_scale(logits.double())
    expected = brute_badge(scale.numpy(), features.double().numpy(), 15, strategy.seed)
    assert picks.tolist() == expected


def test_badge_is_seeded_end_to_end(pool, model):
    def picks(seed: int) -> torch.Tensor:
        return BADGE(12, random_state=seed).select(model, pool=pool)

    assert torch.equal(picks(0), picks(0))
    assert not torch.equal(picks(0), picks(1))


@pytest.mark.parametrize("strategy", [CSET(8, random_state=0), BADGE(8, random_state=0)])
@pytest.mark.parametrize("group", [0, 2])
def test_group_restriction(strategy, group, pool, labeled, model):
    picks = strategy.select(model, pool=pool, labeled=labeled, group=group)
    assert picks.dtype == torch.int64 and picks.numel() == 8
    assert picks.unique().numel() == 8
    assert bool((pool.groups[picks] == group).all())


def test_cset_group_restriction_matches_brute_force_on_the_group(pool, labeled, model):
    picks = CSET(6).select(model, pool=pool, labeled=labeled, group=1)
    members = pool.group_indices(1)
    pool_emb = embeddings(model, pool).double().numpy()[members.numpy()]
    labeled_emb = embeddings(model, labeled).double().numpy()
    assert picks.tolist() == members[brute_kcenter(pool_emb, labeled_emb, 6, None)].tolist()


@pytest.mark.parametrize("make", [CSET, BADGE])
def test_budget_above_the_pool_returns_everything_with_a_warning(make, model, labeled):
    small = make_pool(7, 2)
    with pytest.warns(UserWarning, match="budget 10 exceeds"):
        picks = make(10, random_state=0).select(model, pool=small, labeled=labeled)
    assert sorted(picks.tolist()) == list(range(7))


@pytest.mark.parametrize("make", [CSET, BADGE])
@pytest.mark.parametrize("train", [False, True])
def test_models_come_back_unchanged(make, train, pool, labeled):
    model = make_net(0, train=train)
    before = snapshot(model)
    make(9, random_state=0).select(model, pool=pool, labeled=labeled)
    assert_unchanged(model, before)


@pytest.mark.parametrize("make", [CSET, BADGE])
def test_layer_and_features_options(make, pool, labeled, model):
    default = make(9, random_state=0).select(model, pool=pool, labeled=labeled)
    by_name = make(9, layer="head", random_state=0).select(model, pool=pool, labeled=labeled)
    by_module = make(9, layer=model.head, random_state=0).select(model, pool=pool, labeled=labeled)
    by_call = make(9, features=lambda net, x: net.features(x), random_state=0).select(
        model, pool=pool, labeled=labeled
    )
    assert torch.equal(default, by_name) and torch.equal(default, by_module)
    assert torch.equal(default, by_call)
    other_layer = make(9, layer="features.6", random_state=0).select(
        model, pool=pool, labeled=labeled
    )
    assert not torch.equal(default, other_layer)


class NoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


@pytest.mark.parametrize("make", [CSET, BADGE])
def test_a_model_without_a_linear_layer_needs_features(make, pool, labeled):
    model = NoLinear()
    with pytest.raises(ValueError, match="features"):
        make(5).select(model, pool=pool, labeled=labeled)
    flat = make(5, features=lambda net, x: x.flatten(1)).select(model, pool=pool, labeled=labeled)
    assert flat.numel() == 5


def test_bad_inputs_raise_clear_errors(pool, model):
    with pytest.raises(ValueError, match="requires `labeled`"):
        CSET(5).select(model, pool=pool)
    assert CSET(5).requires == {"labeled"} and BADGE(5).requires == frozenset()
    with pytest.raises(ValueError, match="not both"):
        BADGE(5, layer="head", features=lambda net, x: x)
    with pytest.raises(TypeError, match="features must be callable"):
        CSET(5, features="penultimate")
    with pytest.raises(ValueError, match="no submodule"):
        BADGE(5, layer="classifier").select(model, pool=pool)
    with pytest.raises(ValueError, match="chunk_size"):
        CSET(5, chunk_size=0)
