"""Seeded train/validation/test splits, stratified by (class, group)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__: list[str] = []

SPLIT_NAMES = ("train", "validation", "test")


def check_split_options(seed: int, validation_fraction: float, test_fraction: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")


def split_key(
    name: str, seed: int, validation_fraction: float, test_fraction: float, **options: Any
) -> dict[str, Any]:
    """What identifies a split (and names a cache file): the data set, the seed, the two
    fractions and any loader ``options``, as plain JSON values."""
    return {
        "name": name,
        "seed": int(seed),
        "validation_fraction": float(validation_fraction),
        "test_fraction": float(test_fraction),
        **options,
    }


def split_indices(
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


def take_splits(
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


def split_arrays(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, num_groups: int, key: dict[str, Any]
) -> dict[str, np.ndarray]:
    return take_splits(x, y, z, split_indices(y, z, num_groups, key))
