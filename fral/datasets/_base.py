"""What every data set is made of: :class:`Split`, :class:`FairDataset`, the errors.

A split's inputs are a tensor (in memory) or any sized ``torch.utils.data.Dataset`` read
lazily, batch by batch; labels and groups are always small int64 tensors in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fral.datasets._arrays import UInt8Images, as_int_vector, input_shape, read_targets
from fral.datasets._split import SPLIT_NAMES, check_split_options, split_indices, split_key
from fral.pool import Pool, Rows

__all__ = ["CorruptDataFileError", "DatasetNotAvailableError", "FairDataset", "Split"]

Inputs = torch.Tensor | Dataset
"""A split's inputs: a tensor of shape ``(N, ...)`` or a sized Dataset of ``N`` items."""


class DatasetNotAvailableError(RuntimeError):
    """A data set's files are not installed or not found; the message names them."""


class CorruptDataFileError(DatasetNotAvailableError):
    """A data file does not match its checksum or cannot be read; names the file."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set: inputs, labels and sensitive groups.

    Parameters
    ----------
    x : torch.Tensor or torch.utils.data.Dataset
        Inputs: a floating-point tensor of shape ``(N, ...)`` (``(N, 1, 28, 28)`` images,
        ``(N, d)`` rows), or a sized Dataset of ``N`` items read lazily, batch by batch (its
        input is the item or the item's first entry; see :class:`~fral.pool.Pool`).
    y : torch.Tensor
        int64 class labels of shape ``(N,)``.
    z : torch.Tensor
        int64 group ids of shape ``(N,)``.
    index : torch.Tensor, optional
        int64 of shape ``(N,)``: each sample's row in the combined source data (see the
        loader's documentation), to trace a sample back to its file.
    num_groups : int, optional
        Number of groups of the data set (a split may lack some); passed on to :class:`Pool`.
    num_workers : int, default 0
        DataLoader workers for reading Dataset inputs (see :class:`~fral.pool.Pool`).
    """

    x: Inputs
    y: torch.Tensor
    z: torch.Tensor
    index: torch.Tensor | None = None
    num_groups: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.x, torch.Tensor):
            if self.x.dim() < 1:
                raise TypeError("x must be a tensor of shape (N, ...)")
        elif not (isinstance(self.x, Dataset) and hasattr(self.x, "__len__")):
            raise TypeError(
                "x must be a tensor of shape (N, ...) or a sized torch.utils.data.Dataset, "
                f"got {type(self.x).__name__}"
            )
        length = len(self)
        vectors = {"y": self.y, "z": self.z}
        if self.index is not None:
            vectors["index"] = self.index
        for name, values in vectors.items():
            if not isinstance(values, torch.Tensor) or values.dtype != torch.int64:
                raise TypeError(f"{name} must be an int64 tensor")
            if values.shape != (length,):
                raise ValueError(
                    f"{name} has shape {tuple(values.shape)}, expected ({length},) to match x"
                )

    def __len__(self) -> int:
        return int(self.x.shape[0]) if isinstance(self.x, torch.Tensor) else len(self.x)

    @property
    def lazy(self) -> bool:
        """Whether the inputs are a Dataset read batch by batch (not a tensor in memory)."""
        return not isinstance(self.x, torch.Tensor)

    def pool(self, labeled: bool = True) -> Pool:
        """This split as a :class:`~fral.pool.Pool`, with labels unless ``labeled=False``."""
        return Pool(
            self.x,
            self.z,
            labels=self.y if labeled else None,
            num_groups=self.num_groups,
            num_workers=self.num_workers,
        )

    def subset(self, indices: torch.Tensor) -> Split:
        """The samples at ``indices`` (int64), as a new split (Dataset inputs stay lazy)."""
        inputs = self.x[indices] if isinstance(self.x, torch.Tensor) else Rows(self.x, indices)
        return replace(
            self,
            x=inputs,
            y=self.y[indices],
            z=self.z[indices],
            index=None if self.index is None else self.index[indices],
        )


