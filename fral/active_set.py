"""Active learning one step at a time, for users who keep their own training loop.

:func:`fral.run_experiment` owns the whole loop: training, selection, the oracle, checkpoints.
:class:`ActiveSet` owns only the bookkeeping (which samples are labelled, with which labels)
and the selection; the user trains however they like between two calls::

    active = ActiveSet(data, initial_fraction=0.2, seed=0)  # draws the initial set
    active.label(active.pending, my_annotator(active.pending))
    for round in range(rounds):
        train_my_way(model_r, model_s, active.labeled_dataset())  # (x, y, group) items
        picks = active.select(JIN(budget=50), model_r, model_s)  # dataset indices
        active.label(picks, my_annotator(picks))
        active.save("active.pt")  # atomic, checksummed: nothing is lost between rounds

It plays the part of baal's ``ActiveLearningDataset`` and of modAL's ``query``/``teach``
pair, with three differences: every index it takes or returns is a *dataset* index (a row of
the training split), never a position in the unlabelled pool, so an index means the same
sample in every round; :meth:`ActiveSet.select` only proposes (the labels come from
:meth:`ActiveSet.label`, from the user's own oracle); and it is not itself a ``Dataset``
(:meth:`ActiveSet.labeled_dataset` and :meth:`ActiveSet.unlabeled_dataset` are).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fral._io import CheckpointError, read_torch, tensor_digest, write_torch
from fral._modules import warn_user
from fral.attacks import PGD
from fral.datasets import FairDataset, Split
from fral.loop import _check_picks, strategy_for
from fral.pool import ArrayLike, Pool, _item_input, initial_split
from fral.protocol import QueryStrategy, Strategy, check_int, check_real
from fral.run_folder import _differences, _json_ready, data_fingerprint, inputs_digest

__all__ = ["FROM_DATA", "ActiveSet"]

#: ``labels=FROM_DATA``: take the initial labels from the data's own ``y`` (you opt into
#: using them as ground truth, as in a simulation).
FROM_DATA = "from_data"

#: ``validation="data"`` (the default of :meth:`ActiveSet.select`): the validation set the
#: :class:`ActiveSet` was built with.
_DATA = "data"

_FORMAT = "fral.ActiveSet"
_VERSION = 1
_STATE_KEYS = (
    "format",
    "version",
    "size",
    "num_classes",
    "num_groups",
    "data",
    "seed",
    "initial_fraction",
    "labeled",
    "labels",
    "pending",
)


def _int_vector(values: Any, name: str) -> torch.Tensor:
    """``values`` as a 1-D int64 CPU tensor, or a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a 1-D sequence of integers, got {values!r}")
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be a 1-D sequence of integers (list, NumPy array or int64 tensor), "
            f"got {type(values).__name__}"
        ) from None
    if tensor.numel() == 0 and tensor.dim() == 1 and not isinstance(values, torch.Tensor):
        return torch.empty(0, dtype=torch.int64)  # [] and np.array([]) are float
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"{name} must hold integers, got dtype {tensor.dtype} (use .long())")
    if tensor.dim() != 1:
        hint = f" (one index: [{int(tensor)}])" if tensor.dim() == 0 else ""
        raise ValueError(f"{name} must be 1-D, got shape {tuple(tensor.shape)}{hint}")
    return tensor.detach().to("cpu", torch.int64)


class _Items(Dataset):
    """Items of an :class:`ActiveSet` at fixed dataset indices, read lazily one at a time.

    ``(x, y, group)`` where ``labels`` is given, ``(x, group)`` otherwise; ``x`` is read from
    the inputs (a tensor row, or the input of the underlying dataset's item) only when the
    item is asked for.
    """

    def __init__(
        self,
        inputs: torch.Tensor | Dataset,
        indices: torch.Tensor,
        groups: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> None:
        self.inputs = inputs
        #: int64 ``(K,)``: the dataset index of each item, in order.
        self.indices = indices
        self.groups = groups
        self.labels = labels

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, position: int) -> tuple[Any, ...]:
        row = int(self.indices[position])
        if isinstance(self.inputs, torch.Tensor):
            x = self.inputs[row]
        else:
            x = _item_input(self.inputs[row])
        group = int(self.groups[row])
        if self.labels is None:
            return x, group
        return x, int(self.labels[position]), group


