"""BADGE: batch active learning by diverse gradient embeddings (Ash et al. 2020)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fral._modules import model_device
from fral.distributed import Context, current, global_argmax
from fral.protocol import Request, candidate_indices, check_budget, clip_budget
from fral.strategies.coreset import (
    EmbeddingStrategy,
    check_embeddings,
    empty_if_none,
    squared_norms,
)

__all__ = ["BADGE", "badge_kmeanspp", "badge_kmeanspp_sharded", "gradient_scale"]


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


def badge_kmeanspp_sharded(
    context: Context,
    grad_scale: torch.Tensor,
    embeddings: torch.Tensor,
    offset: int,
    total: int,
    budget: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`badge_kmeanspp` with the candidates split across the ranks of ``context``.

    Parameters
    ----------
    context : fral.distributed.Context
    grad_scale : torch.Tensor, shape (k_r, C)
    embeddings : torch.Tensor, shape (k_r, d)
        This rank's candidates: rows ``offset .. offset + k_r`` of all ``total`` (ranks
        ascend in rows; ``k_r`` may be 0).
    offset, total, budget : int
    generator : torch.Generator, optional
        CPU generator of the D^2 draws, seeded alike on every rank.

    Returns
    -------
    torch.Tensor, shape (min(budget, total),), int64, on the CPU
        Rows of all candidates, in pick order; the same on every rank.

    Notes
    -----
    Each rank keeps the distances of its own rows: memory O(total / world size) per rank.
    The first centre is the global arg-max of ``||g_i||`` (lowest row among ties). For each
    later one every rank draws the same float64 uniform ``u`` (one seeded stream), the ranks'
    sums of ``D^2`` are all-gathered, and the rank whose range of the running total holds
    ``u`` times the total finds the row in its own cumulative sum; it broadcasts the chosen
    ``a_j``, ``h_j`` and ``|g_j|^2``. The cumulative sums are those of one process up to
    float64 rounding of the partial sums, so a draw can differ from one process only when
    ``u`` times the total falls within rounding of a boundary between two rows.
    """
    count = min(check_budget(budget), total)
    classes = grad_scale.shape[1]
    width = classes + embeddings.shape[1] + 1
    picks = []
    with torch.inference_mode():
        dtype = torch.promote_types(grad_scale.dtype, embeddings.dtype)
        scale, features = grad_scale.to(dtype), embeddings.to(dtype)
        norms_sq = squared_norms(scale) * squared_norms(features)
        min_distances = torch.full_like(norms_sq, float("inf"))
        unchosen = torch.ones(norms_sq.shape[0], dtype=torch.uint8, device=norms_sq.device)
        uniforms = torch.rand(count - 1, generator=generator, dtype=torch.float64)

        def row_of(local: int) -> torch.Tensor:  # a pick comes with its a_i, h_i, |g_i|^2
            return torch.cat([scale[local], features[local], norms_sq[local : local + 1]])

        pick, owner, chosen = global_argmax(context, norms_sq, offset, row_of, width)
        for step in range(count):
            if step:
                pick, owner, chosen = _draw(
                    context, min_distances, unchosen, offset, uniforms[step - 1], row_of, width
                )
            picks.append(pick)
            if owner == context.rank:
                unchosen[pick - offset] = 0
            chosen = chosen.to(dtype)
            products = torch.mv(scale, chosen[:classes])
            products.mul_(torch.mv(features, chosen[classes:-1]))
            distances = torch.add(norms_sq, products, alpha=-2)
            distances.add_(chosen[-1]).clamp_min_(0)
            torch.minimum(min_distances, distances, out=min_distances)
            if owner == context.rank:
                min_distances[pick - offset] = 0.0
    return torch.tensor(picks, dtype=torch.int64)


def _draw(
    context: Context,
    min_distances: torch.Tensor,
    unchosen: torch.Tensor,
    offset: int,
    uniform: torch.Tensor,
    row_of: Callable[[int], torch.Tensor],
    width: int,
) -> tuple[int, int, torch.Tensor]:
    """One global D^2 draw: ``(row, owner rank, its data row)``; the lowest unchosen row if
    every ``D^2`` is 0. An all-gather of one number per rank, then the owner's broadcast."""
    cumulative = torch.cumsum(min_distances, 0, dtype=torch.float64)
    local_total = cumulative[-1:] if cumulative.numel() else cumulative.new_zeros(1)
    totals = [float(t) for t in context.all_gather(local_total)]
    total = sum(totals)
    if total > 0:
        target = total * float(uniform)
        positive = [rank for rank, part in enumerate(totals) if part > 0]
        # The first rank whose running total passes the target (float rounding aside: then
        # the last rank with any mass).
        owner = next((rank for rank in positive if sum(totals[: rank + 1]) > target), positive[-1])
        message = cumulative.new_zeros(width + 1)
        if owner == context.rank:
            local = torch.searchsorted(
                cumulative, cumulative.new_tensor([target - sum(totals[:owner])]), right=True
            )
            local = min(int(local), cumulative.numel() - 1)
            message[0], message[1:] = float(local + offset), row_of(local).double()
        message = context.broadcast(message, owner)
        return int(message[0]), owner, message[1:]
    free = torch.nonzero(unchosen).flatten()
    first = cumulative.new_tensor([float(free[0]) + offset if free.numel() else math.inf])
    firsts = [float(f) for f in context.all_gather(first)]
    owner = min(range(len(firsts)), key=lambda rank: (firsts[rank], rank))
    message = cumulative.new_zeros(width)
    if owner == context.rank:
        message = row_of(int(firsts[owner]) - offset).double()
    return int(firsts[owner]), owner, context.broadcast(message, owner)


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
        context = current()
        if context is not None:
            total = candidates.numel()
            context.check_same((total, self.batch_size), "the candidates and the batch size")
            start, stop = context.shard(total, self.batch_size)
            local, logits, error = None, None, None
            try:
                if stop > start:
                    local, logits = self.embed_local(
                        request.model_r, request.pool, candidates[start:stop], return_logits=True
                    )
            except Exception as caught:  # raised on every rank by empty_if_none
                error = caught
            device = model_device(request.model_r)
            local = empty_if_none(context, local, device, error)
            logits = empty_if_none(context, logits, device)
            scale = gradient_scale(logits) if logits.shape[0] else logits.float()
            picks = badge_kmeanspp_sharded(
                context, scale, local, start, total, count, generator=request.generator("cpu")
            )
            return candidates[picks]
        embedded, logits = self.embed(
            request.model_r, request.pool, indices=candidates, return_logits=True
        )
        picks = badge_kmeanspp(
            gradient_scale(logits), embedded, count, generator=request.generator("cpu")
        )
        return candidates[picks.cpu()]