@dataclass(frozen=True, eq=False)
class FairDataset:
    """A data set with sensitive groups, split into train, validation and test.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"digits_domains"``.
    train, validation, test : Split
        The splits (validation may be empty when ``validation_fraction=0``).
    num_classes, num_groups : int
        Number of classes and of sensitive groups.
    group_names, class_names : tuple of str
        One name per group id / class id.
    input_shape : tuple of int
        Shape of one input, ``x.shape[1:]``.
    eps : float, default 4/255
        L-inf attack radius for PGD/TRADES on this data set (in input units).
    alpha : float, optional
        PGD step size; ``None`` (the default) means ``eps / 2``, the paper's ratio (2/255 for
        4/255). :func:`dataclasses.replace` copies the old ``alpha``: pass ``alpha=None``
        with a new ``eps`` to derive the step from it again.
    bounds : (float, float) or None
        Valid input range for attacks, ``None`` for unbounded (standardised) features.
    group_attribute : str
        What the group is: ``"domain"``, ``"sex"``, ``"race"``...
    feature_names : tuple of str, optional
        Names of the ``d`` tabular features.
    metric : {"accuracy", "f1"}, default "accuracy"
        The per-group metric the paper reports for this data set (HAM-10000: macro-F1).
    oversample : bool, default False
        Whether the paper trains on it with random oversampling of the rarer classes.

    Notes
    -----
    A user's own data: :meth:`from_arrays` (arrays in memory) and :meth:`from_dataset`
    (any ``torch.utils.data.Dataset``, read lazily).
    """

    name: str
    train: Split
    validation: Split
    test: Split
    num_classes: int
    num_groups: int
    group_names: tuple[str, ...]
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    eps: float = 4 / 255
    alpha: float | None = None
    bounds: tuple[float, float] | None = (0.0, 1.0)
    group_attribute: str = "group"
    feature_names: tuple[str, ...] | None = None
    metric: str = "accuracy"
    oversample: bool = False

    def __post_init__(self) -> None:
        _check_threat_model(self.eps, self.alpha, self.bounds)
        if self.alpha is None:
            object.__setattr__(self, "alpha", self.eps / 2)
        if self.metric not in ("accuracy", "f1"):
            raise ValueError(f'metric must be "accuracy" or "f1", got {self.metric!r}')
        if len(self.group_names) != self.num_groups:
            raise ValueError(f"{len(self.group_names)} group names for {self.num_groups} groups")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        for split_name, split in self.splits().items():
            shape = input_shape(split.x)
            if shape is not None and shape != tuple(self.input_shape):
                raise ValueError(
                    f"{split_name} inputs have shape {shape}, expected {tuple(self.input_shape)}"
                )
            if len(split) and (
                int(split.y.min()) < 0
                or int(split.y.max()) >= self.num_classes
                or int(split.z.min()) < 0
                or int(split.z.max()) >= self.num_groups
            ):
                raise ValueError(f"{split_name} holds a class or group id out of range")

    def subsample(
        self,
        *,
        train: int | None = None,
        validation: int | None = None,
        test: int | None = None,
        seed: int = 0,
    ) -> FairDataset:
        """A smaller copy: at most this many samples of each split, drawn at random (seeded).

        For quick runs and tests; ``None`` keeps a split whole.
        """
        generator = torch.Generator().manual_seed(seed)
        kept = {}
        for name, limit in (("train", train), ("validation", validation), ("test", test)):
            split = getattr(self, name)
            if limit is not None and limit < len(split):
                order = torch.randperm(len(split), generator=generator)[:limit].sort().values
                split = split.subset(order)
            kept[name] = split
        return replace(self, **kept)

    def splits(self) -> dict[str, Split]:
        """``{"train": ..., "validation": ..., "test": ...}``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def summary(self) -> dict[str, Any]:
        """Counts per split, class and group, as plain JSON-ready values.

        Returns
        -------
        dict
            ``name``, ``group_attribute``, ``input_shape``, ``num_classes``, ``num_groups`` and,
            for each of ``"train"``, ``"validation"``, ``"test"`` and ``"total"``, a dict with
            ``samples``, ``per_class`` (class name -> count), ``per_group`` (group name ->
            count) and ``per_group_class`` (group name -> class name -> count).
        """
        counts = {
            name: self._joint_counts(split.y, split.z) for name, split in self.splits().items()
        }
        counts["total"] = sum(counts.values(), np.zeros_like(counts["train"]))
        result: dict[str, Any] = {
            "name": self.name,
            "group_attribute": self.group_attribute,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "num_groups": self.num_groups,
        }
        for name, joint in counts.items():
            result[name] = {
                "samples": int(joint.sum()),
                "per_class": dict(zip(self.class_names, map(int, joint.sum(0)), strict=True)),
                "per_group": dict(zip(self.group_names, map(int, joint.sum(1)), strict=True)),
                "per_group_class": {
                    group: dict(zip(self.class_names, map(int, row), strict=True))
                    for group, row in zip(self.group_names, joint, strict=True)
                },
            }
        return result

    def _joint_counts(self, y: torch.Tensor, z: torch.Tensor) -> np.ndarray:
        """Counts of shape ``(num_groups, num_classes)``."""
        flat = torch.bincount(
            z * self.num_classes + y, minlength=self.num_groups * self.num_classes
        )
        return flat.numpy().reshape(self.num_groups, self.num_classes)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray | torch.Tensor,
        y: Any,
        groups: Any,
        *,
        name: str = "custom",
        splits: dict[str, Any] | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.3,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        group_names: Sequence[str] | None = None,
        eps: float = 4 / 255,
        alpha: float | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        group_attribute: str = "group",
        feature_names: Sequence[str] | None = None,
        metric: str = "accuracy",
        oversample: bool = False,
    ) -> FairDataset:
        """A data set from a user's arrays in memory, split as the built-in loaders split.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor
            Inputs of shape ``(N, ...)``: floating point (float64 is stored as float32, the
            dtype of fral's models), or uint8 images, kept as uint8 and converted per batch
            to float32 in ``[0, 1]`` (``x / 255``, see :class:`UInt8Images`).
        y, groups : array-like of int, shape (N,)
            Class labels ``0..C-1`` and sensitive group ids ``0..G-1``.
        name : str
            The data set's name (results and checkpoints carry it).
        splits : dict, optional
            Your own split: ``{"train": rows, "validation": rows, "test": rows}``, disjoint
            integer row indices into ``x`` (``"validation"`` may be omitted or empty; rows
            you leave out are not used). By default a seeded split stratified by
            (class, group): ``test_fraction`` of all rows for test, then
            ``validation_fraction`` of the rest for validation, as the built-in loaders do.
        seed, validation_fraction, test_fraction
            The default split's seed and fractions.
        num_classes : int, optional
            ``C``, when some class has no sample; default ``max(y) + 1``.
        class_names, group_names : sequence of str, optional
            Default ``"0", "1", ...`` and ``"group 0", "group 1", ...``; their lengths give
            ``C`` and ``G`` when some class or group has no sample.
        eps, alpha, bounds
            The data set's threat model (L-inf radius, PGD step, valid input range or
            ``None`` for unbounded features), used by training, attacks and evaluation
            wherever the caller does not override them. ``alpha=None`` is ``eps / 2``.
        group_attribute, feature_names, metric, oversample
            As the fields of :class:`FairDataset`.

        Returns
        -------
        FairDataset
            Splits with ``index`` = the rows of ``x``.

        Raises
        ------
        TypeError, ValueError
            Malformed input, naming the argument: wrong dtype or shape, lengths that differ,
            negative or non-integer ids, names of the wrong count, inputs outside ``bounds``,
            NaN or infinite inputs, overlapping or out-of-range split rows, a class/group
            combination too rare to stratify.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> data = FairDataset.from_arrays(
        ...     rng.normal(size=(200, 5)), rng.integers(0, 2, 200), rng.integers(0, 2, 200),
        ...     bounds=None, eps=0.1)
        >>> len(data.train), len(data.validation), len(data.test), data.alpha
        (126, 14, 60, 0.05)
        """
        _check_declared(eps, alpha, bounds, metric)
        inputs = _array_inputs(x)
        length = len(inputs)
        labels = as_int_vector(y, "y", length)
        group_ids = as_int_vector(groups, "groups", length)
        if length == 0:
            raise ValueError("x is empty: a data set needs samples")
        _check_bounds(inputs, bounds)
        num_classes, class_names, num_groups, group_names, rows = _layout(
            labels,
            group_ids,
            num_classes,
            class_names,
            group_names,
            splits,
            name,
            (seed, validation_fraction, test_fraction),
        )
        return cls(
            name=name,
            **{
                split: Split(
                    x=inputs[index] if isinstance(inputs, torch.Tensor) else Rows(inputs, index),
                    y=labels[index],
                    z=group_ids[index],
                    index=index,
                    num_groups=num_groups,
                )
                for split, index in rows.items()
            },
            num_classes=num_classes,
            num_groups=num_groups,
            group_names=group_names,
            class_names=class_names,
            input_shape=tuple(inputs.shape[1:])
            if isinstance(inputs, torch.Tensor)
            else tuple(inputs.array.shape[1:]),
            eps=eps,
            alpha=alpha,
            bounds=bounds,
            group_attribute=group_attribute,
            feature_names=None if feature_names is None else tuple(map(str, feature_names)),
            metric=metric,
            oversample=oversample,
        )

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        labels: Any = None,
        groups: Any = None,
        name: str = "custom",
        splits: dict[str, Any] | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
        test_fraction: float = 0.3,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        group_names: Sequence[str] | None = None,
        eps: float = 4 / 255,
        alpha: float | None = None,
        bounds: tuple[float, float] | None = (0.0, 1.0),
        group_attribute: str = "group",
        metric: str = "accuracy",
        oversample: bool = False,
        num_workers: int = 0,
    ) -> FairDataset:
        """A data set over any ``torch.utils.data.Dataset``, whose inputs stay lazy.

        The loop, the strategies, training and evaluation read the inputs batch by batch
        (``dataset[i]``, or ``dataset.get_batch(rows)`` where the dataset has it); the pool is
        never materialised. Only the labels and groups, ``N`` integers each, live in memory.

        Parameters
        ----------
        dataset : torch.utils.data.Dataset
            Sized; items ``(x, y)`` (then give ``groups``) or ``(x, y, group)``, ``x`` a
            floating-point tensor (return ``x.float() / 255`` for uint8 images, or store them
            in a uint8 array and use :class:`UInt8Images` with ``labels`` and ``groups``).
        labels, groups : array-like of int, shape (N,), optional
            Given alongside, so that nothing is read to find them. Without them, the items
            are read once (in ``num_workers`` DataLoader workers) for the missing ones.
        num_workers : int, default 0
            DataLoader workers for reading items (see :class:`~fral.pool.Pool`).
        name, splits, seed, validation_fraction, test_fraction, num_classes, class_names,
        group_names, eps, alpha, bounds, group_attribute, metric, oversample
            As in :meth:`from_arrays`. ``bounds`` is checked on the first batch here and on
            every batch in adversarial training.

        Returns
        -------
        FairDataset
            Splits whose ``x`` are lazy row views of ``dataset``; ``index`` = its item numbers.

        Raises
        ------
        TypeError, ValueError
            As :meth:`from_arrays`; and items of another form than ``(x, y)`` /
            ``(x, y, group)`` when labels or groups must be read from them.
        """
        if not (isinstance(dataset, Dataset) and hasattr(dataset, "__len__")):
            raise TypeError(
                f"dataset must be a sized torch.utils.data.Dataset, got {type(dataset).__name__}"
            )
        _check_declared(eps, alpha, bounds, metric)
        length = len(dataset)
        if length == 0:
            raise ValueError("dataset is empty: a data set needs samples")
        if labels is None or groups is None:
            read_labels, read_groups = read_targets(dataset, num_workers=num_workers)
            if groups is None and read_groups is None:
                raise ValueError(
                    "the dataset's items are (x, y): give groups= (one group id per item), or "
                    "return (x, y, group) items"
                )
            labels = read_labels if labels is None else labels
            groups = read_groups if groups is None else groups
        labels = as_int_vector(labels, "labels", length)
        group_ids = as_int_vector(groups, "groups", length)
        first = Pool(dataset, group_ids, num_workers=0).get_inputs(torch.arange(min(length, 64)))
        if not first.is_floating_point():
            raise TypeError(
                f"the dataset's inputs are {first.dtype}: fral's models and attacks need "
                "floating-point inputs; return x.float() / 255 from __getitem__ for uint8 "
                "images, or keep them in a uint8 array with fral.datasets.UInt8Images"
            )
        _check_bounds(first, bounds)
        num_classes, class_names, num_groups, group_names, rows = _layout(
            labels,
            group_ids,
            num_classes,
            class_names,
            group_names,
            splits,
            name,
            (seed, validation_fraction, test_fraction),
        )
        return cls(
            name=name,
            **{
                split: Split(
                    x=Rows(dataset, index),
                    y=labels[index],
                    z=group_ids[index],
                    index=index,
                    num_groups=num_groups,
                    num_workers=num_workers,
                )
                for split, index in rows.items()
            },
            num_classes=num_classes,
            num_groups=num_groups,
            group_names=group_names,
            class_names=class_names,
            input_shape=tuple(first.shape[1:]),
            eps=eps,
            alpha=alpha,
            bounds=bounds,
            group_attribute=group_attribute,
            metric=metric,
            oversample=oversample,
        )


def _check_declared(eps: Any, alpha: Any, bounds: Any, metric: Any) -> None:
    """The threat model and metric a user declares, checked before any work."""
    _check_threat_model(eps, alpha, bounds)
    if metric not in ("accuracy", "f1"):
        raise ValueError(f'metric must be "accuracy" or "f1", got {metric!r}')


def _check_threat_model(eps: Any, alpha: Any, bounds: tuple[float, float] | None) -> None:
    for label, value in (("eps", eps), ("alpha", alpha)):
        if value is None and label == "alpha":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{label} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (label == "alpha" and value == 0):
            raise ValueError(
                f"{label} must be finite and {'> 0' if label == 'alpha' else '>= 0'}, got {value!r}"
            )
    if bounds is not None:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise TypeError(f"bounds must be (low, high) or None, got {bounds!r}")
        low, high = bounds
        if not all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in bounds):
            raise ValueError(f"bounds must be two finite numbers, got {bounds!r}")
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")


def _array_inputs(x: Any) -> torch.Tensor | UInt8Images:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        array = None
    elif isinstance(x, np.ndarray):
        array = x
    else:
        raise TypeError(f"x must be a numpy array or a torch tensor, got {type(x).__name__}")
    dtype = x.dtype if array is None else array.dtype
    if dtype in (np.uint8, torch.uint8):
        return UInt8Images(x)
    if array is not None:
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(_input_dtype_message(array.dtype))
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    elif not x.is_floating_point():
        raise TypeError(_input_dtype_message(x.dtype))
    elif x.dtype == torch.float64:
        x = x.float()
    if x.dim() < 2:
        raise ValueError(
            f"x must have shape (N, ...) with at least one feature dimension, got "
            f"{tuple(x.shape)} (one feature: x.reshape(-1, 1))"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or infinite values")
    return x


def _input_dtype_message(dtype: Any) -> str:
    return (
        f"x must be floating point (features, images in [0, 1]) or uint8 images, got {dtype}; "
        "convert integer features with .astype(np.float32)"
    )


def _check_bounds(inputs: torch.Tensor | UInt8Images, bounds: tuple[float, float] | None) -> None:
    """Inputs outside the declared ``bounds`` are an error now, not in training."""
    if bounds is None or isinstance(inputs, UInt8Images):
        if bounds is not None and not (bounds[0] <= 0.0 and bounds[1] >= 1.0):
            raise ValueError(
                f"uint8 images become floats in [0, 1], outside bounds={tuple(bounds)}"
            )
        return
    low, high = float(inputs.min()), float(inputs.max())
    if low < bounds[0] or high > bounds[1]:
        raise ValueError(
            f"x lies in [{low:.4g}, {high:.4g}], outside bounds={tuple(bounds)}: give the "
            "range your inputs live in (e.g. bounds=None for standardised features, with an "
            "eps in those units), or rescale them"
        )


def _names(
    ids: torch.Tensor,
    count: int | None,
    names: Sequence[str] | None,
    what: str,
    default: Any,
) -> tuple[int, tuple[str, ...]]:
    observed = int(ids.max()) + 1 if ids.numel() else 0
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"{what}_names must be a sequence of str")
        names = tuple(names)
        if count is not None and len(names) != count:
            raise ValueError(f"{len(names)} {what}_names for num_{what}es={count}")
        count = len(names)
    if count is None:
        count = observed
    elif isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"num_{what}es must be an int, got {count!r}")
    if count < observed:
        plural = "classes" if what == "class" else "groups"
        raise ValueError(
            f"{what} ids reach {observed - 1} but there are {count} {plural} "
            f"(from {what}_names or num_{plural})"
        )
    return int(count), names if names is not None else tuple(default(k) for k in range(count))


def _layout(
    labels: torch.Tensor,
    group_ids: torch.Tensor,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    group_names: Sequence[str] | None,
    splits: dict[str, Any] | None,
    name: str,
    split_options: tuple[int, float, float],
) -> tuple[int, tuple[str, ...], int, tuple[str, ...], dict[str, torch.Tensor]]:
    """Class and group counts and names, and each split's rows (checked)."""
    num_classes, class_names = _names(labels, num_classes, class_names, "class", str)
    num_groups, group_names = _names(group_ids, None, group_names, "group", lambda k: f"group {k}")
    rows = _rows_of_splits(splits, labels, group_ids, num_groups, name, *split_options)
    return num_classes, class_names, num_groups, group_names, rows