class ActiveSet:
    """Which samples of a pool are labelled, with which labels, and what to label next.

    Parameters
    ----------
    data : FairDataset, Split or Pool
        - a :class:`~fral.datasets.FairDataset`: its train split is the pool (``N`` samples)
          and its validation split (when not empty) is what :meth:`select` gives a strategy
          to find the worst group; ``num_classes`` comes from it;
        - a :class:`~fral.datasets.Split` or a :class:`~fral.Pool`: the pool; give
          ``num_classes`` and, for a worst group, ``validation``. A Pool may lack labels
          (real unlabelled data). Its own ``ids`` are not used: dataset indices are the
          positions ``0..N-1`` in it.

        Any torch ``Dataset`` fits through :meth:`FairDataset.from_dataset` or
        ``Pool(dataset, groups)``; its inputs stay lazy (read batch by batch by the
        strategies, item by item by :meth:`labeled_dataset`).
    labeled : array-like of int, shape (L,), optional
        Dataset indices already labelled (unique, in ``[0, N)``).
    labels : array-like of int, shape (L,), or ``"from_data"``, optional
        Their labels, in ``[0, num_classes)``; or ``"from_data"`` (:data:`FROM_DATA`) to take
        them from the data's own ``y``. Ground truth is used only when you say so.
    initial_fraction : float in (0, 1), optional
        Instead of ``labeled``: draw ``round(N * initial_fraction)`` samples uniformly at
        random, seeded by ``seed`` (:func:`fral.pool.initial_split`; the same set
        :func:`fral.run_experiment` starts from with that seed). With ``labels="from_data"``
        they are labelled from the data; without ``labels`` nothing is labelled yet and the
        draw is left in :attr:`pending` for your oracle: ``label(pending, answers)``.
    seed : int, default 0
        Seed of the ``initial_fraction`` draw.
    num_classes : int, optional
        ``C``, against which labels are checked; required for a Split or Pool (a FairDataset
        carries it, and a different value is an error).
    validation : Pool or Split, optional
        Labelled validation samples with groups, for a Split or Pool ``data`` (a FairDataset
        brings its own validation split).

    Attributes
    ----------
    num_classes, num_groups : int
    seed : int
    initial_fraction : float or None

    Raises
    ------
    TypeError, ValueError
        For data of another form, and for every malformed argument, naming it.

    Notes
    -----
    - Indices are dataset indices (rows of the pool) everywhere, never positions in the
      unlabelled pool, so an index names the same sample in every round.
    - :meth:`label` accepts any unlabelled sample, selected or not: the oracle is yours (an
      annotator may label extra samples, or skip some picks).
    - Deterministic: the initial draw depends on ``seed`` only and :meth:`select` on the
      strategy's own seed (``random_state``). To resume a run exactly after a restart, save
      the strategy's ``state_dict()`` (its random stream) and your models beside
      :meth:`save`'s file.
    - Build a strategy with :meth:`strategy` (``active.strategy("JIN", budget)``) to attack
      under the data set's own threat model (``eps``, ``alpha``, ``bounds``), as
      :func:`fral.run_experiment` does; :meth:`select` warns when a fral strategy's PGD
      differs from it.
    - fral's strategies never change the models they are given (train/eval flags,
      BatchNorm buffers, ``requires_grad``, ``.grad``); neither does :meth:`select`.

    Examples
    --------
    >>> active = ActiveSet(data, initial_fraction=0.2, labels="from_data")  # doctest: +SKIP
    >>> picks = active.select(JIN(budget=20, random_state=0), model_r, model_s)  # doctest: +SKIP
    >>> active.label(picks, annotate(picks))  # doctest: +SKIP
    """

    def __init__(
        self,
        data: FairDataset | Split | Pool,
        *,
        labeled: ArrayLike | None = None,
        labels: ArrayLike | str | None = None,
        initial_fraction: float | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        validation: Pool | Split | None = None,
    ) -> None:
        self._data = data
        self._pool, self._truth, self._validation, self.num_classes = _resolve_data(
            data, num_classes, validation
        )
        self.num_groups = self._pool.num_groups
        self.seed = check_int(seed, "seed", -(2**63))
        self.initial_fraction: float | None = None
        self._fingerprint: dict[str, Any] | None = None
        size = len(self._pool)
        self._labeled = torch.empty(0, dtype=torch.int64)
        self._labels = torch.empty(0, dtype=torch.int64)
        #: Position of each sample in ``_labeled``, -1 when unlabelled: shape (N,).
        self._position = torch.full((size,), -1, dtype=torch.int64)
        self._pending = torch.empty(0, dtype=torch.int64)

        from_data = isinstance(labels, str)
        if from_data and labels != FROM_DATA:
            raise ValueError(f'labels must be label ids or "{FROM_DATA}", got {labels!r}')
        if initial_fraction is not None:
            if labeled is not None:
                raise ValueError(
                    "give labeled= (the indices already labelled) or initial_fraction= (a "
                    "random draw), not both"
                )
            if labels is not None and not from_data:
                raise ValueError(
                    "with initial_fraction=, labels= must be None (the draw is left in "
                    f'`pending` for your oracle) or "{FROM_DATA}"; to give your own labels, '
                    "draw first, then call label(active.pending, labels)"
                )
            self.initial_fraction = check_real(
                initial_fraction, "initial_fraction", 0.0, 1.0, low_open=True, high_open=True
            )
            drawn, _ = initial_split(
                size, self.initial_fraction, generator=torch.Generator().manual_seed(self.seed)
            )
            if from_data:
                self.label(drawn, self._data_labels(drawn))
            else:
                self._pending = drawn
        elif labeled is not None:
            if labels is None:
                raise ValueError(
                    "labeled= needs labels=: the labels of those samples, or "
                    f'labels="{FROM_DATA}" to take them from the data\'s y'
                )
            indices = _int_vector(labeled, "labeled")
            given = self._data_labels(indices) if from_data else labels
            self._record(indices, given, "labeled")
        elif labels is not None:
            raise ValueError(
                "labels= needs labeled= (which samples they belong to) or initial_fraction="
            )

    def _data_labels(self, indices: torch.Tensor) -> torch.Tensor:
        if self._truth is None:
            raise ValueError(
                f'labels="{FROM_DATA}" but the data holds no labels (a Pool without labels=); '
                "give the labels themselves"
            )
        self._check_indices(indices, "labeled")
        return self._truth[indices]

    # -- bookkeeping -------------------------------------------------------------------------
    def __len__(self) -> int:
        """``N``, the number of samples in the pool, labelled or not."""
        return len(self._pool)

    def __repr__(self) -> str:
        return (
            f"ActiveSet({self.num_labeled} labelled, {self.num_unlabeled} unlabelled, "
            f"{len(self._pending)} pending; {self.num_classes} classes, {self.num_groups} groups)"
        )

    @property
    def num_labeled(self) -> int:
        """How many samples are labelled."""
        return int(self._labeled.numel())

    @property
    def num_unlabeled(self) -> int:
        """How many samples are not labelled."""
        return len(self) - self.num_labeled

    @property
    def labeled_indices(self) -> torch.Tensor:
        """int64 ``(L,)``: the labelled dataset indices, in the order they were labelled."""
        return self._labeled.clone()

    @property
    def labeled_labels(self) -> torch.Tensor:
        """int64 ``(L,)``: their labels, aligned with :attr:`labeled_indices`."""
        return self._labels.clone()

    @property
    def unlabeled_indices(self) -> torch.Tensor:
        """int64 ``(N - L,)``: the unlabelled dataset indices, ascending."""
        return torch.nonzero(self._position < 0).flatten()

    @property
    def pending(self) -> torch.Tensor:
        """int64 ``(P,)``: the last selection's picks (or the initial draw) not labelled yet,
        best first."""
        return self._pending.clone()

    @property
    def groups(self) -> torch.Tensor:
        """int64 ``(N,)``: every sample's group id."""
        return self._pool.groups.clone()

    def is_labeled(self, indices: ArrayLike) -> torch.Tensor:
        """bool ``(K,)``: whether each of ``indices`` (dataset indices, ``(K,)``) is labelled."""
        indices = self._check_indices(_int_vector(indices, "indices"), "indices")
        return self._position[indices] >= 0

    def labels_of(self, indices: ArrayLike) -> torch.Tensor:
        """int64 ``(K,)``: the labels of ``indices`` (labelled dataset indices, ``(K,)``).

        Raises
        ------
        ValueError
            When one of them is not labelled (naming the first few).
        """
        indices = self._check_indices(_int_vector(indices, "indices"), "indices")
        positions = self._position[indices]
        missing = indices[positions < 0]
        if missing.numel():
            raise ValueError(
                f"indices {missing[:5].tolist()} are not labelled ({missing.numel()} in all)"
            )
        return self._labels[positions]

    def _check_indices(self, indices: torch.Tensor, name: str) -> torch.Tensor:
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            outside = indices[(indices < 0) | (indices >= len(self))]
            raise ValueError(
                f"{name} must be dataset indices in [0, {len(self)}), got {outside[:5].tolist()}"
            )
        return indices

    # -- views -------------------------------------------------------------------------------
    def labeled_dataset(self) -> Dataset:
        """The labelled samples as a torch ``Dataset`` of ``(x, y, group)`` items.

        ``y`` is the label given to :meth:`label` (never the data's own ``y``), ``group`` an
        int, ``x`` the input (a tensor row, or the input of the underlying dataset's item,
        read only when asked for: nothing is materialised). Items are in labelling order;
        the dataset's ``indices`` attribute (int64 ``(L,)``) holds their dataset indices.

        It is a snapshot: samples labelled later are not in it; call again after
        :meth:`label`. Wrap it in a ``DataLoader`` as any dataset (the default collate gives
        ``x`` ``(b, ...)``, ``y`` and ``group`` int64 ``(b,)``).
        """
        return _Items(self._pool.inputs, self._labeled.clone(), self._pool.groups, self._labels)

    def unlabeled_dataset(self) -> Dataset:
        """The unlabelled samples as a torch ``Dataset`` of ``(x, group)`` items, by ascending
        dataset index (``indices`` attribute); a lazy snapshot like :meth:`labeled_dataset`."""
        return _Items(self._pool.inputs, self.unlabeled_indices, self._pool.groups, None)

    def labeled_pool(self) -> Pool:
        """The labelled samples as a :class:`~fral.Pool` with the given labels; its ``ids``
        are their dataset indices (labelling order). Dataset inputs stay lazy."""
        samples = self._pool.subset(self._labeled)
        return Pool(
            samples.inputs,
            samples.groups,
            labels=self._labels.clone(),
            ids=self._labeled.clone(),
            num_groups=self.num_groups,
            num_workers=samples.num_workers,
        )

    def unlabeled_pool(self) -> Pool:
        """The unlabelled samples as a :class:`~fral.Pool` without labels; its ``ids`` are
        their dataset indices (ascending)."""
        return self._pool.subset(self.unlabeled_indices)

    def validation_pool(self) -> Pool | None:
        """The validation set :meth:`select` uses by default (labelled, with groups), or
        ``None`` when there is none (a FairDataset with an empty validation split, or a Split
        or Pool given without ``validation``)."""
        return self._validation

    # -- a round -----------------------------------------------------------------------------
    def strategy(self, name: str, budget: int, *, attack_steps: int = 5) -> Strategy:
        """A strategy by paper name (``"JIN"``, ``"G-ENT"``, ``"RAND"``...) under the data
        set's own threat model, seeded with :attr:`seed`, as :func:`fral.run_experiment`
        builds it (:func:`fral.loop.strategy_for`).

        Parameters
        ----------
        name : str
            A name of :data:`fral.STRATEGIES`.
        budget : int
            Samples per :meth:`select` call.
        attack_steps : int, default 5
            PGD steps of the strategies that attack (JIN, G-RAND, G-ENT, MinMax, OPT, FairAL),
            with the data set's ``eps``, ``alpha`` and ``bounds``.

        Raises
        ------
        TypeError
            For Split or Pool data, which declare no threat model: build the strategy with
            ``attack=fral.PGD(eps=..., alpha=..., bounds=...)``.
        """
        if not isinstance(self._data, FairDataset):
            raise TypeError(
                f"ActiveSet.strategy needs a FairDataset (it declares the threat model); for a "
                f"{type(self._data).__name__}, build the strategy yourself with "
                "attack=fral.PGD(eps=..., alpha=..., bounds=...)"
            )
        return strategy_for(name, budget, self._data, seed=self.seed, attack_steps=attack_steps)

    def select(
        self,
        strategy: QueryStrategy,
        model_r: nn.Module,
        model_s: nn.Module | None = None,
        *,
        validation: Pool | Split | str | None = _DATA,
        group: int | None = None,
    ) -> torch.Tensor:
        """Ask ``strategy`` which unlabelled samples to label next; label nothing.

        The strategy gets the unlabelled samples (inputs and groups, no labels), the
        labelled set as a :class:`~fral.Pool` with the labels given so far, and
        ``validation``; what it returns is checked (1-D int64, unique, in the pool, at most
        its budget) and mapped to dataset indices. The picks are kept in :attr:`pending`
        until labelled.

        Parameters
        ----------
        strategy : QueryStrategy
            Any fral strategy (``JIN(budget=...)``) or an object of the
            :class:`~fral.protocol.QueryStrategy` protocol.
        model_r : nn.Module
            The robust model ``M_R`` (yours, trained your way). Not modified.
        model_s : nn.Module, optional
            The standard model ``M_S``, for strategies that need it (JIN). Not modified.
        validation : Pool, Split, None or "data", default "data"
            Labelled validation samples for a group-aware strategy to find the worst group:
            by default :meth:`validation_pool`; ``None`` gives it none.
        group : int, optional
            Restrict the picks to this group (instead of finding the worst one).

        Returns
        -------
        torch.Tensor
            int64 ``(B,)``, ``B <= strategy.budget``: unlabelled dataset indices, best first.

        Raises
        ------
        TypeError, ValueError
            A strategy of the wrong kind or one that returns malformed picks, no unlabelled
            sample left, a validation set with other groups; and whatever the strategy
            raises for its own inputs (a missing ``model_s``, ...).

        Warns
        -----
        UserWarning
            When the strategy's PGD (``eps``, ``alpha``, ``bounds``) is not the threat model
            the FairDataset declares (e.g. ``JIN(budget)``'s image default on tabular data):
            build it with :meth:`strategy`, or give it the attack you mean. Also when the
            previous picks were not all labelled (they leave :attr:`pending`).
        """
        if not isinstance(strategy, QueryStrategy):
            raise TypeError(
                f"strategy must be a fral strategy (e.g. fral.JIN(budget=50)) or follow "
                f"fral.QueryStrategy, got {type(strategy).__name__}"
            )
        name = str(getattr(strategy, "name", type(strategy).__name__))
        budget = check_int(getattr(strategy, "budget", None), f"strategy {name}'s budget")
        unlabeled = self.unlabeled_indices
        if unlabeled.numel() == 0:
            raise ValueError(f"all {len(self)} samples are labelled: there is nothing to select")
        if isinstance(validation, str) and validation == _DATA:
            validation = self._validation
        else:
            validation = _validation_pool(validation, self.num_groups, "validation")
        self._check_threat_model(strategy, name)
        if self._pending.numel():
            warn_user(
                f"{self._pending.numel()} picks of the previous selection were not labelled; "
                "this selection replaces them in `pending`"
            )
        if isinstance(strategy, Strategy):
            strategy.last_selection = None
        picks = strategy.select(
            model_r,
            model_s,
            self._pool.subset(unlabeled),
            labeled=self.labeled_pool(),
            validation=validation,
            group=group,
        )
        chosen = unlabeled[_check_picks(picks, unlabeled.numel(), budget, name)]
        self._pending = chosen
        return chosen.clone()

    def _check_threat_model(self, strategy: Any, name: str) -> None:
        """Warn when a strategy's PGD differs from the FairDataset's declared threat model."""
        if not isinstance(self._data, FairDataset):
            return
        data = self._data
        declared = (data.eps, data.alpha, None if data.bounds is None else tuple(data.bounds))
        attacks = [getattr(strategy, "attack", None)]
        attacks.append(getattr(getattr(strategy, "worst_group", None), "attack", None))
        for attack in attacks:
            if not isinstance(attack, PGD):
                continue
            used = (
                attack.eps,
                attack.alpha,
                None if attack.bounds is None else tuple(attack.bounds),
            )
            if not _same_threat_model(used, declared):
                warn_user(
                    f"strategy {name} attacks with eps={used[0]:.4g}, alpha={used[1]:.4g}, "
                    f"bounds={used[2]} but {data.name} declares eps={declared[0]:.4g}, "
                    f"alpha={declared[1]:.4g}, bounds={declared[2]}: its picks follow another "
                    f"threat model. Build it with ActiveSet.strategy({name!r}, budget), or "
                    "pass attack=fral.PGD(eps=..., alpha=..., bounds=...) of your choice"
                )
                return

    def label(self, indices: ArrayLike, labels: ArrayLike) -> None:
        """Record ``labels`` for the dataset indices ``indices``: all of them, or none.

        Any unlabelled sample may be labelled, selected or not (the oracle is yours); the
        labelled ones leave :attr:`pending`.

        Parameters
        ----------
        indices : array-like of int, shape (K,)
            Unlabelled dataset indices in ``[0, N)``, each once.
        labels : array-like of int, shape (K,)
            Their labels, in ``[0, num_classes)``.

        Raises
        ------
        TypeError
            Non-integer indices or labels (floats, bools, strings).
        ValueError
            Another shape, lengths that differ, an index out of range, repeated or already
            labelled, a label out of range. Nothing is recorded then.
        """
        self._record(indices, labels, "indices")

    def _record(self, indices: ArrayLike, labels: ArrayLike, name: str) -> None:
        """:meth:`label`, its errors naming the indices ``name``."""
        indices = self._check_indices(_int_vector(indices, name), name)
        labels = _int_vector(labels, "labels")
        if labels.numel() != indices.numel():
            raise ValueError(
                f"labels has {labels.numel()} entries for {indices.numel()} {name}: one label "
                "per index"
            )
        if torch.unique(indices).numel() != indices.numel():
            values, counts = torch.unique(indices, return_counts=True)
            raise ValueError(f"{name} lists {values[counts > 1][:5].tolist()} more than once")
        again = indices[self._position[indices] >= 0]
        if again.numel():
            raise ValueError(
                f"{name} {again[:5].tolist()} are labelled already ({again.numel()} in all); "
                "a label is given once"
            )
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if outside.numel():
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got {outside[:5].tolist()}"
            )
        start = self._labeled.numel()
        self._position[indices] = torch.arange(start, start + indices.numel())
        self._labeled = torch.cat([self._labeled, indices])
        self._labels = torch.cat([self._labels, labels])
        self._pending = self._pending[~torch.isin(self._pending, indices)]

    # -- state -------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data, as saved with the state (computed once, then kept).

        A FairDataset's is :func:`fral.run_folder.data_fingerprint` (every split); a Split's
        or Pool's is the digest of its inputs, groups and labels. Tensors are hashed in
        chunks (fast); a ``Dataset`` is read once, batch by batch, unless it has a
        ``fingerprint()`` method (:class:`~fral.datasets.UInt8Images` has), which is used
        instead. The same content held as a tensor and as a Dataset gives two different
        fingerprints.

        Returns
        -------
        dict
            JSON-ready: ``form``, ``size``, ``num_classes``, ``num_groups``; then a FairDataset's
            ``name`` and one digest per split (``train``, ``validation``, ``test``), or the
            ``content`` digest of a Split or Pool.
        """
        if self._fingerprint is None:
            self._fingerprint = _json_ready(
                {
                    "form": type(self._data).__name__,
                    "size": len(self),
                    "num_classes": self.num_classes,
                    "num_groups": self.num_groups,
                    **_content_digest(self._data),
                }
            )
        return self._fingerprint

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs: plain tensors and JSON-ready metadata.

        Returns
        -------
        dict
            ``labeled`` (int64 ``(L,)``, labelling order), ``labels`` (int64 ``(L,)``),
            ``pending`` (int64 ``(P,)``); ``format``, ``version``, ``size``, ``num_classes``,
            ``num_groups``, ``seed``, ``initial_fraction`` and ``data`` (:meth:`fingerprint`).
        """
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "size": len(self),
            "num_classes": self.num_classes,
            "num_groups": self.num_groups,
            "data": self.fingerprint(),
            "seed": self.seed,
            "initial_fraction": self.initial_fraction,
            "labeled": self._labeled.clone(),
            "labels": self._labels.clone(),
            "pending": self._pending.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, after checking it fits this data.

        All or nothing: on any error the set is left as it was.

        Raises
        ------
        TypeError, ValueError
            A state of another form or version, saved on other data (another fingerprint:
            the differences are named), or with inconsistent content.
        """
        self._load(state, "the state")

    def _load(self, state: Any, what: str) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"{what} must be a dict from ActiveSet.state_dict(), got {state!r:.60}")
        missing = [key for key in _STATE_KEYS if key not in state]
        if state.get("format") != _FORMAT or missing:
            raise ValueError(
                f"{what} is not an ActiveSet state (format {state.get('format')!r}, "
                f"missing {missing})"
            )
        if state["version"] != _VERSION:
            raise ValueError(
                f"{what} has version {state['version']!r}; this fral reads version {_VERSION}"
            )
        stored = state["data"]
        if not isinstance(stored, dict):
            raise ValueError(
                f"{what} is not an ActiveSet state (its data fingerprint is {stored!r:.60})"
            )
        differences = _differences(_json_ready(stored), self.fingerprint(), "data.")
        if differences:
            raise ValueError(
                f"{what} was saved on other data ({'; '.join(differences)}); load it with the "
                "data it was made on"
            )
        restored = ActiveSet.__new__(ActiveSet)
        restored.__dict__.update(self.__dict__)
        restored._labeled = torch.empty(0, dtype=torch.int64)
        restored._labels = torch.empty(0, dtype=torch.int64)
        restored._position = torch.full((len(self),), -1, dtype=torch.int64)
        restored._pending = torch.empty(0, dtype=torch.int64)
        try:
            for key in ("labeled", "labels", "pending"):
                if not isinstance(state[key], torch.Tensor):
                    raise TypeError(f"{key} is a {type(state[key]).__name__}, not a tensor")
            restored._record(state["labeled"], state["labels"], "labeled")
            pending = restored._check_indices(_int_vector(state["pending"], "pending"), "pending")
            if torch.unique(pending).numel() != pending.numel() or bool(
                (restored._position[pending] >= 0).any()
            ):
                raise ValueError("pending must hold unlabelled indices, each once")
        except (TypeError, ValueError) as error:
            raise ValueError(f"{what} is inconsistent: {error}") from None
        self._labeled, self._labels = restored._labeled, restored._labels
        self._position, self._pending = restored._position, pending
        self.seed = int(state["seed"])
        initial = state["initial_fraction"]
        self.initial_fraction = None if initial is None else float(initial)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically, with a checksum.

        The file is written to a temporary file in the same folder, fsynced and renamed over
        ``path`` (:func:`fral._io.write_torch`): a reader, or a process killed mid-write,
        sees the previous file or the complete new one, never a mix. One writer per file:
        two processes saving to one path leave whichever finished last.

        Returns
        -------
        Path
            ``path``.
        """
        path = Path(path)
        write_torch(path, self.state_dict())
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        data: FairDataset | Split | Pool,
        *,
        num_classes: int | None = None,
        validation: Pool | Split | None = None,
    ) -> ActiveSet:
        """An :class:`ActiveSet` on ``data`` in the state :meth:`save` wrote to ``path``.

        Parameters
        ----------
        path : str or Path
        data : FairDataset, Split or Pool
            The data it was saved on (checked by fingerprint).
        num_classes, validation
            As in the constructor; ``num_classes`` defaults to the saved one.

        Raises
        ------
        fral._io.CheckpointError
            ``path`` is missing, truncated, corrupted or not an ActiveSet file (the message
            names it).
        ValueError
            It was saved on other data.
        """
        state = read_torch(path, map_location="cpu")
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise CheckpointError(f"{path} is not an ActiveSet file (written by another program?)")
        if num_classes is None and not isinstance(data, FairDataset):
            num_classes = state.get("num_classes")
        active = cls(data, num_classes=num_classes, validation=validation)
        active._load(state, f"the ActiveSet file {path}")
        return active


