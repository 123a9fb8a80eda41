"""Scorers against values computed by hand on small fixed logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fral.scores import (
    entropy,
    fuse,
    kl_from_logits,
    robust_inconsistency,
    standard_inconsistency,
    zscore,
)
from fral.strategies.jin import JIN

P = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # (1/2, 1/2) and (3/4, 1/4)
Q = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # (3/4, 1/4) and (1/2, 1/2)


def test_kl_by_hand() -> None:
    expected = torch.tensor(
        [
            0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25),
            0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5),
        ]
    )
    assert torch.allclose(kl_from_logits(P, Q), expected, atol=1e-7)
    assert torch.allclose(kl_from_logits(P, P), torch.zeros(2), atol=1e-7)


def test_kl_is_shift_invariant_and_stable_for_huge_logits() -> None:
    # float32 keeps ~1e-5 of a logit near 100; the float64 path keeps the KL that exact.
    shifted = kl_from_logits(P + 100.0, Q - 100.0)
    assert torch.allclose(shifted, kl_from_logits(P, Q), atol=2e-5)
    exact = kl_from_logits(P.double() + 1000.0, Q.double() - 1000.0)
    assert torch.allclose(exact, kl_from_logits(P.double(), Q.double()), atol=1e-10)
    huge = torch.tensor([[1e4, -1e4, 0.0]])
    assert torch.isfinite(kl_from_logits(huge, huge.flip(1))).all()


def test_inconsistencies_are_the_kls_of_eq_2_and_3() -> None:
    assert torch.equal(standard_inconsistency(P, Q), kl_from_logits(P, Q))
    assert torch.equal(robust_inconsistency(Q, P), kl_from_logits(Q, P))


def test_entropy_by_hand() -> None:
    expected = torch.tensor([math.log(2.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    assert torch.allclose(entropy(P), expected, atol=1e-7)
    assert entropy(torch.tensor([[50.0, -50.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_zscore_by_hand() -> None:
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0])
    std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4)
    expected = (scores - 3.0) / std
    assert torch.allclose(zscore(scores), expected, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 1e-9, 0.1, 7.0, 1e6])
def test_zscore_of_a_constant_is_zero_not_nan(value: float) -> None:
    out = zscore(torch.full((5,), value))
    assert torch.equal(out, torch.zeros(5))
    assert torch.equal(zscore(torch.tensor([value])), torch.zeros(1))


def test_zscore_keeps_tiny_but_real_spread() -> None:
    scores = torch.tensor([1e-7, 2e-7, 3e-7])
    assert torch.allclose(zscore(scores), torch.tensor([-1.2247449, 0.0, 1.2247449]), atol=1e-4)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([1e300, 2e300, 3e300], torch.float64),
        ([-1.7e308, 0.0, 1.7e308], torch.float64),
        ([1e38, 2e38, 3e38], torch.float32),
        ([-3e38, 0.0, 3e38], torch.float32),
        ([6e4, 3e4, 0.0], torch.float16),
    ],
)
def test_zscore_is_stable_for_huge_values(values: list[float], dtype: torch.dtype) -> None:
    # Squaring such values overflowed the dtype: inf or NaN instead of the z-scores.
    scores = torch.tensor(values, dtype=dtype)
    scaled = torch.tensor(values, dtype=torch.float64) / max(abs(v) for v in values)
    out = zscore(scores)
    assert out.dtype == torch.promote_types(dtype, torch.float32)
    assert bool(torch.isfinite(out).all())
    expected = (scaled - scaled.mean()) / (scaled - scaled.mean()).square().mean().sqrt()
    assert torch.allclose(out.double(), expected, atol=1e-3)


def test_zscore_keeps_the_dtype_and_device() -> None:
    assert zscore(torch.tensor([1.0, 2.0], dtype=torch.float64)).dtype == torch.float64
    assert zscore(torch.tensor([1, 2, 4])).dtype == torch.float32
    with pytest.raises(TypeError, match="real numbers"):
        zscore(torch.tensor([True, False]))


def test_fuse_by_hand() -> None:
    a = torch.tensor([0.0, 1.0, 2.0])
    b = torch.tensor([10.0, 0.0, 20.0])
    za = torch.tensor([-1.0, 0.0, 1.0]) * math.sqrt(1.5)
    zb = (b - 10.0) / math.sqrt(200.0 / 3.0)
    assert torch.allclose(fuse(a, b), za + zb, atol=1e-6)
    assert torch.allclose(fuse(a, b, weights=[2.0, 0.5]), 2 * za + 0.5 * zb, atol=1e-6)
    assert torch.allclose(fuse(a), za, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: kl_from_logits(P, Q[:1]), ValueError),
        (lambda: kl_from_logits(P[0], Q[0]), ValueError),
        (lambda: kl_from_logits(torch.tensor([[float("nan"), 0.0]]), P[:1]), ValueError),
        (lambda: kl_from_logits(torch.tensor([[float("inf"), 0.0]]), P[:1]), ValueError),
        (lambda: kl_from_logits(P.long(), Q), TypeError),
        (lambda: entropy(torch.tensor([[0.0, float("nan")]])), ValueError),
        (lambda: zscore(torch.tensor([1.0, float("nan")])), ValueError),
        (lambda: zscore(torch.tensor([])), ValueError),
        (lambda: fuse(), ValueError),
        (lambda: fuse(torch.ones(3), torch.ones(4)), ValueError),
        (lambda: fuse(torch.ones(3), weights=[1.0, 2.0]), ValueError),
        (lambda: fuse(torch.ones(3), [1.0, 2.0, 3.0]), TypeError),
    ],
)
def test_bad_input_raises(call, error) -> None:
    with pytest.raises(error):
        call()


@pytest.mark.parametrize(
    ("weights", "error", "match"),
    [
        ((float("nan"), 1.0), ValueError, "finite"),
        ((1.0, float("inf")), ValueError, "finite"),
        ((1.0, -0.5), ValueError, "non-negative"),
        ((0.0, 0.0), ValueError, "positive sum"),
        ((1.0,), ValueError, "1 weights for 2 scores"),
        ((1.0, 2.0, 3.0), ValueError, "3 weights for 2 scores"),
        (("1", 1.0), TypeError, "real numbers"),
        ((True, 1.0), TypeError, "real numbers"),
        ((None, 1.0), TypeError, "real numbers"),
        ("ab", TypeError, "sequence of numbers"),
        (2.0, TypeError, "sequence of numbers"),
        (torch.ones(2, 1), ValueError, "1-D"),
    ],
)
def test_bad_weights_are_refused_by_fuse_and_jin(weights, error, match) -> None:
    a, b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 0.0, 5.0])
    with pytest.raises(error, match=match):
        fuse(a, b, weights=weights)
    with pytest.raises(error, match=match):
        JIN(2, weights=weights)


def test_weights_may_be_arrays_tensors_or_numpy_numbers() -> None:
    a, b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 0.0, 5.0])
    expected = fuse(a, b, weights=(2.0, 0.5))
    for weights in (np.array([2.0, 0.5]), torch.tensor([2.0, 0.5]), [np.float32(2), 0.5]):
        assert torch.allclose(fuse(a, b, weights=weights), expected)
    assert torch.allclose(fuse(a, b, weights=(0.0, 1.0)), zscore(b))


def test_mismatched_devices_raise_on_any_machine() -> None:
    # The "meta" device holds no values, so a second device exists on every machine.
    with pytest.raises(ValueError, match="q_logits is on meta"):
        kl_from_logits(P, Q.to("meta"))
    with pytest.raises(ValueError, match="logits_clean is on meta"):
        robust_inconsistency(P.to("meta"), Q)
    with pytest.raises(ValueError, match="different devices"):
        fuse(torch.ones(3), torch.ones(3, device="meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mismatched_devices_raise() -> None:
    with pytest.raises(ValueError, match="cuda"):
        kl_from_logits(P, Q.cuda())
