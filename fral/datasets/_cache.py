"""The ``.npz`` cache of a loader's splits: keyed by its options, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fral._io import atomic_write
from fral.datasets._split import SPLIT_NAMES

__all__ = ["FORMAT_VERSION", "default_cache_dir"]

FORMAT_VERSION = 1
"""Version of the cached ``.npz`` layout and of the preprocessing; part of every cache key."""


def default_cache_dir() -> Path:
    """``$FRAL_DATA_CACHE`` if set and non-empty, else ``~/.cache/fral``."""
    configured = os.environ.get("FRAL_DATA_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fral"


class _CorruptCacheError(Exception):
    """A cache file that cannot be read or does not hold what its name promises."""


def _cache_key(key: dict[str, Any]) -> str:
    return json.dumps({"format": FORMAT_VERSION, **key}, sort_keys=True)


def _cache_path(key: dict[str, Any], cache_dir: str | os.PathLike[str] | None) -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(_cache_key(key).encode()).hexdigest()[:16]
    return folder / f"{key['name']}-v{FORMAT_VERSION}-{digest}.npz"


def cached(
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