def _resolve_data(
    data: Any, num_classes: Any, validation: Any
) -> tuple[Pool, torch.Tensor | None, Pool | None, int]:
    """The pool (unlabelled view), the data's own labels, the validation pool, ``C``."""
    if isinstance(data, FairDataset):
        if validation is not None:
            raise ValueError(
                "a FairDataset brings its own validation split; give validation= to select() "
                "to use another one for a call"
            )
        if num_classes is not None and num_classes != data.num_classes:
            raise ValueError(
                f"num_classes={num_classes!r} but the FairDataset has {data.num_classes} classes"
            )
        pool = data.train.pool(labeled=False)
        own = data.validation.pool() if len(data.validation) else None
        return pool, data.train.y, own, data.num_classes
    if isinstance(data, (Split, Pool)) and len(data) == 0:
        raise ValueError("data is empty: an ActiveSet needs samples")
    if isinstance(data, Split):
        pool, truth = data.pool(labeled=False), data.y
    elif isinstance(data, Pool):
        pool = Pool(
            data.inputs,
            data.groups,
            num_groups=data.num_groups,
            num_workers=data.num_workers,
        )
        truth = data.labels
    else:
        raise TypeError(
            "data must be a fral.FairDataset (its train split is the pool), a "
            "fral.datasets.Split or a fral.Pool, got "
            f"{type(data).__name__}; for a torch Dataset use FairDataset.from_dataset(...) or "
            "Pool(dataset, groups)"
        )
    if num_classes is None:
        raise ValueError(
            f"num_classes is required for a {type(data).__name__} (labels are checked against "
            "it); a FairDataset carries it"
        )
    classes = check_int(num_classes, "num_classes", 1)
    if truth is not None and truth.numel() and int(truth.max()) >= classes:
        raise ValueError(f"the data's labels reach {int(truth.max())} but num_classes={classes}")
    own = None if validation is None else _validation_pool(validation, pool.num_groups)
    return pool, truth, own, classes


