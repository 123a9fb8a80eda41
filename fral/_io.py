"""Run-folder files: atomic writes, checksummed checkpoints, a one-writer lock, data identity.

- :func:`atomic_write`: a reader sees the old file, no file, or the complete new one.
- :func:`write_torch` / :func:`read_torch`: a ``torch.save`` payload behind a header holding its
  SHA-256; a truncated or corrupted file is a :class:`CheckpointError` naming it.
- :func:`write_json` / :func:`read_json`: JSON, optionally carrying the SHA-256 of its content
  under the key ``"sha256"``.
- :func:`folder_lock`: an exclusive, non-blocking ``flock`` on the folder itself (no lock file).
- :func:`tensor_digest`: SHA-256 of a tensor's dtype, shape and bytes, read in chunks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "CheckpointError",
    "FolderLockedError",
    "atomic_write",
    "check_writable",
    "clean_temporary_files",
    "folder_lock",
    "json_digest",
    "read_json",
    "read_torch",
    "tensor_digest",
    "write_json",
    "write_torch",
]

#: First line of every checkpoint file fral writes; the next line is the payload's SHA-256.
MAGIC = b"FRAL-CHECKPOINT 1\n"
_DIGEST_LENGTH = 64
_TEMPORARY_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A run-folder file is missing, truncated, corrupted or not the one the run recorded."""


class FolderLockedError(RuntimeError):
    """Another process holds the run folder's lock."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(handle)`` into a temporary file, fsync, then rename.

    The temporary file (``.<name>-<random>.tmp``) lies in the same folder (so the rename is
    atomic), is removed if ``write`` fails, and gets ordinary ``0o644`` permissions; the folder
    is fsynced after the rename so the new name survives a power cut. A process killed while
    writing leaves the temporary file; :func:`clean_temporary_files` removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}-", suffix=_TEMPORARY_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def check_writable(folder: str | os.PathLike[str], what: str) -> Path:
    """Create ``folder`` if needed and write (and remove) an anonymous file in it.

    Raises
    ------
    ValueError
        Naming ``what`` (the argument) when the folder cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as handle:
            handle.write(b"fral")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise ValueError(
            f"{what} {folder} is not a writable folder ({error.strerror or error}); "
            "choose one you can write to"
        ) from None
    return folder


def clean_temporary_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when its
    process was killed; returns them. Call it only while holding the folder's lock."""
    removed = []
    for path in Path(folder).glob(f".*-*{_TEMPORARY_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def json_digest(data: Any) -> str:
    """SHA-256 of ``data`` as canonical JSON (sorted keys, no spaces), after a JSON round
    trip, so that what :func:`read_json` reads back has the same digest."""
    normal = json.loads(json.dumps(data))
    text = json.dumps(normal, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_json(path: str | os.PathLike[str], data: Any, *, checksum: bool = False) -> Path:
    """Atomically write ``data`` as indented JSON; with ``checksum``, ``data`` (a dict) gets
    the key ``"sha256"``: :func:`json_digest` of the rest."""
    if checksum:
        if not isinstance(data, dict) or "sha256" in data:
            raise ValueError("a checksummed JSON file holds a dict without a 'sha256' key")
        data = {**data, "sha256": json_digest(data)}
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: str | os.PathLike[str], *, checksum: bool = False) -> Any:
    """Read a JSON file; with ``checksum``, verify and drop its ``"sha256"`` key.

    Raises
    ------
    CheckpointError
        The file is not valid JSON (truncated, corrupted) or its checksum does not match.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path} is truncated or corrupted (not valid JSON: {error})"
        ) from None
    if checksum:
        if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
            raise CheckpointError(f"{path} carries no checksum: not written by this fral version")
        stored = data.pop("sha256")
        if json_digest(data) != stored:
            raise CheckpointError(
                f"{path} is corrupted: its content does not match its checksum (edited by hand?)"
            )
    return data


def write_torch(path: str | os.PathLike[str], data: Any) -> str:
    """Atomically ``torch.save`` ``data`` behind a header with its SHA-256; returns the digest.

    The file is ``MAGIC``, the hex digest and a newline, then the ``torch.save`` bytes; read it
    with :func:`read_torch` (plain ``torch.load`` does not read it).
    """
    buffer = io.BytesIO()
    torch.save(data, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest()

    def write(handle: IO[bytes]) -> None:
        handle.write(MAGIC + digest.encode() + b"\n")
        handle.write(payload)

    atomic_write(path, write)
    return digest


def read_torch(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    map_location: torch.device | str | None = None,
) -> Any:
    """Read what :func:`write_torch` wrote, after checking its checksum.

    Parameters
    ----------
    path : str or Path
    sha256 : str, optional
        The digest the run recorded for this file; another one is an error.
    map_location : optional
        As in ``torch.load``.

    Raises
    ------
    CheckpointError
        The file is missing, truncated or corrupted, lacks the header, or is another file than
        the recorded one.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    start = len(MAGIC) + _DIGEST_LENGTH + 1
    if not data.startswith(MAGIC) or len(data) < start or data[start - 1 : start] != b"\n":
        raise CheckpointError(
            f"{path} is not a fral checkpoint file (no checksum header): truncated, corrupted, "
            "or written by another program or an older fral"
        )
    stored = data[len(MAGIC) : start - 1].decode("ascii", errors="replace")
    payload = memoryview(data)[start:]
    if hashlib.sha256(payload).hexdigest() != stored:
        raise CheckpointError(f"{path} is truncated or corrupted: its checksum does not match")
    if sha256 is not None and stored != sha256:
        raise CheckpointError(
            f"{path} is not the file this run recorded (checksum {stored[:12]}..., expected "
            f"{sha256[:12]}...)"
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself) while in the block.

    A second holder, in this process or another, gets a :class:`FolderLockedError` at once.
    The lock dies with the process, so a killed run never leaves a stale lock. Where the file
    system or platform has no ``flock`` (Windows, some network file systems), it warns once and
    runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        warnings.warn(
            f"cannot lock {folder} on this platform: keep to one run per folder", stacklevel=3
        )
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderLockedError(
                    f"{folder} is in use by another fral run (it holds the folder's lock); "
                    "wait for it to end or choose another folder"
                ) from None
            warnings.warn(
                f"cannot lock {folder} ({error.strerror}): keep to one run per folder",
                stacklevel=3,
            )
        yield
    finally:
        os.close(descriptor)


def tensor_digest(tensor: torch.Tensor, *, chunk_bytes: int = 1 << 24) -> str:
    """SHA-256 of ``tensor``'s dtype, shape and values (bytes in C order), read in chunks of
    about ``chunk_bytes`` so that no full copy of a large tensor is made."""
    hasher = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    rows = tensor.detach().reshape(1, -1) if tensor.dim() < 2 else tensor.detach()
    row_bytes = max(1, rows[0].numel() * rows.element_size()) if len(rows) else 1
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step].to("cpu").contiguous().reshape(-1)
        hasher.update(chunk.view(torch.uint8).numpy())
    return hasher.hexdigest()
