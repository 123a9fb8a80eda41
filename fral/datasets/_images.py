"""Image data sets from local folders: decoding with Pillow, the decoded cache, folder checks.

Shared by the paper's data sets (``_utkface.py``, ``_cinic10.py``, ``_ham10000.py``).

Decoding
    Each file is opened with Pillow, fully decoded (a truncated or corrupt file is a
    :class:`CorruptDataFileError` naming it), converted to RGB (grayscale and palette images
    are replicated to three channels; an alpha channel is dropped, not composited) and, when
    its size differs, resized to ``image_size x image_size`` with
    ``Image.resize(..., Image.Resampling.BILINEAR, reducing_gap=None)``. Pillow's bilinear
    filter widens its support when it shrinks an image, so downscaling averages every source
    pixel (it antialiases); torchvision's ``Resize`` gives the same result on PIL images and
    close to it on tensors with ``antialias=True``, but not with ``antialias=False``, which
    samples only 2x2 source pixels per output pixel. The aspect ratio is not kept: a 600x450
    image becomes square, as ``Resize((S, S))`` would make it. No JPEG draft mode (DCT
    scaling) is used, so the pixels do not depend on the decoder's shortcuts. The result is
    uint8 of shape ``(3, S, S)``.

Decoded cache
    The first load decodes every kept image into a memory-mapped uint8 ``.npy`` of shape
    ``(N, 3, S, S)`` (:func:`numpy.lib.format.open_memmap`) beside a small ``.json`` holding
    the key (data set, resolved ``data_dir``, ``image_size``, :data:`IMAGE_FORMAT_VERSION`
    and a SHA-256 over every source file's relative path, size and modification time), the
    files' relative paths and their labels. Both are written atomically (a temporary file in
    the cache folder, fsync, :func:`os.replace`; the ``.json`` last, so it only ever names a
    complete ``.npy``). A later load lists the folder again (no image is opened) and, when
    the key matches, maps the ``.npy`` read-only: nothing is decoded and nothing big is held
    in memory. When a file was added, removed, replaced or touched, the cache is stale and is
    rebuilt (the old ``.npy`` is then removed; a process that has it mapped keeps reading it,
    as files are replaced, never rewritten in place). The decoded images do not depend on
    the seed or on the split options, so all seeds share one ``.npy``. A cache folder that
    cannot be written costs a warning, and the images are decoded into memory instead.

Files
    Folders are searched recursively; hidden files and folders (name starting with ``.``,
    e.g. macOS ``._name.jpg`` resource forks) and ``__MACOSX`` folders are ignored.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fral.datasets._arrays import UInt8Images
from fral.datasets._base import (
    CorruptDataFileError,
    DatasetNotAvailableError,
    FairDataset,
    Split,
)
from fral.datasets._cache import default_cache_dir
from fral.pool import Rows

__all__ = ["IMAGE_FORMAT_VERSION"]

IMAGE_FORMAT_VERSION = 1
"""Version of the decoded cache's layout and of the decoding; part of every cache key."""

_CHUNK = 64
"""Images decoded per task (and written to the memory map per step)."""


def check_data_dir(data_dir: Any, what: str) -> Path:
    """``data_dir`` as a resolved existing folder, or a clear error naming it."""
    if data_dir is None:
        raise TypeError(
            f"data_dir is required: the folder where you put the {what} files (fral never "
            "downloads data)"
        )
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a str or path, got {type(data_dir).__name__}")
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise DatasetNotAvailableError(
            f"data_dir {folder} does not exist: point it at the folder holding the {what} "
            "files (fral never downloads data)"
        )
    if not folder.is_dir():
        raise DatasetNotAvailableError(f"data_dir {folder} is not a folder")
    return folder.resolve()


def check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"image_size must be an int (pixels per side), got {image_size!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return int(image_size)


def check_workers(decode_workers: Any) -> int:
    if isinstance(decode_workers, bool) or not isinstance(decode_workers, (int, np.integer)):
        raise TypeError(f"decode_workers must be an int, got {decode_workers!r}")
    if decode_workers < 1:
        raise ValueError(f"decode_workers must be >= 1, got {decode_workers}")
    return int(decode_workers)


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__MACOSX"