def _same_threat_model(used: tuple, declared: tuple) -> bool:
    """Whether two ``(eps, alpha, bounds)`` agree (numbers to a relative 1e-9)."""
    if (used[2] is None) != (declared[2] is None):
        return False
    numbers = list(used[:2]) + list(used[2] or ())
    expected = list(declared[:2]) + list(declared[2] or ())
    return all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(numbers, expected, strict=True))


def _validation_pool(value: Any, num_groups: int, name: str = "validation") -> Pool | None:
    """``value`` (a Split, a labelled Pool or None) as a labelled Pool with ``num_groups``."""
    if value is None:
        return None
    if isinstance(value, Split):
        value = value.pool()
    if not isinstance(value, Pool):
        raise TypeError(
            f"{name} must be a labelled fral.Pool, a fral.datasets.Split, None or "
            f'"{_DATA}", got {type(value).__name__}'
        )
    value.require_labels(name)
    if value.num_groups != num_groups:
        raise ValueError(
            f"{name} has num_groups={value.num_groups} but the pool has {num_groups}; build it "
            "with Pool(..., num_groups=G)"
        )
    return value


def _content_digest(data: FairDataset | Split | Pool) -> dict[str, Any]:
    """:func:`data_fingerprint` of a FairDataset (name and a digest per split), else one
    digest of the inputs, groups and labels."""
    if isinstance(data, FairDataset):
        return data_fingerprint(data)
    if isinstance(data, Split):
        inputs, groups, labels = data.x, data.z, data.y
    else:
        inputs, groups, labels = data.inputs, data.groups, data.labels
    parts = [inputs_digest(inputs), tensor_digest(groups)]
    parts.append("no labels" if labels is None else tensor_digest(labels))
    return {"content": hashlib.sha256(" ".join(parts).encode()).hexdigest()}
