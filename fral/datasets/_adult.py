"""UCI Adult (census income), the group being sex or race.

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
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fral.datasets._base import FairDataset, splits_from_arrays
from fral.datasets._cache import cached
from fral.datasets._embedded import read_embedded
from fral.datasets._split import check_split_options, split_indices, split_key, take_splits

__all__ = ["ADULT_RACE_NAMES", "ADULT_SEX_NAMES", "adult"]

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
"""Class ids of ``adult``: 0 = income <=50K, 1 = >50K."""


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
    check_split_options(seed, validation_fraction, test_fraction)
    if group not in ("sex", "race"):
        raise ValueError(f'group must be "sex" or "race", got {group!r}')
    if not isinstance(include_sensitive, bool):
        raise TypeError(f"include_sensitive must be a bool, got {include_sensitive!r}")
    group_names = ADULT_SEX_NAMES if group == "sex" else ADULT_RACE_NAMES
    key = split_key(
        "adult",
        seed,
        validation_fraction,
        test_fraction,
        group=group,
        include_sensitive=include_sensitive,
    )

    def build() -> dict[str, np.ndarray]:
        table = _raw_adult()
        return _adult_arrays(table, group, group_names, include_sensitive, key)

    arrays = cached(key, cache_dir, build, input_ndim=2)
    return FairDataset(
        name="adult",
        **splits_from_arrays(arrays, len(group_names)),
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


def _raw_adult() -> np.ndarray:
    """Rows of adult.data then adult.test without missing values: str array ``(N, 15)``.

    The fields are the files' strings (numbers as written there), the label without the
    ``"."`` that ``adult.test`` puts after it.
    """
    arrays = read_embedded("adult.npz")
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

    indices = split_indices(y, z, len(group_names), key)
    train_numeric = numeric[indices["train"]]
    mean = train_numeric.mean(axis=0)
    std = train_numeric.std(axis=0)
    std[std == 0] = 1.0
    x = np.concatenate([((numeric - mean) / std).astype(np.float32), *blocks], axis=1)
    arrays = take_splits(x, y, z, indices)
    arrays["feature_names"] = np.array(feature_names, dtype=str)
    return arrays


def _codes(values: np.ndarray, names: tuple[str, ...], column: str) -> np.ndarray:
    """int64 ids of ``values`` in ``names``; a clear error for a value outside them."""
    lookup = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(np.unique(values).tolist()) - lookup.keys())
    if unknown:
        raise ValueError(f"Adult column {column!r} holds unexpected values {unknown}")
    return np.array([lookup[value] for value in values.tolist()], dtype=np.int64)
