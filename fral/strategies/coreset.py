"""CSET: the core-set approach (Sener & Savarese 2018), k-center greedy in bounded memory."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fral._random import RandomState
from fral.pool import Pool
from fral.predict import embeddings
from fral.protocol import (
    Request,
    Strategy,
    candidate_indices,
    check_amp,
    check_batch_size,
    check_budget,
    check_int,
    clip_budget,
)

__all__ = [
    "CSET",
    "DEFAULT_CHUNK_SIZE",
    "EmbeddingStrategy",
    "center_",
    "check_embeddings",
    "kcenter_greedy",
    "squared_norms",
]

DEFAULT_CHUNK_SIZE = 2**24
"""Most entries of one block of the distance computation (64 MiB in float32)."""

Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def check_embeddings(name: str, tensor: torch.Tensor, *, allow_empty: bool = False) -> None:
    """A clear error unless ``tensor`` is a 2-D floating-point matrix (rows may be 0 if allowed)."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name} must be a 2-D tensor (N, d), got {shape}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {tensor.dtype}")
    if tensor.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    rows = max(1, 2**20 // max(1, tensor.shape[1]))  # isfinite makes float temporaries
    if not all(bool(torch.isfinite(chunk).all()) for chunk in tensor.split(rows)):
        raise ValueError(f"{name} holds NaN or infinite values")


def _check_chunk_size(chunk_size: object) -> int:
    return check_int(chunk_size, "chunk_size")


def squared_norms(rows: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """``||rows_i||^2`` of an ``(N, d)`` matrix, shape ``(N,)``, in blocks of ``chunk_size``
    entries so that no ``(N, d)`` temporary is made."""
    block = max(1, chunk_size // max(1, rows.shape[1]))
    return torch.cat([chunk.square().sum(1) for chunk in rows.split(block)])


def center_(pool_embeddings: torch.Tensor, labeled_embeddings: torch.Tensor | None) -> None:
    """Subtract the pool's mean from both sets, in place (no copy).

    Distances do not change, but the float cancellation in ``||a||^2 + ||b||^2 - 2 a.b``
    shrinks, most for embeddings far from the origin (e.g. after a ReLU).
    """
    with torch.inference_mode():
        origin = pool_embeddings.mean(0)
        pool_embeddings.sub_(origin)
        if labeled_embeddings is not None:
            labeled_embeddings.sub_(origin.to(labeled_embeddings.dtype))


def _update_min_distances(
    min_distances: torch.Tensor,
    points: torch.Tensor,
    points_sq: torch.Tensor,
    centres: torch.Tensor,
    chunk_size: int,
) -> None:
    """``min_distances = min(min_distances, min_j ||points_i - centres_j||^2)``, in place.

    Blocks of at most ``chunk_size`` entries: ``||a||^2 + ||b||^2 - 2 a.b``, clamped at 0.
    """
    centres_sq = squared_norms(centres, chunk_size)
    cols = min(centres.shape[0], chunk_size)
    rows = max(1, chunk_size // cols)
    for c0 in range(0, centres.shape[0], cols):
        block_centres = centres[c0 : c0 + cols]
        block_centres_sq = centres_sq[c0 : c0 + cols].unsqueeze(0)
        for r0 in range(0, points.shape[0], rows):
            block = torch.addmm(block_centres_sq, points[r0 : r0 + rows], block_centres.T, alpha=-2)
            block.add_(points_sq[r0 : r0 + rows].unsqueeze(1))
            nearest = block.amin(1).clamp_min_(0)
            current = min_distances[r0 : r0 + rows]
            torch.minimum(current, nearest, out=current)


def kcenter_greedy(
    pool_embeddings: torch.Tensor,
    labeled_embeddings: torch.Tensor | None,
    budget: int,
    *,
    generator: torch.Generator | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """k-center greedy: repeatedly take the point farthest from every centre so far.

    Parameters
    ----------
    pool_embeddings : torch.Tensor, shape (N, d)
        Candidates ``U``.
    labeled_embeddings : torch.Tensor, shape (M, d), or None
        The labelled set ``L`` (the initial centres); ``None`` or ``M = 0`` for none, in which
        case the first pick is a uniformly random candidate drawn with ``generator``.
    budget : int
        Picks to make; at most ``N`` are returned.
    generator : torch.Generator, optional
        CPU generator for the first pick when ``L`` is empty (default: torch's global RNG).
    chunk_size : int, default 2**24
        Most entries of one distance block.

    Returns
    -------
    torch.Tensor, shape (min(budget, N),), int64, on the embeddings' device
        Row indices of ``pool_embeddings`` in pick order.

    Notes
    -----
    Squared Euclidean distances ``||a||^2 + ||b||^2 - 2 a.b`` clamped at 0; centring both
    sets first (:func:`center_`, as :class:`CSET` does) changes no distance but reduces
    float cancellation. Ties go to the lower index; picked points are never picked again,
    even among duplicates. Time O((M + budget) N d); memory O(N + chunk_size) beyond the
    inputs: the distance to ``L`` is reduced block by block, never held as an ``N x M`` or
    ``N x N`` matrix. No host sync per step, so it runs at device speed.
    """
    check_embeddings("pool_embeddings", pool_embeddings)
    budget = check_budget(budget)
    chunk_size = _check_chunk_size(chunk_size)
    if labeled_embeddings is not None:
        check_embeddings("labeled_embeddings", labeled_embeddings, allow_empty=True)
        if labeled_embeddings.shape[1] != pool_embeddings.shape[1]:
            raise ValueError(
                f"labelled embeddings have {labeled_embeddings.shape[1]} dimensions, the pool's "
                f"{pool_embeddings.shape[1]}"
            )
        if labeled_embeddings.device != pool_embeddings.device:
            raise ValueError("pool and labelled embeddings are on different devices")
    size, device = pool_embeddings.shape[0], pool_embeddings.device
    count = min(budget, size)
    has_labels = labeled_embeddings is not None and labeled_embeddings.shape[0] > 0
    with torch.inference_mode():
        labeled = labeled_embeddings.to(pool_embeddings.dtype) if has_labels else None
        points_sq = squared_norms(pool_embeddings, chunk_size)
        min_distances = torch.full_like(points_sq, float("inf"))
        picks = torch.empty(count, dtype=torch.int64, device=device)
        if labeled is not None:
            _update_min_distances(min_distances, pool_embeddings, points_sq, labeled, chunk_size)
            pick = torch.argmax(min_distances).view(1)
        else:
            pick = torch.randint(size, (1,), generator=generator).to(device)
        for step in range(count):
            if step:
                pick = torch.argmax(min_distances).view(1)
            picks[step : step + 1] = pick
            centre = pool_embeddings.index_select(0, pick).view(-1)
            distances = torch.addmv(points_sq, pool_embeddings, centre, alpha=-2)
            distances.add_(points_sq.index_select(0, pick)).clamp_min_(0)
            torch.minimum(min_distances, distances, out=min_distances)
            min_distances.index_fill_(0, pick, -1.0)
    return picks


class EmbeddingStrategy(Strategy):
    """Base of strategies that work on penultimate embeddings of ``model_r`` (CSET, BADGE).

    Parameters
    ----------
    budget : int
    layer : str or nn.Module, optional
        The layer whose input is the embedding (default: the last ``nn.Linear``).
    features : callable, optional
        ``features(model, x) -> (b, d)``, for models without such a layer. Not with ``layer``.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
        Autocast the forward passes; embeddings are returned in float32.
    random_state : int, torch.Generator or None
    """

    def __init__(
        self,
        budget: int,
        *,
        layer: str | nn.Module | None = None,
        features: Features | None = None,
        batch_size: int = 256,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(budget, random_state=random_state)
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise TypeError(f"layer must be a module name, a module or None, got {layer!r}")
        if features is not None and not callable(features):
            raise TypeError("features must be callable as features(model, x) -> (b, d)")
        if layer is not None and features is not None:
            raise ValueError("give either layer or features, not both")
        self.layer = layer
        self.features = features
        self.batch_size = check_batch_size(batch_size)
        self.amp = check_amp(amp)

    def embed(
        self,
        model: nn.Module,
        data: Pool,
        *,
        indices: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(N, d)`` of ``data`` (and logits ``(N, C)``), on the model's device.

        With ``indices``, of those samples only, in that order: ``(K, d)`` (and ``(K, C)``).
        """
        return embeddings(
            model,
            data,
            indices=indices,
            layer=self.layer,
            features=self.features,
            batch_size=self.batch_size,
            amp=self.amp,
            return_logits=return_logits,
        )


class CSET(EmbeddingStrategy):
    """Core-set selection: cover the embedding space with the labelled set plus the picks.

    k-center greedy (Sener & Savarese 2018) on the penultimate embeddings of ``model_r``:
    each candidate's distance to its nearest labelled sample is computed, then ``budget``
    times the farthest candidate is picked and becomes a centre.

    Parameters
    ----------
    budget : int
        Samples to pick per call (``B``).
    layer : str or nn.Module, optional
        The layer whose (flattened) input is the embedding; default the last ``nn.Linear``.
    features : callable, optional
        ``features(model, x) -> (b, d)`` computing the embedding, for models without such a
        layer.
    batch_size : int, default 256
        Samples per forward pass.
    chunk_size : int, default 2**24
        Most entries of one block of distances (bounds the working memory).
    amp : bool or torch.dtype, default False
        Autocast the forward passes (``True``: bfloat16).
    random_state : int, torch.Generator or None
        Seed of the first pick when the labelled set is empty.

    Notes
    -----
    Requires ``labeled`` (the current labelled set, labels not needed); an empty one
    (``len(labeled) == 0``) makes the first pick a seeded uniformly random candidate. With
    ``group=k`` only group ``k``'s candidates are picked, at distances to the whole labelled
    set. Embeddings are centred on the candidates' mean before the greedy search (in place,
    on fral's own copy), which changes no distance but reduces float32 cancellation; squared
    distances are ``||a||^2 + ||b||^2 - 2 a.b`` clamped at 0, ties to the lower index (see
    :func:`kcenter_greedy`). Cost: one forward pass per candidate and labelled sample, then
    O((|L| + B) |U| d) time and O(|U| + chunk_size) memory beyond the embeddings, all on
    ``model_r``'s device.

    Examples
    --------
    >>> picks = CSET(budget=100).select(model_r, pool=pool, labeled=labeled)  # doctest: +SKIP
    """

    requires = frozenset({"labeled"})

    def __init__(
        self,
        budget: int,
        *,
        layer: str | nn.Module | None = None,
        features: Features | None = None,
        batch_size: int = 256,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        amp: bool | torch.dtype = False,
        random_state: RandomState = None,
    ) -> None:
        super().__init__(
            budget,
            layer=layer,
            features=features,
            batch_size=batch_size,
            amp=amp,
            random_state=random_state,
        )
        self.chunk_size = _check_chunk_size(chunk_size)

    def _select(self, request: Request) -> torch.Tensor:
        candidates = candidate_indices(request.pool, request.group)
        count = clip_budget(self.budget, candidates.numel())
        pool_embeddings = self.embed(request.model_r, request.pool, indices=candidates)
        labeled_embeddings = None
        if len(request.labeled) > 0:
            labeled_embeddings = self.embed(request.model_r, request.labeled)
        center_(pool_embeddings, labeled_embeddings)  # fral.predict made them: ours to change
        picks = kcenter_greedy(
            pool_embeddings,
            labeled_embeddings,
            count,
            generator=request.generator("cpu"),
            chunk_size=self.chunk_size,
        )
        return candidates[picks.cpu()]
