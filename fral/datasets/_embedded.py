"""The data files shipped inside the package, checked against their SHA-256 when read."""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fral.datasets._base import CorruptDataFileError, DatasetNotAvailableError

__all__ = ["DATA_DIR", "EMBEDDED_SHA256"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""The folder of the embedded data files inside the installed package."""

EMBEDDED_SHA256 = {
    "adult.npz": "130094f56f91fd59b86c11e2e50a4352abcf1d4a3e3587b589b9d50457cb5a51",
    "mnist_5k.npz": "63818dc867dd7ee1181196c2588842f34debadc19cc80dc16b1dc1401cbb62c4",
}
"""SHA-256 of each file in :data:`DATA_DIR`, as ``scripts/build_data.py`` prints them."""

REINSTALL = "pip install --force-reinstall --no-deps fral-learn"


def read_embedded(name: str) -> dict[str, np.ndarray]:
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
