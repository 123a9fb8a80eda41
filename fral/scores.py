"""Pure tensor functions behind JIN and the uncertainty baselines.

Every function takes logits (never probabilities), works row by row on a batch of any size, on
any device, and returns one value per row. Probabilities are formed with ``log_softmax``, so
large logits neither overflow nor produce ``0 * log 0`` NaNs. Nothing here runs a model; see
:mod:`fral.scoring` for the model-level versions over a :class:`~fral.pool.Pool`.

Equations refer to Wu, Chen & Hsu, *Fair Robust Active Learning by Joint Inconsistency*.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "check_weights",
    "entropy",
    "fuse",
    "kl_from_logits",
    "robust_inconsistency",
    "standard_inconsistency",
    "zscore",
]


def _check_form(logits: torch.Tensor, name: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape (N, C), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {logits.dtype}")


def _check_finite(logits: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(f"{name} holds NaN or infinite values")


def _check_logits(logits: torch.Tensor, name: str) -> None:
    _check_form(logits, name)
    _check_finite(logits, name)


def _check_pair(p_logits: torch.Tensor, q_logits: torch.Tensor, names: tuple[str, str]) -> None:
    _check_form(p_logits, names[0])
    _check_form(q_logits, names[1])
    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got "
            f"{tuple(p_logits.shape)} and {tuple(q_logits.shape)}"
        )
    if p_logits.device != q_logits.device:  # before any value is read on either device
        raise ValueError(
            f"{names[0]} is on {p_logits.device} but {names[1]} is on {q_logits.device}"
        )
    _check_finite(p_logits, names[0])
    _check_finite(q_logits, names[1])


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Row-wise KL divergence ``KL(p || q)`` between the softmax distributions of two logits.

    Parameters
    ----------
    p_logits, q_logits : torch.Tensor, shape (N, C)
        Logits of the reference distribution ``p`` and of ``q``.

    Returns
    -------
    torch.Tensor, shape (N,)
        ``sum_c p_c (log p_c - log q_c)``, non-negative, in the dtype of the logits (at least
        float32); computed in float64 where the device has it.
    """
    _check_pair(p_logits, q_logits, ("p_logits", "q_logits"))
    dtype = torch.promote_types(torch.promote_types(p_logits.dtype, q_logits.dtype), torch.float32)
    # Robust models give KLs near 1e-6, where float32 cancellation would blur the ranking.
    work = torch.float32 if p_logits.device.type == "mps" else torch.float64
    log_p = F.log_softmax(p_logits.to(work), dim=1)
    log_q = F.log_softmax(q_logits.to(work), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).clamp_min_(0.0).to(dtype)


