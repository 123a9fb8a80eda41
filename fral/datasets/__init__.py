"""Data sets with sensitive groups: built-in ones, the paper's from local copies, your own.

Your own data: :meth:`FairDataset.from_arrays` (numpy or torch arrays in memory; uint8
images stay uint8 until a batch is read) and :meth:`FairDataset.from_dataset` (any
``torch.utils.data.Dataset``, read lazily batch by batch, never materialised);
:func:`load_npz` reads the one documented on-disk form (an ``.npz`` file) that
``fral run --dataset FILE`` takes.

Two data sets come with fral itself, so nothing is ever downloaded. Their source files are
stored compactly and losslessly in ``fral/data/`` (``mnist_5k.npz``, ``adult.npz``: 1.2 MB;
sources, citations and licenses in ``fral/data/DATA_NOTICE.md``; rebuilt from the original
public files by ``scripts/build_data.py`` in the repository). Each file's SHA-256 is checked
against :data:`EMBEDDED_SHA256` whenever it is read, so a damaged file is a
:class:`CorruptDataFileError` naming it, never silently different data.

``digits_domains``
    10-class digit recognition; the group is the source domain (MNIST vs UCI optdigits).
``adult``
    UCI Adult income prediction; the group is sex or race.

The paper's three image data sets load from a local copy that you downloaded (fral never
downloads them; ``data_dir`` is required), with the supplementary's preprocessing:

``utkface``
    UTKFace: race (White, Black, Asian, Indian; "Others" dropped); the group is young
    (age < ``age_threshold`` = 30) vs old; 7:3 split; 112x112.
``cinic10``
    CINIC-10: 10 classes, the official ``train/``/``valid/``/``test/`` split; the group is the
    source domain (CIFAR-10 vs ImageNet); 32x32.
``ham10000``
    HAM-10000: 7 diagnostic categories (``dx``); the group is sex (unknown dropped); one image
    per lesion; 7:3 split; 112x112; ``metric="f1"``, ``oversample=True``.

They are decoded with Pillow once, into a memory-mapped uint8 ``.npy`` in the cache folder,
and read lazily batch by batch (:class:`UInt8Images`); see ``fral/datasets/_images.py``.

Each has its own module (``fral/datasets/_digits.py``, ``_adult.py``, ``_utkface.py``,
``_cinic10.py``, ``_ham10000.py``): adding a data set is one new module and one line in
:data:`DATASETS`.

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

from collections.abc import Callable
from typing import Any

from fral.datasets._adult import ADULT_CLASS_NAMES, ADULT_RACE_NAMES, ADULT_SEX_NAMES, adult
from fral.datasets._arrays import UInt8Images
from fral.datasets._base import (
    CorruptDataFileError,
    DatasetNotAvailableError,
    FairDataset,
    Split,
)
from fral.datasets._cache import FORMAT_VERSION, default_cache_dir
from fral.datasets._cinic10 import CINIC10_CLASS_NAMES, CINIC10_GROUP_NAMES, cinic10
from fral.datasets._digits import DIGITS_CLASS_NAMES, DIGITS_GROUP_NAMES, digits_domains
from fral.datasets._embedded import DATA_DIR, EMBEDDED_SHA256
from fral.datasets._ham10000 import HAM10000_CLASS_NAMES, HAM10000_GROUP_NAMES, ham10000
from fral.datasets._images import IMAGE_FORMAT_VERSION
from fral.datasets._npz import load_npz
from fral.datasets._utkface import UTKFACE_CLASS_NAMES, UTKFACE_GROUP_NAMES, utkface

__all__ = [
    "ADULT_CLASS_NAMES",
    "ADULT_RACE_NAMES",
    "ADULT_SEX_NAMES",
    "CINIC10_CLASS_NAMES",
    "CINIC10_GROUP_NAMES",
    "DATASETS",
    "DATA_DIR",
    "DIGITS_CLASS_NAMES",
    "DIGITS_GROUP_NAMES",
    "EMBEDDED_SHA256",
    "FORMAT_VERSION",
    "HAM10000_CLASS_NAMES",
    "HAM10000_GROUP_NAMES",
    "IMAGE_FORMAT_VERSION",
    "UTKFACE_CLASS_NAMES",
    "UTKFACE_GROUP_NAMES",
    "CorruptDataFileError",
    "DatasetNotAvailableError",
    "FairDataset",
    "Split",
    "UInt8Images",
    "adult",
    "cinic10",
    "default_cache_dir",
    "digits_domains",
    "ham10000",
    "load_dataset",
    "load_npz",
    "utkface",
]

DATASETS: dict[str, Callable[..., FairDataset]] = {
    "digits_domains": digits_domains,
    "adult": adult,
    "utkface": utkface,
    "cinic10": cinic10,
    "ham10000": ham10000,
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
