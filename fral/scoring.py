"""Model-level scores over a Pool or a tensor, batched, on the model's device.

These run the models and feed :mod:`fral.scores`. :func:`inconsistency_scores` computes both
of JIN's inconsistencies in one pass: per batch, one clean forward of ``M_R`` (shared by both
scores and by the attack), one forward of ``M_S``, the attack's steps and one forward on the
adversarial inputs; nothing else.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from fral._modules import autocast, check_module, evaluation_view, model_device
from fral.attacks import as_attack, run_attack
from fral.distributed import advance_attack_stream, map_batches
from fral.predict import Data, RowWriter, iter_inputs, logits, row_count
from fral.scores import entropy, kl_from_logits

__all__ = [
    "COMPONENTS",
    "entropy_scores",
    "inconsistency_scores",
    "robust_inconsistency_scores",
    "standard_inconsistency_scores",
]

COMPONENTS = ("standard", "robust")
"""The two inconsistencies JIN fuses: Eq. 2 (``standard``) and Eq. 3 (``robust``)."""


def check_components(components: Any) -> tuple[str, ...]:
    """Validate JIN's components: a non-empty subset of ``("standard", "robust")``."""
    if isinstance(components, str):
        components = (components,)
    components = tuple(components)
    repeated = len(set(components)) != len(components)
    if not components or set(components) - set(COMPONENTS) or repeated:
        raise ValueError(
            f"components must be a non-empty selection of {COMPONENTS} without repeats, "
            f"got {components!r}"
        )
    return components


def inconsistency_scores(
    model_r: nn.Module,
    data: Data,
    model_s: nn.Module | None = None,
    *,
    components: tuple[str, ...] = COMPONENTS,
    attack: Any = None,
    indices: torch.Tensor | None = None,
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
    generator: torch.Generator | None = None,
    optimize: bool = True,
    skipped_batches: int = 0,
) -> dict[str, torch.Tensor]:
    """JIN's raw inconsistency scores, Eq. 2 and 3, in one batched pass.

    Parameters
    ----------
    model_r : nn.Module
        Robust model ``M_R``. Not modified.
    data : Pool or torch.Tensor
        Candidates ``(N, ...)``.
    model_s : nn.Module, optional
        Standard model ``M_S``; required for the ``"standard"`` component.
    components : tuple of {"standard", "robust"}
        Which scores to compute.
    attack : optional
        The attack ``A`` of Eq. 3 (default: PGD-5 at 4/255, CE against ``M_R``'s own clean
        prediction, since candidates are unlabelled). A torchattacks object bound to
        ``model_r`` or a callable also works.
    indices : torch.Tensor, optional
        Score only these samples of ``data``, in this order.
    batch_size : int, default 256
    amp : bool or torch.dtype, default False
        Autocast for the forward passes (bfloat16 with ``True``).
    generator : torch.Generator, optional
        Source of the attack's random start.
    optimize : bool, default True
        Run optimised eval copies of the models.
    skipped_batches : int, default 0
        Advance ``generator`` first over the attack's draws on this many full batches of
        ``batch_size`` (see :func:`fral.distributed.advance_attack_stream`): a rank scoring
        the shard that starts there then draws the random starts one process draws.

    Returns
    -------
    dict[str, torch.Tensor]
        ``{"standard": (K,), "robust": (K,)}`` (the requested ones), on ``model_r``'s device.
    """
    components = check_components(components)
    check_module(model_r, "model_r")
    if "standard" in components:
        if model_s is None:
            raise ValueError("the standard inconsistency needs model_s")
        check_module(model_s, "model_s")
        if model_device(model_s) != model_device(model_r):
            raise ValueError(
                f"model_r is on {model_device(model_r)} but model_s is on {model_device(model_s)}"
            )
    attack = as_attack(attack) if "robust" in components else None
    out = {name: RowWriter(row_count(data, indices)) for name in components}
    with contextlib.ExitStack() as stack:
        view_r = stack.enter_context(evaluation_view(model_r, optimize=optimize))
        view_s = None
        if "standard" in components:
            view_s = stack.enter_context(evaluation_view(model_s, optimize=optimize))
        device = view_r.device
        for batch, x in enumerate(iter_inputs(data, batch_size, device, indices)):
            if batch == 0 and attack is not None:
                advance_attack_stream(attack, generator, skipped_batches, batch_size, x)
            with torch.no_grad(), autocast(device, amp):
                clean_r = view_r(x)
                clean_s = view_s(x) if view_s is not None else None
            if clean_s is not None:
                out["standard"].add(kl_from_logits(clean_s.float(), clean_r.float()))
            if attack is not None:
                x_adv = run_attack(
                    attack, model_r, view_r, x, clean_logits=clean_r, generator=generator
                )
                with torch.no_grad(), autocast(device, amp):
                    adv_r = view_r(x_adv)
                out["robust"].add(kl_from_logits(clean_r.float(), adv_r.float()))
    return {name: rows.result() for name, rows in out.items()}


def standard_inconsistency_scores(
    model_s: nn.Module, model_r: nn.Module, data: Data, **options: Any
) -> torch.Tensor:
    """Eq. 2 for every sample of ``data``: ``KL(p(x; M_S) || p(x; M_R))``, shape ``(N,)``.

    Takes the keyword options of :func:`inconsistency_scores`.
    """
    return inconsistency_scores(model_r, data, model_s, components=("standard",), **options)[
        "standard"
    ]


def robust_inconsistency_scores(model_r: nn.Module, data: Data, **options: Any) -> torch.Tensor:
    """Eq. 3 for every sample of ``data``: ``KL(p(x; M_R) || p(A(x); M_R))``, shape ``(N,)``.

    Takes the keyword options of :func:`inconsistency_scores` (``attack``, ``generator``...).
    """
    return inconsistency_scores(model_r, data, components=("robust",), **options)["robust"]


def entropy_scores(
    model: nn.Module,
    data: Data,
    *,
    indices: torch.Tensor | None = None,
    batch_size: int = 256,
    amp: bool | torch.dtype = False,
) -> torch.Tensor:
    """Predictive entropy of ``model`` on clean inputs, shape ``(N,)`` (or ``(K,)`` for
    ``indices``), on the model's device.

    Under a process group the logits are computed shard by shard across the ranks and
    gathered (:func:`fral.distributed.map_batches`); every rank returns all entropies.
    """

    def shard_logits(rows: torch.Tensor | None, _skipped: int) -> torch.Tensor:
        return logits(model, data, indices=rows, batch_size=batch_size, amp=amp)

    total = len(data) if indices is None else len(indices)
    return entropy(map_batches(shard_logits, total, batch_size, indices))
