"""TRADES adversarial training and standard training, with the paper's SGD schedule.

- :func:`trades_loss`: the loss of Zhang et al. 2019 as in their official code: an L-inf KL
  attack in eval mode from ``x + 0.001 * N(0, 1)``, then
  ``CE(f(x), y) + beta * KL(p(x) || p(x')) / batch`` in train mode.
- :class:`Trainer`: SGD with momentum and weight decay, linear warm-up then cosine annealing
  per :meth:`Trainer.fit` call (one active-learning round), optional random oversampling of
  minority classes. The optimiser (momentum buffers) persists across calls, so fine-tuning
  continues from the current weights and optimiser state, as in Algorithm 1's Adv-TRAIN.
- :func:`adversarial_train` and :func:`standard_train`: one-call wrappers.

Every random draw (shuffling, oversampling, the TRADES start, Dropout) comes from the
trainer's own generator: the same seed gives the same weights, and :meth:`Trainer.state_dict`
captures everything a resumed run needs.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fral._modules import autocast, check_module, evaluation_view, model_device, preserved_mode
from fral._random import RandomState, make_generator, resolve_seed
from fral.attacks import pgd_on_view
from fral.pool import Pool

__all__ = [
    "INHERIT",
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "adversarial_train",
    "standard_train",
    "trades_loss",
    "warmup_cosine",
]

Bounds = tuple[float, float] | None

#: Value of a :class:`TrainConfig` threat-model field (``eps``, ``alpha``, ``bounds``) that is
#: left to the data set (:meth:`TrainConfig.inherit`) or, standalone, to the paper's default.
INHERIT = "inherit"


def _unset(value: Any) -> bool:
    return isinstance(value, str) and value == INHERIT


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training call (an active-learning round's Adv-TRAIN).

    Attributes
    ----------
    epochs : int
        Epochs per :meth:`Trainer.fit` call (``E``).
    batch_size : int
        Mini-batch size (``B``).
    lr : float
        Peak learning rate (``gamma``), reached after the warm-up.
    momentum : float
        SGD momentum (``mu``).
    weight_decay : float
        L2 weight decay (``lambda``).
    warmup_epochs : float
        Linear warm-up length (``E_w``); then cosine annealing to 0 over the remaining epochs.
    beta : float
        TRADES trade-off (6.0 in the TRADES paper).
    eps, alpha : float or ``INHERIT``
        L-inf radius and step of the TRADES inner attack. Unset (:data:`INHERIT`) by default:
        :meth:`inherit` takes them from the data set (the loop does so), and a standalone
        :class:`Trainer` uses the paper's 4/255 and 2/255 (:meth:`resolved`). When only ``eps``
        is given, ``alpha`` is ``eps / 2`` (the paper's ratio).
    steps : int
        Inner attack steps (the paper: 5).
    bounds : (float, float), None or ``INHERIT``
        Valid input range, ``None`` for unbounded features. Unset by default, like ``eps``;
        standalone, ``(0, 1)``.
    oversample : bool
        Randomly oversample minority classes to the majority class count each epoch (the paper
        does so for imbalanced HAM-10000).
    adversarial : bool
        TRADES (``True``) or plain cross-entropy training.
    amp : bool
        bfloat16 autocast for the forward passes.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    warmup_epochs: float = 1.0
    beta: float = 6.0
    eps: float | str = INHERIT
    alpha: float | str = INHERIT
    steps: int = 5
    bounds: Bounds | str = INHERIT
    oversample: bool = False
    adversarial: bool = True
    amp: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError("lr must be > 0, momentum and weight_decay >= 0")
        if not 0 <= self.warmup_epochs <= max(self.epochs, 0) or self.beta < 0:
            raise ValueError("warmup_epochs must lie in [0, epochs] and beta be >= 0")
        if self.bounds is not None and not _unset(self.bounds):
            object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))

    @property
    def threat_model_set(self) -> bool:
        """Whether ``eps``, ``alpha`` and ``bounds`` all have values (none is ``INHERIT``)."""
        return not any(_unset(value) for value in (self.eps, self.alpha, self.bounds))

    def inherit(
        self, eps: float, alpha: float | None = None, bounds: Bounds = (0.0, 1.0)
    ) -> TrainConfig:
        """This config with its unset threat-model fields taken from a data set's.

        Fields the config sets are kept. ``alpha``: the config's; else, when the config sets
        ``eps``, ``eps / 2``; else the data set's ``alpha`` (``eps / 2`` if it has none).

        Parameters
        ----------
        eps : float
            The data set's L-inf radius.
        alpha : float, optional
            The data set's step (default ``eps / 2``).
        bounds : (float, float) or None
            The data set's valid input range.

        Returns
        -------
        TrainConfig
            A config whose ``threat_model_set`` is true.
        """
        own_eps = not _unset(self.eps)
        new_eps = self.eps if own_eps else eps
        if not _unset(self.alpha):
            new_alpha = self.alpha
        elif own_eps or alpha is None:
            new_alpha = new_eps / 2
        else:
            new_alpha = alpha
        new_bounds = bounds if _unset(self.bounds) else self.bounds
        return replace(self, eps=new_eps, alpha=new_alpha, bounds=new_bounds)

    def resolved(self) -> TrainConfig:
        """Unset threat-model fields filled with the paper's: eps 4/255, alpha eps/2, (0, 1)."""
        return self.inherit(4 / 255, 2 / 255, (0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options (an unset field is the string ``"inherit"``)."""
        out = asdict(self)
        if self.bounds is not None and not _unset(self.bounds):
            out["bounds"] = list(self.bounds)
        return out

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`."""
        bounds = options.get("bounds", INHERIT)
        if bounds is not None and not _unset(bounds):
            bounds = tuple(bounds)
        return cls(**{**options, "bounds": bounds})


#: The supplementary's per-data-set settings (SGD, cosine with warm-up, TRADES at 4/255).
_PAPER_THREAT = {"eps": 4 / 255, "alpha": 2 / 255, "bounds": (0.0, 1.0)}
PRESETS: dict[str, TrainConfig] = {
    "utkface": TrainConfig(epochs=70, batch_size=32, lr=0.1, warmup_epochs=10, **_PAPER_THREAT),
    "cinic10": TrainConfig(epochs=100, batch_size=64, lr=0.1, warmup_epochs=10, **_PAPER_THREAT),
    "ham10000": TrainConfig(
        epochs=50, batch_size=32, lr=0.02, warmup_epochs=5, oversample=True, **_PAPER_THREAT
    ),
}


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at ``step`` of ``total``: linear warm-up, then cosine to 0.

    The factor rises as ``(step + 1) / warmup`` over the first ``warmup`` steps and then
    follows ``0.5 * (1 + cos(pi * progress))`` over the rest.
    """
    if step < warmup:
        return (step + 1) / warmup
    remaining = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / remaining)))


def trades_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float = 6.0,
    eps: float = 4 / 255,
    alpha: float = 2 / 255,
    steps: int = 5,
    bounds: Bounds = (0.0, 1.0),
    generator: torch.Generator | None = None,
    amp: bool | torch.dtype = False,
) -> torch.Tensor:
    """The TRADES loss (Zhang et al. 2019), as the official implementation computes it.

    1. In eval mode, from ``x' = x + 0.001 * N(0, 1)``, ``steps`` times:
       ``x' <- Proj(x' + alpha * sign(grad KL(p(x) || p(x'))))`` onto the eps ball and
       ``bounds``.
    2. In train mode: ``CE(f(x), y) + beta * KL(p(x) || p(x'))``, the KL summed and divided by
       the batch size, the clean distribution *not* detached (gradients flow through both).

    Parameters
    ----------
    model : nn.Module
        The model being trained. Its train/eval flags are restored before returning; its
        BatchNorm statistics are updated by the two training forward passes (clean and
        adversarial), as in training.
    x : torch.Tensor, shape (N, ...)
        Clean inputs on the model's device.
    y : torch.Tensor, shape (N,), int64
        Labels.
    beta : float, default 6.0
    eps, alpha : float
        Attack radius and step.
    steps : int, default 5
    bounds : (float, float) or None, default (0, 1)
    generator : torch.Generator, optional
        Source of the Gaussian start.
    amp : bool or torch.dtype, default False
        Autocast for the forward passes.

    Returns
    -------
    torch.Tensor
        Scalar loss with a graph to the model's parameters.
    """
    check_module(model, "model")
    device = model_device(model)
    with evaluation_view(model, optimize=False) as view, _frozen_parameters(model):
        x_adv = pgd_on_view(
            view, x, eps=eps, alpha=alpha, steps=steps, objective="kl", random_start=True,
            start_std=0.001, bounds=bounds, generator=generator, amp=amp,
        )  # fmt: skip
    with preserved_mode(model, training=True), autocast(device, amp):
        logits_clean = model(x).float()
        logits_adv = model(x_adv).float()
    natural = F.cross_entropy(logits_clean, y)
    robust = (
        F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="sum")
        / x.shape[0]
    )
    return natural + beta * robust


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` on the parameters for the block, then restore each flag.

    The inner attack only needs gradients w.r.t. the input; with the parameters frozen,
    autograd neither stores what their gradients would need nor computes them.
    """
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def _labelled(data: Pool | tuple[torch.Tensor, torch.Tensor]) -> tuple[Pool, torch.Tensor]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        data = Pool(x, torch.zeros(len(y), dtype=torch.long), labels=y)
    if not isinstance(data, Pool):
        raise TypeError(f"data must be a labelled fral.Pool or (x, y), got {type(data).__name__}")
    return data, data.require_labels("the training data")


@dataclass
class Trainer:
    """SGD trainer whose optimiser state survives from one :meth:`fit` to the next.

    Parameters
    ----------
    model : nn.Module
        The model to train, in place.
    config : TrainConfig
        Options; ``fit(epochs=...)`` can override the epoch count per call.
    random_state : int, torch.Generator or None
        Seed of every random draw of the training.
    progress : bool
        Show a tqdm bar per epoch.

    Examples
    --------
    >>> trainer = Trainer(model, TrainConfig(epochs=5), random_state=0)  # doctest: +SKIP
    >>> trainer.fit(labelled_pool)                                      # doctest: +SKIP
    """

    model: nn.Module
    config: TrainConfig = field(default_factory=TrainConfig)
    random_state: RandomState = None
    progress: bool = False

    def __post_init__(self) -> None:
        check_module(self.model, "model")
        if not isinstance(self.config, TrainConfig):
            raise TypeError("config must be a fral.training.TrainConfig")
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.config.lr, momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )  # fmt: skip
        self.generator = make_generator(resolve_seed(self.random_state))
        self.epochs_done = 0

    def state_dict(self) -> dict[str, Any]:
        """Optimiser state, generator state and epoch count (not the model's weights).

        A copy: later training does not change it (``optimizer.state_dict()`` alone would hand
        out the live momentum buffers).
        """
        return {
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "epochs_done": self.epochs_done,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epochs_done = int(state["epochs_done"])

    def _epoch_order(self, labels: torch.Tensor, config: TrainConfig) -> torch.Tensor:
        """Sample order of one epoch: a permutation, or a shuffled class-balanced resample."""
        if not config.oversample:
            return torch.randperm(len(labels), generator=self.generator)
        counts = torch.bincount(labels)
        target = int(counts.max())
        parts = []
        for cls in torch.nonzero(counts).flatten().tolist():
            members = torch.nonzero(labels == cls).flatten()
            extra = torch.randint(len(members), (target - len(members),), generator=self.generator)
            parts.append(torch.cat([members, members[extra]]))
        order = torch.cat(parts)
        return order[torch.randperm(len(order), generator=self.generator)]

    def fit(
        self,
        data: Pool | tuple[torch.Tensor, torch.Tensor],
        *,
        epochs: int | None = None,
        config: TrainConfig | None = None,
    ) -> list[dict[str, float]]:
        """Train with a fresh warm-up + cosine cycle, from the current weights and optimiser.

        Parameters
        ----------
        data : Pool or (x, y)
            Labelled training samples.
        epochs : int, optional
            Override of the epoch count for this call.
        config : TrainConfig, optional
            Options for this call (e.g. a gentler fine-tuning schedule); default the
            trainer's ``config``. The optimiser's momentum buffers carry over either way.

        Returns
        -------
        list of dict
            Per epoch: ``epoch``, ``loss`` (mean), ``lr`` (last), ``seconds``.
        """
        config = (self.config if config is None else config).resolved()
        if epochs is not None:
            config = replace(config, epochs=epochs)
        pool, labels = _labelled(data)
        if len(pool) == 0:
            raise ValueError("no labelled samples to train on")
        device = model_device(self.model)
        counts = torch.bincount(labels)
        epoch_size = int(counts.max()) * int((counts > 0).sum()) if config.oversample else len(pool)
        batches_per_epoch = math.ceil(epoch_size / config.batch_size)
        total = config.epochs * batches_per_epoch
        warmup = round(config.warmup_epochs * batches_per_epoch)
        history = []
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        # Dropout draws from the global RNG: fork it so training is reproducible from our seed
        # and the caller's global RNG stream is left as it was.
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), preserved_mode(self.model, training=True):
            torch.manual_seed(seed)
            step = 0
            for _ in range(config.epochs):
                start, losses = time.perf_counter(), []
                order = self._epoch_order(labels, config)
                bar = tqdm(
                    order.split(config.batch_size), disable=not self.progress, leave=False,
                    desc=f"{'TRADES' if config.adversarial else 'train'} epoch "
                    f"{self.epochs_done + 1}", unit="batch",
                )  # fmt: skip
                for index in bar:
                    lr = config.lr * warmup_cosine(step, total, warmup)
                    for group in self.optimizer.param_groups:
                        group.update(
                            lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
                        )
                    x = pool.get_inputs(index).to(device, non_blocking=True)
                    y = labels[index].to(device, non_blocking=True)
                    loss = self._loss(x, y, config)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    losses.append(loss.detach())
                    step += 1
                self.epochs_done += 1
                history.append({
                    "epoch": self.epochs_done,
                    "loss": float(torch.stack(losses).mean()),
                    "lr": lr,
                    "seconds": time.perf_counter() - start,
                })  # fmt: skip
        return history

    def _loss(self, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
        if config.adversarial:
            return trades_loss(
                self.model, x, y, beta=config.beta, eps=config.eps, alpha=config.alpha,
                steps=config.steps, bounds=config.bounds, generator=self.generator,
                amp=config.amp,
            )  # fmt: skip
        with autocast(model_device(self.model), config.amp):
            logits = self.model(x).float()
        return F.cross_entropy(logits, y)


def adversarial_train(
    model: nn.Module,
    data: Pool | tuple[torch.Tensor, torch.Tensor],
    *,
    random_state: RandomState = None,
    progress: bool = True,
    **options: Any,
) -> Trainer:
    """TRADES-train ``model`` in place on labelled ``data``; returns the trainer to continue.

    A tqdm bar per epoch unless ``progress=False``. ``options`` are :class:`TrainConfig`
    fields (``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``,
    ``warmup_epochs``, ``beta``, ``eps``, ``alpha``, ``steps``, ``bounds``, ``oversample``,
    ``amp``). Call ``trainer.fit(new_data)`` to fine-tune from the
    current weights and optimiser state.
    """
    trainer = Trainer(model, TrainConfig(adversarial=True, **options), random_state, progress)
    trainer.fit(data)
    return trainer


def standard_train(
    model: nn.Module,
    data: Pool | tuple[torch.Tensor, torch.Tensor],
    *,
    random_state: RandomState = None,
    progress: bool = True,
    **options: Any,
) -> Trainer:
    """Cross-entropy training of the auxiliary standard model ``M_S``, in place.

    Same schedule and options as :func:`adversarial_train`, without the attack.
    """
    trainer = Trainer(model, TrainConfig(adversarial=False, **options), random_state, progress)
    trainer.fit(data)
    return trainer
