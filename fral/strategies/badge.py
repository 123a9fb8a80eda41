"""BADGE: batch active learning by diverse gradient embeddings (Ash et al. 2020)."""

from __future__ import annotations

import torch

from fral.protocol import Request, candidate_indices, check_budget, clip_budget
from fral.strategies.coreset import EmbeddingStrategy, check_embeddings, squared_norms

__all__ = ["BADGE", "badge_kmeanspp", "gradient_scale"]


def gradient_scale(logits: torch.Tensor) -> torch.Tensor:
    """``onehot(y_hat) - p``: the gradient of the cross-entropy at the predicted label.

    The gradient of ``CE(softmax(W h + b), y_hat)`` with respect to ``W`` is
    ``-(onehot(y_hat) - p) (outer) h``, so BADGE's gradient embedding is this vector times the
    embedding ``h`` (the sign does not change any distance).

    Parameters
    ----------
    logits : torch.Tensor, shape (N, C)

    Returns
    -------
    torch.Tensor, shape (N, C), in the logits' dtype (at least float32)
    """
    check_embeddings("logits", logits)
    with torch.inference_mode():
        probabilities = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(1)
        scale = -probabilities
        rows = torch.arange(logits.shape[0], device=logits.device)
        scale[rows, probabilities.argmax(1)] += 1
    return scale


def badge_kmeanspp(
    grad_scale: torch.Tensor,
    embeddings: torch.Tensor,
    budget: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """k-means++ seeding on gradient embeddings ``g_i = a_i (outer) h_i``, never built.

    Parameters
    ----------
    grad_scale : torch.Tensor, shape (N, C)
        ``a_i`` (see :func:`gradient_scale`).
    embeddings : torch.Tensor, shape (N, d)
        ``h_i``, on the same device.
    budget : int
        Picks to make; at most ``N`` are returned.
    generator : torch.Generator, optional
        CPU generator of the D^2 draws (default: torch's global RNG).

    Returns
    -------
    torch.Tensor, shape (min(budget, N),), int64, on the inputs' device
        Row indices in pick order.

    Notes
    -----
    The first centre is the largest ``||g_i||`` (ties: lower index). Every later one is drawn
    with probability proportional to ``D^2(i)``, the squared distance to the nearest centre
    so far: ``budget - 1`` float64 uniforms ``u`` are drawn at once from ``generator`` (on
    the CPU, so the picks do not depend on the device), and draw ``t`` picks the first ``i``
    whose cumulative ``D^2`` (float64) exceeds ``u_t`` times the total. Chosen points have
    ``D^2 = 0`` and are never drawn again; if every remaining point duplicates a centre
    (total 0), the lowest unchosen index is taken. Distances use the outer-product factorisation::

        ||a_i h_i^T - a_j h_j^T||^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i.a_j)(h_i.h_j)

    clamped at 0, so time is O(budget N (C + d)) and memory O(N) beyond the inputs: the
    ``N x (C d)`` gradient matrix and any ``N x N`` matrix are never formed. No host sync per
    step.
    """
    check_embeddings("grad_scale", grad_scale)
    check_embeddings("embeddings", embeddings)
    if grad_scale.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"grad_scale has {grad_scale.shape[0]} rows but embeddings {embeddings.shape[0]}"
        )
    if grad_scale.device != embeddings.device:
        raise ValueError("grad_scale and embeddings are on different devices")
    budget = check_budget(budget)
    size, device = embeddings.shape[0], embeddings.device
    count = min(budget, size)
    with torch.inference_mode():
        dtype = torch.promote_types(grad_scale.dtype, embeddings.dtype)
        scale, features = grad_scale.to(dtype), embeddings.to(dtype)
        scale_sq, features_sq = squared_norms(scale), squared_norms(features)
        norms_sq = scale_sq * features_sq
        min_distances = torch.full_like(norms_sq, float("inf"))
        unchosen = torch.ones(size, dtype=torch.uint8, device=device)
        uniforms = torch.rand(count - 1, generator=generator, dtype=torch.float64).to(device)
        picks = torch.empty(count, dtype=torch.int64, device=device)
        pick = torch.argmax(norms_sq).view(1)
        for step in range(count):
            if step:
                cumulative = torch.cumsum(min_distances, 0, dtype=torch.float64)
                total = cumulative[-1:]
                target = total * uniforms[step - 1 : step]
                drawn = torch.searchsorted(cumulative, target, right=True)
                pick = torch.where(total > 0, drawn, torch.argmax(unchosen).view(1))
            picks[step : step + 1] = pick
            unchosen.index_fill_(0, pick, 0)
            products = torch.mv(scale, scale.index_select(0, pick).view(-1))
            products.mul_(torch.mv(features, features.index_select(0, pick).view(-1)))
            distances = torch.add(norms_sq, products, alpha=-2)
            distances.add_(norms_sq.index_select(0, pick)).clamp_min_(0)
            torch.minimum(min_distances, distances, out=min_distances)
            min_distances.index_fill_(0, pick, 0.0)
    return picks


class BADGE(EmbeddingStrategy):
    """Label diverse candidates with large, uncertain gradients (BADGE, Ash et al. 2020).

    Each candidate gets the gradient embedding ``g(x) = (onehot(y_hat) - p) (outer) h(x)``,
    with ``p`` the softmax of ``model_r``'s logits, ``y_hat = argmax p`` and ``h`` the
    penultimate embedding (the input of the last ``nn.Linear``, whose weight gradient under
    the pseudo-label ``y_hat`` this is, up to sign); ``budget`` of them are chosen by
    k-means++ seeding (see :func:`badge_kmeanspp`).

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    layer : str or nn.Module, optional
        The layer whose (flattened) input is ``h``; default the last ``nn.Linear``.
    features : callable, optional
        ``features(model, x) -> (b, d)`` computing ``h``, for models without such a layer
        (the logits then come from a second forward pass).
    batch_size : int, default 256
        Samples per forward pass.
    amp : bool or torch.dtype, default False
        Autocast the forward passes (``True``: bfloat16).
    random_state : int, torch.Generator or None
        Seed of the D^2 draws.

    Notes
    -----
    The first centre is the candidate with the largest gradient norm, the others are drawn
    with probability proportional to their squared distance to the nearest centre (seeded,
    on the CPU). The bias gradient ``onehot(y_hat) - p`` is left out of ``g``, as in the
    reference implementation. With ``group=k`` only group ``k``'s candidates are scored.
    Cost: one forward pass per candidate, then O(B N (C + d)) time and O(N (C + d)) memory
    on ``model_r``'s device; the ``N x (C d)`` gradient matrix is never built.

    Examples
    --------
    >>> picks = BADGE(budget=100, random_state=0).select(model_r, pool=pool)  # doctest: +SKIP
    """

    def _select(self, request: Request) -> torch.Tensor:
        candidates = candidate_indices(request.pool, request.group)
        count = clip_budget(self.budget, candidates.numel())
        embedded, logits = self.embed(
            request.model_r, request.pool, indices=candidates, return_logits=True
        )
        picks = badge_kmeanspp(
            gradient_scale(logits), embedded, count, generator=request.generator("cpu")
        )
        return candidates[picks.cpu()]