def list_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files under ``folder`` (recursively) ending in one of ``suffixes`` (any case), sorted
    by relative path; hidden files and folders and ``__MACOSX`` are skipped."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if _visible(name)]
        found.extend(
            Path(root, name) for name in names if _visible(name) and name.lower().endswith(suffixes)
        )
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def files_digest(root: Path, paths: Sequence[Path]) -> str:
    """SHA-256 over each file's path relative to ``root``, size and modification time."""
    hasher = hashlib.sha256()
    for path in paths:
        try:
            status = path.stat()
        except OSError as error:
            raise DatasetNotAvailableError(f"cannot read {path}: {error.strerror}") from None
        hasher.update(
            f"{path.relative_to(root).as_posix()}\0{status.st_size}\0{status.st_mtime_ns}\n".encode()
        )
    return hasher.hexdigest()


def decode_image(path: str | os.PathLike[str], image_size: int) -> np.ndarray:
    """One image file as uint8 RGB of shape ``(3, image_size, image_size)``.

    See the module documentation for the conversion and the resize filter.

    Raises
    ------
    CorruptDataFileError
        Naming the file, when Pillow cannot identify or fully decode it (e.g. a truncated
        JPEG).
    """
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: a truncated image would be decoded "
            "with grey pixels instead of being reported; unset it before loading data sets"
        )
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptDataFileError(
            f"cannot decode the image {path}: {error} (replace the file with a good copy)"
        ) from None
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _decode_chunk(task: tuple[list[str], int]) -> np.ndarray:
    paths, image_size = task
    return np.stack([decode_image(path, image_size) for path in paths])


def _decoded_chunks(
    paths: Sequence[Path], image_size: int, workers: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, images)`` for consecutive chunks of ``paths``, in order."""
    tasks = [
        ([str(path) for path in paths[start : start + _CHUNK]], image_size)
        for start in range(0, len(paths), _CHUNK)
    ]
    starts = range(0, len(paths), _CHUNK)
    if workers == 1 or len(tasks) == 1:
        for start, task in zip(starts, tasks, strict=True):
            yield start, _decode_chunk(task)
        return
    with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
        yield from zip(starts, pool.imap(_decode_chunk, tasks), strict=True)


def _cache_stem(name: str, root: Path, image_size: int, folder: Path) -> Path:
    identity = json.dumps([name, str(root), image_size, IMAGE_FORMAT_VERSION])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return folder / f"{name}-{image_size}px-v{IMAGE_FORMAT_VERSION}-{digest}"


def decoded_images(
    name: str,
    root: Path,
    paths: Sequence[Path],
    records: dict[str, list[Any]],
    *,
    image_size: int,
    cache_dir: str | os.PathLike[str] | None,
    decode_workers: int = 1,
    extra_files: Sequence[Path] = (),
) -> np.ndarray:
    """The images at ``paths`` as uint8 ``(N, 3, S, S)``, from the decoded cache or decoded.

    Parameters
    ----------
    name : str
        The data set's name (part of the cache file names).
    root : pathlib.Path
        The resolved ``data_dir``; ``paths`` lie under it.
    paths : sequence of pathlib.Path
        The image files, in the order of the rows.
    records : dict of str to list
        Per-row values derived from the files (labels, attributes), stored in the cache's
        ``.json`` and compared on reading.
    image_size : int
        Pixels per side.
    cache_dir : str or path, optional
        Folder of the cache; default :func:`default_cache_dir`.
    decode_workers : int, default 1
        Processes decoding in parallel (1: in this process).
    extra_files : sequence of pathlib.Path
        Other files the rows depend on (e.g. a metadata CSV), part of the digest.

    Returns
    -------
    numpy.ndarray
        A read-only memory map of the cache's ``.npy`` (or, when the cache folder cannot be
        written, an array in memory, with a warning).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    stem = _cache_stem(name, root, image_size, folder)
    key = {
        "name": name,
        "data_dir": str(root),
        "image_size": image_size,
        "format": IMAGE_FORMAT_VERSION,
        "files": files_digest(root, [*paths, *extra_files]),
    }
    relative = [path.relative_to(root).as_posix() for path in paths]
    shape = (len(paths), 3, image_size, image_size)
    manifest_path = stem.with_suffix(".json")
    manifest = _read_manifest(manifest_path)
    if (
        manifest is not None
        and manifest.get("key") == key
        and manifest.get("files") == relative
        and manifest.get("records") == records
    ):
        array = _open_images(folder / str(manifest.get("npy")), shape)
        if array is not None:
            return array
    npy_name = f"{stem.name}-{key['files'][:16]}.npy"
    try:
        _build(folder / npy_name, paths, image_size, shape, decode_workers)
    except OSError as error:  # the cache folder; unreadable images raise CorruptDataFileError
        warnings.warn(
            f"could not write the decoded cache in {folder} ({error}); decoding into memory "
            f"({np.prod(shape) / 2**20:.0f} MiB), and again on the next load",
            stacklevel=3,
        )
        images = np.empty(shape, dtype=np.uint8)
        for start, chunk in _decoded_chunks(paths, image_size, decode_workers):
            images[start : start + len(chunk)] = chunk
        images.flags.writeable = False
        return images
    new_manifest = {
        "key": key,
        "npy": npy_name,
        "shape": list(shape),
        "files": relative,
        "records": records,
    }
    try:
        _write_atomically(manifest_path, json.dumps(new_manifest).encode())
    except OSError as error:
        warnings.warn(f"could not write the cache file {manifest_path}: {error}", stacklevel=3)
    for old in folder.glob(f"{stem.name}-*.npy"):  # earlier builds of this data set's cache
        if old.name != npy_name:
            old.unlink(missing_ok=True)
    array = _open_images(folder / npy_name, shape)
    if array is None:
        raise CorruptDataFileError(f"the decoded cache {folder / npy_name} cannot be read back")
    return array


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        warnings.warn(f"rebuilding the unreadable cache file {path}: {error}", stacklevel=4)
        return None
    return content if isinstance(content, dict) else None


