"""A user's data set in one file: the ``.npz`` form that ``fral run --dataset FILE`` reads.

The file is what ``np.savez`` writes; each member is a keyword of
:meth:`FairDataset.from_arrays`:

==================  ====================================================================
member              content
==================  ====================================================================
``x``               inputs ``(N, ...)``: float32/float64 (features, or images in [0, 1]),
                    or uint8 images ``(N, C, H, W)`` (channels first), read as ``x / 255``
``y``               int class labels ``(N,)``, ``0..C-1``
``group``           int sensitive-group ids ``(N,)``, ``0..G-1``
``class_names``     optional, str ``(C,)``
``group_names``     optional, str ``(G,)``
``feature_names``   optional, str ``(d,)``
``train``           optional, int row indices: your own split (then ``test`` too,
``validation``      ``validation`` optional); without them a seeded split stratified by
``test``            (class, group), as the built-in loaders make
``eps``             optional float: the L-inf attack radius (default 4/255)
``alpha``           optional float: the PGD step (default ``eps / 2``)
``bounds``          optional 2 floats ``[low, high]``: the valid input range (default
                    ``[0, 1]``); ``[nan, nan]`` means unbounded (standardised features)
``name``            optional str: the data set's name (default: the file's stem)
``metric``          optional str ``"accuracy"`` or ``"f1"`` (default ``"accuracy"``)
``oversample``      optional bool: oversample rarer classes in training (default false)
``group_attribute`` optional str: what the group is (default ``"group"``)
==================  ====================================================================

Scalars and names are ordinary arrays (``np.float64(0.1)``, ``np.array(["a", "b"])``);
object arrays are refused (the file is read with ``allow_pickle=False``, so loading it never
runs code).

Large images stay on disk: a uint8 ``x`` stored *uncompressed* (``np.savez``) is
memory-mapped, and only the batches the loop reads are loaded. A compressed member
(``np.savez_compressed``) cannot be memory-mapped: it is read into memory whole (a quarter of
the float32 size, since it stays uint8). Float inputs are always read into memory, as float32.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fral.datasets._base import FairDataset

__all__ = ["NPZ_MEMBERS", "load_npz"]

#: Every member a data set file may hold; ``x``, ``y`` and ``group`` are required.
NPZ_MEMBERS = (
    "x",
    "y",
    "group",
    "class_names",
    "group_names",
    "feature_names",
    "train",
    "validation",
    "test",
    "eps",
    "alpha",
    "bounds",
    "name",
    "metric",
    "oversample",
    "group_attribute",
)
_REQUIRED = ("x", "y", "group")
_NAMES = ("class_names", "group_names", "feature_names")
_TEXT = ("name", "metric", "group_attribute")
_SPLITS = ("train", "validation", "test")


def load_npz(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
) -> FairDataset:
    """Read a data set file (the ``.npz`` form of this module's docstring).

    The file's threat model (``eps``, ``alpha``, ``bounds``), names, split and options are
    kept; what it leaves out takes :meth:`FairDataset.from_arrays`' defaults.

    Parameters
    ----------
    path : str or path
        The ``.npz`` file.
    seed, validation_fraction, test_fraction
        The split made when the file holds none (as :meth:`FairDataset.from_arrays`);
        unused when it holds ``train`` and ``test``.

    Returns
    -------
    FairDataset
        Splits with ``index`` = the rows of ``x``; a uint8 ``x`` stored uncompressed stays a
        memory map (read batch by batch).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError, TypeError
        A file that is not an ``.npz``, a missing or unknown member, an object array, a
        member of the wrong kind, or any error of :meth:`FairDataset.from_arrays`; every
        message starts with the file's path.

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> path = Path(tempfile.mkdtemp()) / "mine.npz"
    >>> np.savez(path, x=rng.normal(size=(200, 4)), y=rng.integers(0, 2, 200),
    ...          group=rng.integers(0, 2, 200), eps=0.1, bounds=[np.nan, np.nan])
    >>> data = load_npz(path)
    >>> data.name, data.eps, data.bounds, len(data.train)
    ('mine', 0.1, None, 126)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data set file")
    members = _read_members(path)
    try:
        options = _options(members, path)
        x = members["x"]
        channels_last = x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4)
        if x.dtype == np.uint8 and channels_last:
            raise ValueError(
                f"x has shape {x.shape}, which looks like (N, H, W, C) images: store them "
                "channels first, x.transpose(0, 3, 1, 2)"
            )
        return FairDataset.from_arrays(
            x,
            members["y"],
            members["group"],
            seed=seed,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
            **options,
        )
    except (TypeError, ValueError, IndexError) as error:
        hint = ""
        if "bounds" in str(error) and "bounds" not in members:
            hint = (
                " (the file has no bounds member, so bounds is [0, 1]: store bounds=[low, high],"
                " or bounds=[nan, nan] for unbounded features)"
            )
        raise type(error)(f"{path}: {error}{hint}") from error


