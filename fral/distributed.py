"""Scale-out on ``torch.distributed``: shard a pool's work across ranks, identical results.

When a default process group is initialised (``torchrun``, or
``torch.distributed.init_process_group``) with more than one rank, fral's scoring strategies
and :func:`fral.metrics.evaluate` split their candidates into contiguous, unpadded shards,
score their own shard on their own device and gather the results in pool order. Fusion,
z-scores, top-B and tie-breaks then run over the whole pool on every rank, so every rank
returns the same picks, identical to one process with the same seed.

Every rank must make the same calls with the same pool (each holds the whole :class:`Pool`
object, which for a Dataset-backed pool is only a view: each rank reads only its shard's rows).
Strategies that only draw at random run unchanged: their seeded generators give every rank
the same draws without communication.

How the shards are cut
----------------------
Rank ``r`` of ``W`` scores whole batches ``[r * n_b // W, (r + 1) * n_b // W)`` of the
``n_b = ceil(K / batch_size)`` batches one process would run over the ``K`` candidates
(rows ``[start, stop)`` of the candidates, contiguous; the last rank holds the short last
batch; no sample is repeated or dropped, unlike ``DistributedSampler``). Cutting at the
batch boundaries of one process (not at ``r * K // W``) makes every forward pass see the very
batch it sees in one process, so the scores are bit-for-bit those of one process, and the
attack's random start of each batch is the one process's draw: a rank first advances the
seeded generator over the draws of the batches before its shard (cheap: random numbers, no
forward pass). Ranks differ by at most one batch of work.

Disabling: inside ``with fral.distributed.sharding(enabled=False):`` every rank computes
everything itself (the one-process path), e.g. when ranks hold different pools.

One rank's work, every rank's outcome
-------------------------------------
:func:`on_rank` runs a step on one rank only (rank 0 writing a run folder, asking the oracle)
and tells every rank how it went; :func:`all_or_none` runs a step on every rank and raises on
every rank when it failed on any. Either way a failure on one rank is an error on all of them,
never a rank left waiting forever in the next collective: the ranks that did not fail raise a
:class:`RankFailedError` naming the rank that did and its error.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "Context",
    "RankFailedError",
    "advance_attack_stream",
    "all_or_none",
    "batch_shard",
    "broadcast_object",
    "communication_seconds",
    "current",
    "global_argmax",
    "map_batches",
    "on_rank",
    "sharding",
    "split_waiting",
]

_SETTING: contextvars.ContextVar[tuple[bool, Any]] = contextvars.ContextVar(
    "fral_distributed", default=(True, None)
)
#: Seconds in fral's collectives: [transfer, waiting for the other ranks]; whether to tell
#: them apart (a barrier before each collective, for benchmarks).
_COMM_SECONDS = [0.0, 0.0]
_SPLIT_WAITING = [False]


def communication_seconds(waiting: bool = False) -> float:
    """Seconds this process has spent in fral's collectives so far (for benchmarks).

    With :func:`split_waiting` on, the time of the collectives themselves; ``waiting=True``
    gives the time spent at the barrier before each, waiting for the slowest rank. Without
    it, the collectives' whole time (waiting included) and 0.
    """
    return _COMM_SECONDS[1 if waiting else 0]


def split_waiting(enabled: bool) -> None:
    """Put a barrier before each of fral's collectives, to time waiting and transfer apart.

    For benchmarks: the barrier costs one more round trip per collective.
    """
    _SPLIT_WAITING[0] = bool(enabled)


@contextlib.contextmanager
def _timed(group: Any) -> Iterator[None]:
    start = time.perf_counter()
    if _SPLIT_WAITING[0]:
        dist.barrier(group=group)
        arrived = time.perf_counter()
        _COMM_SECONDS[1] += arrived - start
        start = arrived
    try:
        yield
    finally:
        _COMM_SECONDS[0] += time.perf_counter() - start


@contextlib.contextmanager
def sharding(process_group: Any = None, *, enabled: bool = True) -> Iterator[None]:
    """Choose the process group fral shards over inside the block.

    Parameters
    ----------
    process_group : torch.distributed.ProcessGroup, optional
        The group (default: the default group, when one is initialised).
    enabled : bool, default True
        ``False``: no sharding in the block; every rank computes everything itself.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    token = _SETTING.set((enabled, process_group))
    try:
        yield
    finally:
        _SETTING.reset(token)


