"""The run folder of an experiment: what identifies a run, and the files that keep it.

:class:`_Checkpoint` owns the files of one run folder (settings, committed rounds, the open
round) and the order in which they are written, so that a run killed at any moment resumes to
the same result; :func:`data_fingerprint` and :func:`model_signature` identify the data and the
model a run was started on, so that a resume or a shared initialization is matched by content,
never by name. :mod:`fral.loop` runs the rounds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fral._io import (
    CheckpointError,
    check_writable,
    clean_temporary_files,
    folder_lock,
    read_json,
    read_torch,
    tensor_digest,
    write_json,
    write_torch,
)
from fral.datasets import FairDataset
from fral.pool import Pool, Rows

__all__ = ["CHECKPOINT_VERSION", "data_fingerprint", "model_signature"]

CHECKPOINT_VERSION = 2
"""Version 2: checksummed files, ``history.json`` as the commit record, data fingerprints. A folder
written with another version is refused, never misread.
"""


def data_fingerprint(dataset: FairDataset) -> dict[str, Any]:
    """What identifies a data set's content: per split, the SHA-256 of its inputs, labels and
    groups (dtype, shape and bytes, read in chunks); plus its name and sizes.

    Two data sets with the same name but another subsample, split seed or file version have
    other fingerprints; a run, a resume and a shared initialization are matched by it.

    Returns
    -------
    dict
        ``name``, ``num_classes``, ``num_groups`` and, for ``train``, ``validation`` and
        ``test``, a hex digest.
    """
    fingerprint: dict[str, Any] = {
        "name": dataset.name,
        "num_classes": dataset.num_classes,
        "num_groups": dataset.num_groups,
    }
    for name, split in dataset.splits().items():
        parts = (inputs_digest(split.x), tensor_digest(split.y), tensor_digest(split.z))
        fingerprint[name] = hashlib.sha256(" ".join(parts).encode()).hexdigest()
    return fingerprint


def inputs_digest(inputs: torch.Tensor | Dataset, *, batch_size: int = 1024) -> str:
    """SHA-256 of a split's inputs, tensor or Dataset.

    A tensor is hashed directly; a Dataset with a ``fingerprint()`` method (e.g.
    :class:`fral.datasets.UInt8Images`) gives its own, combined with the rows of a
    :class:`~fral.pool.Rows` view; any other Dataset is read once, batch by batch, and its
    inputs hashed. Give a dataset whose items are random (augmentation) a ``fingerprint()``:
    otherwise each read differs and a resume is refused as other data.
    """
    if isinstance(inputs, torch.Tensor):
        return tensor_digest(inputs)
    base, rows = (inputs.dataset, inputs.rows) if isinstance(inputs, Rows) else (inputs, None)
    fingerprint = getattr(base, "fingerprint", None)
    if callable(fingerprint):
        parts = [str(fingerprint())] + ([] if rows is None else [tensor_digest(rows)])
        return hashlib.sha256(" ".join(parts).encode()).hexdigest()
    digest = hashlib.sha256()
    empty_groups = torch.zeros(len(inputs), dtype=torch.int64)
    for batch in Pool(inputs, empty_groups).batches(batch_size):
        digest.update(tensor_digest(batch).encode())
    return digest.hexdigest()


def model_signature(model: nn.Module) -> str:
    """The architecture as a checkpoint sees it: the class name and a digest of every
    ``state_dict`` entry's name, shape and dtype (e.g. ``"SmallCNN:1f0c...``)."""
    entries = [
        f"{name}:{tuple(value.shape)}:{value.dtype}"
        for name, value in model.state_dict().items()
        if isinstance(value, torch.Tensor)
    ]
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
    return f"{type(model).__name__}:{digest}"


def _json_ready(data: Any) -> Any:
    """``data`` after a JSON round trip (tuples become lists), as it is read back from disk."""
    return json.loads(json.dumps(data))