def standard_inconsistency(logits_s: torch.Tensor, logits_r: torch.Tensor) -> torch.Tensor:
    """Standard inconsistency, Eq. 2: ``KL(p(x; M_S) || p(x; M_R))`` on clean inputs.

    Parameters
    ----------
    logits_s : torch.Tensor, shape (N, C)
        Logits of the standard-trained model ``M_S`` on clean inputs.
    logits_r : torch.Tensor, shape (N, C)
        Logits of the robust model ``M_R`` on the same clean inputs.

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    _check_pair(logits_s, logits_r, ("logits_s", "logits_r"))
    return kl_from_logits(logits_s, logits_r)


def robust_inconsistency(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """Robust inconsistency, Eq. 3: ``KL(p(x; M_R) || p(A(x); M_R))``.

    Parameters
    ----------
    logits_clean : torch.Tensor, shape (N, C)
        Logits of the robust model on clean inputs.
    logits_adv : torch.Tensor, shape (N, C)
        Logits of the same model on the adversarial inputs ``A(x)``.

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    _check_pair(logits_clean, logits_adv, ("logits_clean", "logits_adv"))
    return kl_from_logits(logits_clean, logits_adv)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Predictive entropy ``-sum_c p_c log p_c`` (nats) of the softmax of ``logits``.

    Parameters
    ----------
    logits : torch.Tensor, shape (N, C)

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    _check_logits(logits, "logits")
    log_p = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def zscore(scores: torch.Tensor) -> torch.Tensor:
    """Standardise to mean 0 and (population) standard deviation 1: ``N(.)`` of Eq. 4.

    A constant vector (or a single value) has no spread and maps to zeros, never to NaN.
    Computed in float64 (float32 on MPS, which has no float64) after dividing by the largest
    magnitude, which changes no z-score, so values up to the dtype's maximum (``3e38`` in
    float32, ``1e308`` in float64) neither overflow nor lose the spread.

    Parameters
    ----------
    scores : torch.Tensor, shape (N,)
        Finite floating-point (or integer) values.

    Returns
    -------
    torch.Tensor, shape (N,)
        In the input's dtype, at least float32, on the input's device.
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D, got shape {tuple(scores.shape)}")
    if scores.numel() == 0:
        raise ValueError("scores is empty")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"scores must be real numbers, got dtype {scores.dtype}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores hold NaN or infinite values")
    dtype = torch.promote_types(scores.dtype, torch.float32)
    work = torch.float32 if scores.device.type == "mps" else torch.float64
    values = scores.to(work)
    scale = values.abs().max()
    if not scale > 0:
        return torch.zeros_like(values, dtype=dtype)
    values = values / scale
    centred = values - values.mean()
    std = centred.square().mean().sqrt()
    # Spreads at the input's rounding level are no signal: treat them as constant rather than
    # amplify noise (after the scaling the largest magnitude is 1).
    if std <= torch.finfo(dtype).eps * 8:
        return torch.zeros_like(values, dtype=dtype)
    return (centred / std).to(dtype)


def check_weights(weights: Any, count: int) -> tuple[float, ...]:
    """``weights`` as ``count`` finite non-negative floats with a positive sum, or a clear error.

    Parameters
    ----------
    weights : sequence of real numbers
        A list, tuple, 1-D array or 1-D tensor.
    count : int
        How many are expected (one per score).

    Returns
    -------
    tuple of float
    """
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise TypeError(
            f"weights must be a sequence of numbers (e.g. (1.0, 1.0)), got {type(weights).__name__}"
        )
    if isinstance(weights, (torch.Tensor, np.ndarray)) and weights.ndim != 1:
        raise ValueError(f"weights must be 1-D, got shape {tuple(weights.shape)}")
    values = list(weights.tolist() if isinstance(weights, (torch.Tensor, np.ndarray)) else weights)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"weights must be real numbers, got {value!r} in {weights!r}")
    if len(values) != count:
        raise ValueError(f"got {len(values)} weights for {count} scores; give one per score")
    result = tuple(float(value) for value in values)
    if not all(math.isfinite(value) for value in result):
        raise ValueError(f"weights must be finite, got {result}")
    if any(value < 0 for value in result):
        raise ValueError(f"weights must be non-negative, got {result}")
    if not sum(result) > 0:
        raise ValueError(f"weights must have a positive sum (all zero ranks nothing), got {result}")
    return result


def fuse(
    *scores: torch.Tensor, weights: tuple[float, ...] | list[float] | None = None
) -> torch.Tensor:
    """Joint score, Eq. 4: ``sum_i w_i * zscore(s_i)`` (all ``w_i = 1`` by default).

    Parameters
    ----------
    *scores : torch.Tensor, each of shape (N,)
        Per-candidate scores on one set of candidates, e.g. standard and robust inconsistency.
    weights : sequence of float, optional
        One finite, non-negative weight per score, with a positive sum (see
        :func:`check_weights`).

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    if not scores:
        raise ValueError("fuse needs at least one score")
    weights = (1.0,) * len(scores) if weights is None else check_weights(weights, len(scores))
    for position, score in enumerate(scores):
        if not isinstance(score, torch.Tensor):
            raise TypeError(f"score {position} must be a torch.Tensor, got {type(score).__name__}")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"scores must share one shape, got {sorted(shapes)}")
    devices = {s.device for s in scores}
    if len(devices) != 1:
        raise ValueError(f"scores lie on different devices: {sorted(map(str, devices))}")
    total = weights[0] * zscore(scores[0])
    for weight, score in zip(weights[1:], scores[1:], strict=True):
        total = total + weight * zscore(score)
    return total