def _rows_of_splits(
    splits: dict[str, Any] | None,
    labels: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    name: str,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> dict[str, torch.Tensor]:
    length = labels.numel()
    if splits is None:
        check_split_options(seed, validation_fraction, test_fraction)
        key = split_key(name, seed, validation_fraction, test_fraction)
        indices = split_indices(labels.numpy(), groups.numpy(), num_groups, key)
        return {k: torch.from_numpy(v.astype(np.int64)) for k, v in indices.items()}
    if not isinstance(splits, dict):
        raise TypeError(f"splits must be a dict of row indices, got {type(splits).__name__}")
    unknown = set(splits) - set(SPLIT_NAMES)
    if unknown or not {"train", "test"} <= set(splits):
        raise ValueError(
            f'splits must have keys "train", "test" and optionally "validation", got '
            f"{sorted(map(str, splits))}"
        )
    rows = {}
    for split in SPLIT_NAMES:
        index = as_int_vector(splits.get(split, []), f'splits["{split}"]')
        if index.numel() and int(index.max()) >= length:
            raise IndexError(f'splits["{split}"] holds row {int(index.max())}, x has {length}')
        if index.unique().numel() != index.numel():
            raise ValueError(f'splits["{split}"] lists a row twice')
        rows[split] = index
    if not rows["train"].numel() or not rows["test"].numel():
        raise ValueError('splits["train"] and splits["test"] must not be empty')
    together = torch.cat(list(rows.values()))
    if together.unique().numel() != together.numel():
        raise ValueError("splits overlap: a row is in two splits")
    return rows


def splits_from_arrays(arrays: dict[str, np.ndarray], num_groups: int) -> dict[str, Split]:
    """The three :class:`Split` of a loader's arrays (``train_x``, ``train_y``, ...)."""
    splits = {}
    for split in SPLIT_NAMES:
        x = arrays[f"{split}_x"]
        splits[split] = Split(
            x=UInt8Images(x) if x.dtype == np.uint8 else torch.from_numpy(x),
            y=torch.from_numpy(arrays[f"{split}_y"]),
            z=torch.from_numpy(arrays[f"{split}_z"]),
            index=torch.from_numpy(arrays[f"{split}_index"]),
            num_groups=num_groups,
        )
    return splits