def _open_images(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The ``.npy`` at ``path`` memory-mapped read-only, or ``None`` (with a warning) when it
    is missing, unreadable or not uint8 of ``shape``."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(f"rebuilding the unreadable cache file {path}: {error}", stacklevel=4)
        return None
    if array.dtype != np.uint8 or array.shape != shape:
        warnings.warn(
            f"rebuilding the cache file {path}: it holds {array.dtype} {array.shape}, "
            f"expected uint8 {shape}",
            stacklevel=4,
        )
        return None
    return array


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}-", suffix=".tmp", dir=path.parent
    )
    os.close(descriptor)
    return Path(temporary)


def _publish(temporary: Path, path: Path) -> None:
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = _temporary(path)
    try:
        temporary.write_bytes(content)
        _publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _build(
    path: Path, paths: Sequence[Path], image_size: int, shape: tuple[int, ...], workers: int
) -> None:
    """Decode ``paths`` into a new ``.npy`` at ``path``, atomically."""
    temporary = _temporary(path)
    try:
        images = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        for start, chunk in _decoded_chunks(paths, image_size, workers):
            images[start : start + len(chunk)] = chunk
        images.flush()
        del images
        _publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def image_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    rows: dict[str, np.ndarray],
    *,
    class_names: tuple[str, ...],
    group_names: tuple[str, ...],
    group_attribute: str,
    **options: Any,
) -> FairDataset:
    """A paper image data set over ``images`` (uint8 ``(N, 3, S, S)``), split at ``rows``, with
    the paper's image threat model: L-inf ``eps = 4/255``, step ``2/255``, inputs in
    ``[0, 1]``; ``options`` are further :class:`FairDataset` fields (``metric``...)."""
    return FairDataset(
        name=name,
        **image_splits(images, labels, groups, rows, len(group_names)),
        num_classes=len(class_names),
        num_groups=len(group_names),
        group_names=group_names,
        class_names=class_names,
        input_shape=tuple(images.shape[1:]),
        eps=4 / 255,
        alpha=2 / 255,
        bounds=(0.0, 1.0),
        group_attribute=group_attribute,
        **options,
    )


def image_splits(
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    rows: dict[str, np.ndarray],
    num_groups: int,
) -> dict[str, Split]:
    """Lazy :class:`Split` views (``Rows`` of one :class:`UInt8Images`) at ``rows``; each
    split's ``index`` is its rows, i.e. positions in the data set's sorted file list."""
    source = UInt8Images(images)
    labels_tensor = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    groups_tensor = torch.from_numpy(np.asarray(groups, dtype=np.int64))
    splits = {}
    for split, index in rows.items():
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        splits[split] = Split(
            x=Rows(source, index),
            y=labels_tensor[index],
            z=groups_tensor[index],
            index=index,
            num_groups=num_groups,
        )
    return splits


def short_list(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c and 7 more``."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