def batch_shard(total: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``total`` that rank ``rank`` of ``world_size`` works on.

    Whole batches of ``batch_size`` as one process would cut them: rank ``r`` takes batches
    ``[r * n_b // W, (r + 1) * n_b // W)`` of ``n_b = ceil(total / batch_size)``. The ranges
    of all ranks are contiguous, disjoint and cover ``0 .. total`` (some are empty when
    ``n_b < W``).
    """
    if total < 0 or batch_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need total >= 0, batch_size >= 1 and 0 <= rank < world_size; got total={total}, "
            f"batch_size={batch_size}, rank={rank}, world_size={world_size}"
        )
    batches = -(-total // batch_size)
    first = rank * batches // world_size
    last = (rank + 1) * batches // world_size
    return min(first * batch_size, total), min(last * batch_size, total)


@dataclass(frozen=True)
class Context:
    """One rank's view of the process group fral shards over.

    Attributes
    ----------
    group : ProcessGroup or None
        ``None`` is the default group.
    rank, world_size : int
        This process's rank in ``group`` and the group's size (> 1).
    device : torch.device
        Where collectives run: the current CUDA device with NCCL, else the CPU.
    """

    group: Any
    rank: int
    world_size: int
    device: torch.device

    def shard(self, total: int, batch_size: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of ``total``; see :func:`batch_shard`."""
        return batch_shard(total, batch_size, self.rank, self.world_size)

    def all_gather_object(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order."""
        out: list[Any] = [None] * self.world_size
        with _timed(self.group):
            dist.all_gather_object(out, value, group=self.group)
        return out

    def check_same(self, value: Any, what: str) -> None:
        """A ``ValueError`` on every rank unless every rank passed the same ``value``."""
        values = self.all_gather_object(value)
        if any(other != values[0] for other in values):
            raise ValueError(
                f"the ranks disagree on {what} ({values}): every rank must make the same call "
                "with the same pool; use fral.distributed.sharding(enabled=False) to opt out"
            )

    def all_reduce(self, tensor: torch.Tensor, op: Any = None) -> torch.Tensor:
        """A reduced copy of ``tensor`` (sum by default), on ``tensor``'s device."""
        work = tensor.detach().to(self.device, copy=True)
        with _timed(self.group):
            dist.all_reduce(work, op=dist.ReduceOp.SUM if op is None else op, group=self.group)
        return work.to(tensor.device)

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """``tensor`` (same shape and dtype on every rank) of every rank, in rank order."""
        work = tensor.detach().to(self.device).contiguous()
        out = [torch.empty_like(work) for _ in range(self.world_size)]
        with _timed(self.group):
            dist.all_gather(out, work, group=self.group)
        return [part.to(tensor.device) for part in out]

    def broadcast(self, tensor: torch.Tensor, source: int) -> torch.Tensor:
        """Rank ``source``'s ``tensor`` (same shape and dtype on every rank) on every rank."""
        work = tensor.detach().to(self.device, copy=True).contiguous()
        with _timed(self.group):
            dist.broadcast(work, self._global_rank(source), group=self.group)
        return work.to(tensor.device)

    def _global_rank(self, rank: int) -> int:
        if self.group is None:
            return rank
        return dist.get_global_rank(self.group, rank)

    def gather_rows(
        self, local: Sequence[torch.Tensor] | None, metas: list[Any] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Concatenate every rank's row blocks in rank order (= pool order for shards).

        Parameters
        ----------
        local : sequence of torch.Tensor, or None
            This rank's outputs, each ``(k_r, ...)`` with the same ``k_r`` rows; ``None`` for
            a rank with an empty shard. Ranks may hold different numbers of rows: blocks are
            padded to the longest for the collective, then cut.
        metas : list, optional
            Every rank's :func:`row_meta` of its ``local``, if already exchanged.

        Returns
        -------
        tuple of torch.Tensor
            One ``(sum_r k_r, ...)`` tensor per output, on the device of this rank's outputs
            (the first non-empty rank's device type where this rank has none).
        """
        if metas is None:
            metas = self.all_gather_object(row_meta(local))
        reference = next(m for m in metas if m is not None)
        rows = [0 if m is None else m[0][0] for m in metas]
        longest = max(rows)
        outputs = []
        for position, (_, trailing, dtype) in enumerate(reference):
            if local is None:
                device = self.device
                block = torch.zeros((longest, *trailing), dtype=dtype, device=device)
            else:
                device = local[position].device
                block = local[position]
                if block.shape[0] < longest:
                    pad = block.new_zeros((longest - block.shape[0], *trailing))
                    block = torch.cat([block, pad])
            parts = self.all_gather(block)
            kept = [part[:count] for part, count in zip(parts, rows, strict=True)]
            outputs.append(torch.cat(kept).to(device))
        return tuple(outputs)


def current(process_group: Any = None) -> Context | None:
    """The :class:`Context` fral shards over now, or ``None`` for the one-process path.

    ``None`` when ``torch.distributed`` is unavailable or not initialised, when sharding is
    disabled (:func:`sharding`), or when the group has one rank.
    """
    enabled, chosen = _SETTING.get()
    if not enabled or not dist.is_available() or not dist.is_initialized():
        return None
    group = process_group if process_group is not None else chosen
    world_size = dist.get_world_size(group)
    if world_size < 2:
        return None
    backend = dist.get_backend(group)
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    return Context(group, dist.get_rank(group), world_size, device)


def map_batches(
    function: Callable[[torch.Tensor | None, int], Any],
    total: int,
    batch_size: int,
    indices: torch.Tensor | None = None,
) -> Any:
    """``function`` over ``total`` rows, sharded across ranks by whole batches, gathered.

    Parameters
    ----------
    function : callable
        ``function(indices, skipped_batches)``: the outputs for rows ``indices`` (a tensor, or
        ``None`` meaning all rows in the one-process path), where ``skipped_batches`` full
        batches of ``batch_size`` come before them in one process's order. Returns a tensor,
        a tuple of tensors or a dict of tensors, each ``(k, ...)``.
    total : int
        Rows in all.
    batch_size : int
        Rows per batch (the shards are cut at its multiples).
    indices : torch.Tensor, optional
        The ``total`` row ids (e.g. pool indices of candidates); default ``arange(total)``.

    Returns
    -------
    What ``function`` returns, for all ``total`` rows in order, on every rank. Without a
    process group this is ``function(indices, 0)`` itself.
    """
    context = current()
    if context is None or total == 0:  # nothing to share: each rank raises its own error
        return function(indices, 0)
    start, stop = context.shard(total, batch_size)
    rows = torch.arange(total) if indices is None else indices
    result, error = None, None
    try:
        result = function(rows[start:stop], start // batch_size) if stop > start else None
    except Exception as caught:  # raised on every rank below: no rank is left waiting
        error = caught
    if result is None:
        structure, tensors = None, None
    elif isinstance(result, torch.Tensor):
        structure, tensors = "tensor", [result]
    elif isinstance(result, dict):
        structure, tensors = tuple(result), list(result.values())
    else:
        structure, tensors = "tuple", list(result)
    # One exchange: the call each rank made, how its work went, and the shape of its output.
    told = context.all_gather_object(
        ((total, batch_size), None if error is None else repr(error), structure, row_meta(tensors))
    )
    calls = [call for call, *_ in told]
    if any(call != calls[0] for call in calls):
        raise ValueError(
            f"the ranks disagree on (rows, batch_size): {calls}; every rank must make the same "
            "call with the same pool; use fral.distributed.sharding(enabled=False) to opt out"
        )
    if error is not None:
        raise error
    failed = [(rank, message) for rank, (_, message, *_) in enumerate(told) if message]
    if failed:
        rank, message = failed[0]
        raise RuntimeError(f"rank {rank} of the process group failed: {message}")
    structure = next(told_structure for _, _, told_structure, _ in told if told_structure)
    gathered = context.gather_rows(tensors, [meta for *_, meta in told])
    if structure == "tensor":
        return gathered[0]
    if structure == "tuple":
        return gathered
    return dict(zip(structure, gathered, strict=True))


def row_meta(local: Sequence[torch.Tensor] | None) -> list[tuple[int, tuple, Any]] | None:
    """``(rows, trailing shape, dtype)`` of each of a rank's outputs (``None``: none)."""
    if local is None:
        return None
    return [(t.shape[0], tuple(t.shape[1:]), t.dtype) for t in local]


def advance_attack_stream(
    attack: Any,
    generator: torch.Generator | None,
    batches: int,
    batch_size: int,
    like: torch.Tensor,
) -> None:
    """Advance ``generator`` over the draws ``attack`` makes on ``batches`` full batches.

    A rank whose shard starts after ``batches`` batches calls this before attacking its
    first batch, so its random starts are those one process draws for the same samples.

    Parameters
    ----------
    attack : fral.PGD or fral.attacks.CallableAttack
        As returned by :func:`fral.attacks.as_attack`: a :class:`~fral.PGD` draws its random
        start (shaped like the batch), any other attack one seed per batch.
    generator : torch.Generator or None
        ``None``: nothing to advance (the attack draws from torch's global RNG).
    batches : int
        Full batches before this rank's shard.
    batch_size : int
    like : torch.Tensor, shape (b, ...)
        A batch of this rank's inputs (for the per-sample shape and dtype).
    """
    from fral.attacks import PGD, _random_like

    if generator is None or batches == 0:
        return
    if isinstance(attack, PGD):
        if not attack.random_start:
            return
        shape = (batch_size, *like.shape[1:])
        template = torch.empty(shape, dtype=like.dtype, device=like.device)
        for _ in range(batches):
            _random_like(template, generator, normal=attack.start_std is not None)
        return
    for _ in range(batches):  # fral.attacks._seeded draws one seed per attacked batch
        torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)


def global_argmax(
    context: Context,
    values: torch.Tensor,
    offset: int,
    row_of: Callable[[int], torch.Tensor] | None = None,
    width: int = 0,
) -> tuple[int, int, torch.Tensor | None]:
    """Row, owner rank and data row of the largest of all ranks' ``values``, first among ties.

    One all-gather of ``2 + p`` numbers per rank.

    Parameters
    ----------
    context : Context
    values : torch.Tensor, shape (k_r,)
        This rank's values (may be empty); rows ``offset .. offset + k_r`` of the whole.
    offset : int
        Row of the whole at which this rank's values start (ranks ascend in rows).
    row_of : callable, optional
        ``row_of(local_row) -> (p,)``: data of one of this rank's rows; the winner's comes
        back with it (in float64, exact for float32 data).
    width : int
        ``p``.

    Returns
    -------
    (int, int, torch.Tensor or None)
        The row of the whole, as ``torch.argmax`` over the concatenation would return it
        (lowest row among equal maxima), the rank holding it, and its data row ``(p,)``.
    """
    pair = torch.full((2 + width,), math.inf, dtype=torch.float64, device=values.device)
    pair[0] = -math.inf
    if values.numel():
        local = int(torch.argmax(values))
        pair[0], pair[1] = values[local].double(), float(local + offset)
        if row_of is not None:
            pair[2:] = row_of(local).double()
    pairs = context.all_gather(pair)
    best_rank = 0
    for rank, candidate in enumerate(pairs):  # strict > keeps the first (lowest-row) maximum
        if candidate[0] > pairs[best_rank][0]:
            best_rank = rank
    best = pairs[best_rank]
    return int(best[1]), best_rank, None if row_of is None else best[2:]


class RankFailedError(RuntimeError):
    """Raised on the ranks that did not fail when a step failed on another rank.

    The rank that failed raises its own error; the others raise this one, naming that rank
    and its error, so that every rank stops instead of waiting in the next collective.
    """


def _failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def broadcast_object(context: Context | None, value: Any, source: int = 0) -> Any:
    """Rank ``source``'s ``value`` (any picklable object) on every rank.

    Without a process group (``context`` is ``None``) this is ``value`` itself. The other
    ranks' ``value`` is ignored (pass ``None``).
    """
    if context is None:
        return value
    box = [value if context.rank == source else None]
    with _timed(context.group):
        dist.broadcast_object_list(
            box, context._global_rank(source), group=context.group, device=context.device
        )
    return box[0]


def on_rank(
    context: Context | None,
    function: Callable[[], Any],
    source: int = 0,
    *,
    share: bool = False,
) -> Any:
    """``function()`` on rank ``source`` only, its failure an error on every rank.

    Parameters
    ----------
    context : Context or None
        ``None`` (no process group): ``function()`` is simply called.
    function : callable
        Called with no argument, on rank ``source`` only (e.g. writing a file it owns).
    source : int, default 0
    share : bool, default False
        Also send its (picklable) result to every rank.

    Returns
    -------
    The result on rank ``source``; with ``share``, on every rank; else ``None`` elsewhere.

    Raises
    ------
    Exception
        On rank ``source``, whatever ``function`` raised; on every other rank, a
        :class:`RankFailedError` naming it (one broadcast tells every rank).
    """
    if context is None:
        return function()
    result, error = None, None
    if context.rank == source:
        try:
            result = function()
        except Exception as caught:
            error = caught
    outcome = (None if error is None else _failure(error), result if share else None)
    failure, shared = broadcast_object(context, outcome, source)
    if error is not None:
        raise error
    if failure is not None:
        raise RankFailedError(f"rank {source} of the process group failed: {failure}")
    return result if context.rank == source else shared


@contextlib.contextmanager
def all_or_none(context: Context | None) -> Iterator[None]:
    """Run the block on every rank; if it raised on any rank, raise on every rank.

    One all-gather of each rank's outcome after the block. A rank whose block raised
    re-raises its own error; the others raise a :class:`RankFailedError` naming the first
    rank that failed. Without a process group (``None``) the block runs as it is.
    """
    if context is None:
        yield
        return
    error = None
    try:
        yield
    except Exception as caught:
        error = caught
    failures = context.all_gather_object(None if error is None else _failure(error))
    if error is not None:
        raise error
    failed = [(rank, failure) for rank, failure in enumerate(failures) if failure is not None]
    if failed:
        rank, failure = failed[0]
        raise RankFailedError(f"rank {rank} of the process group failed: {failure}")