def _differences(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Which settings differ between ``stored`` and ``current``, one phrase each."""
    phrases = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, "<unset>"), current.get(key, "<unset>")
        if old == new:
            continue
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            phrases.extend(_differences(old, new, f"{name}."))
        elif name in ("data.train", "data.validation", "data.test"):
            phrases.append(
                f"{name} (the {key} split's content: another data set, subsample, limit or "
                "split seed)"
            )
        else:
            phrases.append(f"{name} ({_short(old)} then, {_short(new)} now)")
    return phrases


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_same(what: str, stored: dict[str, Any], current: dict[str, Any]) -> None:
    differences = _differences(_json_ready(stored), _json_ready(current))
    if differences:
        raise ValueError(f"{what} was made with other settings: {'; '.join(differences)}")


class _Checkpoint:
    """The files of one run folder and the order in which they are written.

    ``settings.json`` is written once, when the run starts. A finished round is committed in
    two steps: ``state-<round>.pt`` (models, optimisers, strategy and generator states), then
    ``history.json``, which holds the records and names that state file with its SHA-256:
    the rename of ``history.json`` is the commit point, so the records, the state and every
    report agree after a kill at any moment. Older state files and the open-round files are
    removed after the commit; leftovers of a killed process are removed when the run is
    resumed. During a round, ``open_round.pt`` (``M_S`` and the strategy right after
    selecting) is written before ``open_round.json`` (the picks, every oracle answer so far
    and ``open_round.pt``'s SHA-256). Under a process group of several ranks only rank 0's
    has a folder: the loop reads and writes on rank 0 and sends what it read to the others.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.state_file: str | None = None  # the committed state file, once known
        #: What a reader of the folder should know about how it was made (e.g. a resume at
        #: another world size); kept in ``history.json`` as ``notes`` once there is one.
        self.notes: list[str] = []

    def path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / name

    @contextlib.contextmanager
    def opened(self, settings: dict[str, Any], resume: bool) -> Iterator[None]:
        """Check the folder is writable, lock it, check or write the settings, tidy it."""
        if self.folder is None:
            yield
            return
        check_writable(self.folder, "checkpoint_dir")
        with folder_lock(self.folder):
            if self._check_settings(settings, resume):
                self._tidy()  # only in a folder that holds a run: never touch others' files
            yield

    def _check_settings(self, settings: dict[str, Any], resume: bool) -> bool:
        """Refuse a run that differs from the one in the folder; ``True`` if there is one."""
        path = self.path("settings.json")
        holds_run = path.exists() or self.path("history.json").exists()
        if holds_run and not resume:
            raise FileExistsError(
                f"{self.folder} holds a run already: resume it (resume=True, fral --resume) "
                "or choose another folder"
            )
        if not holds_run:
            write_json(path, settings, checksum=True)
            return False
        if not path.exists():
            raise CheckpointError(f"{path} is missing: the run in {self.folder} cannot be checked")
        stored = read_json(path, checksum=True)
        if stored.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{self.folder} was written by another fral version (checkpoint version "
                f"{stored.get('version')}, this one reads {CHECKPOINT_VERSION}); start a new run"
            )
        current = {key: value for key, value in settings.items() if key != "rounds"}
        stored = {key: value for key, value in stored.items() if key != "rounds"}
        _check_same(f"the run in {self.folder}", stored, current)
        return True

    def _tidy(self) -> None:
        """Remove what a killed process left: temporary files, uncommitted state files and
        the open-round files of a round already committed (or never opened)."""
        assert self.folder is not None
        clean_temporary_files(self.folder)
        committed = self.committed()
        keep = None if committed is None else committed["state"]["file"]
        for path in self.folder.glob("state-*.pt"):
            if path.name != keep and path.name[6:-3].isdigit():
                path.unlink()
        done = -1 if committed is None else len(committed["history"]) - 1
        open_json = self.path("open_round.json")
        if open_json.exists() and read_json(open_json, checksum=True)["round"] <= done:
            open_json.unlink()
        if not open_json.exists():
            self.path("open_round.pt").unlink(missing_ok=True)

    def committed(self) -> dict[str, Any] | None:
        """``history.json`` (checked), or ``None`` before round 0 is committed."""
        if self.folder is None or not self.path("history.json").exists():
            return None
        return read_json(self.path("history.json"), checksum=True)

    def commit(
        self, number: int, state: dict[str, Any], settings: dict[str, Any], history: list
    ) -> None:
        if self.folder is None:
            return
        name = f"state-{number}.pt"
        digest = write_torch(self.path(name), state)
        record = {
            "settings": settings,
            "history": history,
            "state": {"file": name, "sha256": digest},
        }
        if self.notes:
            record["notes"] = list(self.notes)
        write_json(self.path("history.json"), record, checksum=True)
        self.path("open_round.json").unlink(missing_ok=True)
        self.path("open_round.pt").unlink(missing_ok=True)
        if self.state_file is not None and self.state_file != name:
            self.path(self.state_file).unlink(missing_ok=True)
        self.state_file = name

    def load_state(self, committed: dict[str, Any]) -> dict[str, Any]:
        entry = committed["state"]
        self.state_file = entry["file"]
        self.notes = list(committed.get("notes", []))
        return read_torch(self.path(entry["file"]), sha256=entry["sha256"], map_location="cpu")

    def open_round(self, number: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Round ``number``'s open-round record and selection state, if it was selected."""
        if self.folder is None or not self.path("open_round.json").exists():
            return None
        record = read_json(self.path("open_round.json"), checksum=True)
        if record["round"] != number:
            return None
        state = read_torch(self.path("open_round.pt"), sha256=record["state_sha256"])
        return record, state

    def save_open_round(self, record: dict[str, Any], state: dict[str, Any] | None) -> None:
        """Write the open round; with ``state``, ``open_round.pt`` first."""
        if self.folder is None:
            return
        if state is not None:
            record["state_sha256"] = write_torch(self.path("open_round.pt"), state)
        write_json(self.path("open_round.json"), record, checksum=True)