def _read_members(path: Path) -> dict[str, np.ndarray]:
    """Every member, a uint8 ``x`` stored uncompressed as a read-only memory map."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path}: not a readable .npz file ({error}); write it with np.savez"
        ) from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path}: holds a single array, not an .npz archive of named members; write it "
            "with np.savez(path, x=..., y=..., group=...)"
        )
    with archive:
        names = list(archive.files)
        unknown = sorted(set(names) - set(NPZ_MEMBERS))
        if unknown:
            raise ValueError(
                f"{path}: unknown member(s) {', '.join(map(repr, unknown))}; a data set file "
                f"holds {', '.join(NPZ_MEMBERS)}"
            )
        missing = [name for name in _REQUIRED if name not in names]
        if missing:
            raise ValueError(
                f"{path}: no member {', '.join(map(repr, missing))}; a data set file holds at "
                "least x (inputs), y (class labels) and group (group ids)"
            )
        members: dict[str, np.ndarray] = {}
        for name in names:
            if name == "x":
                mapped = _memory_map(path, "x.npy")
                if mapped is not None:
                    members[name] = mapped
                    continue
            try:
                members[name] = archive[name]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise ValueError(f"{path}: member {name!r} cannot be read ({error})") from error
                raise TypeError(
                    f"{path}: member {name!r} is an object array, which fral does not load "
                    "(it could run code); store numbers as numeric arrays and names as "
                    "np.array(names, dtype=str)"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"{path}: member {name!r} cannot be read ({error})") from error
    return members


def _memory_map(path: Path, member: str) -> np.ndarray | None:
    """``member`` as a read-only memory map when it is a uint8 array stored uncompressed."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with path.open("rb") as handle:
        # The local file header: 30 fixed bytes, then the name and extra field, whose
        # lengths are read from this header (they may differ from the central directory's).
        handle.seek(info.header_offset)
        header = handle.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            return None
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        handle.seek(start)
        try:
            version = np.lib.format.read_magic(handle)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                return None
            shape, fortran, dtype = read_header(handle)
        except ValueError:
            return None
        offset = handle.tell()
    if dtype != np.uint8 or len(shape) < 2:
        return None
    return np.memmap(
        path, dtype=np.uint8, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


def _options(members: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    """The keyword arguments of :meth:`FairDataset.from_arrays` the file's members give."""
    options: dict[str, Any] = {"name": path.stem}
    for name in _NAMES:
        if name in members:
            names = members[name]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise TypeError(
                    f"{name} must be a 1-D str array (np.array([...], dtype=str)), got "
                    f"{names.dtype} of shape {names.shape}"
                )
            options[name] = tuple(names.tolist())
    for name in _TEXT:
        if name in members:
            value = members[name]
            if value.dtype.kind != "U" or value.ndim != 0:
                raise TypeError(f"{name} must be a single str, got {value.dtype} {value.shape}")
            options[name] = str(value)
    for name in ("eps", "alpha"):
        if name in members:
            options[name] = _number(members[name], name)
    if "bounds" in members:
        options["bounds"] = _bounds(members["bounds"])
    if "oversample" in members:
        value = members["oversample"]
        if value.dtype != np.bool_ or value.ndim != 0:
            raise TypeError(f"oversample must be a single bool, got {value.dtype} {value.shape}")
        options["oversample"] = bool(value)
    splits = {name: members[name] for name in _SPLITS if name in members}
    if splits:
        options["splits"] = splits
    return options


def _number(value: np.ndarray, name: str) -> float:
    if value.ndim != 0 or value.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a single number, got {value.dtype} of shape {value.shape}")
    return float(value)


def _bounds(value: np.ndarray) -> tuple[float, float] | None:
    if value.shape != (2,) or value.dtype.kind not in "fiu":
        raise TypeError(
            f"bounds must be 2 numbers [low, high] (or [nan, nan] for unbounded features), got "
            f"{value.dtype} of shape {value.shape}"
        )
    low, high = (float(v) for v in value)
    if math.isnan(low) and math.isnan(high):
        return None
    if math.isnan(low) or math.isnan(high):
        raise ValueError(
            f"bounds is [{low}, {high}]: give two numbers, or [nan, nan] for unbounded features"
        )
    return (low, high)
