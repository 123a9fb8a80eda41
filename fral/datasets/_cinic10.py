"""CINIC-10 from a local copy: 10 object classes, the group being the source domain.

``cinic10``
    The paper's CINIC-10 task (its supplementary, "Dataset Preprocessing"): the official ten
    classes and the official train/test split; the sensitive group is the domain an image
    comes from, CIFAR-10 or ImageNet; the original 32x32 images. fral never downloads it:
    ``data_dir`` is the folder you extracted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fral.datasets._base import DatasetNotAvailableError, FairDataset
from fral.datasets._images import (
    check_data_dir,
    check_image_size,
    check_workers,
    decoded_images,
    image_dataset,
    list_files,
)
from fral.datasets._split import check_split_options

__all__ = ["CINIC10_CLASS_NAMES", "CINIC10_GROUP_NAMES", "cinic10"]

CINIC10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""Class ids of :func:`cinic10`: the class folders in alphabetical order (CIFAR-10's order)."""
CINIC10_GROUP_NAMES = ("CIFAR-10", "ImageNet")
"""Group ids of :func:`cinic10`: 0 = files named ``cifar10-...``, 1 = the others."""

CINIC10_SPLIT_FOLDERS = {"train": "train", "validation": "valid", "test": "test"}
"""fral's split -> CINIC-10's folder."""


def cinic10(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    validation_fraction: float = 1.0,
    image_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    decode_workers: int = 1,
    test_fraction: Any = None,
) -> FairDataset:
    """CINIC-10 object classification with the source domain (CIFAR-10, ImageNet) as groups.

    Parameters
    ----------
    data_dir : str or path
        Required (the default ``None`` is refused with a clear message; fral never
        downloads data).
        The extracted ``CINIC-10.tar.gz``: the folders ``train/``, ``valid/`` and ``test/``,
        each holding one folder per class (``airplane``, ``automobile``, ``bird``, ``cat``,
        ``deer``, ``dog``, ``frog``, ``horse``, ``ship``, ``truck``) of ``.png`` images
        (searched recursively; other files, hidden files and ``__MACOSX`` ignored).
    seed : int, default 0
        Seed of the order of the samples within each split (shuffled, as the other loaders
        deliver them) and of the validation subset when ``validation_fraction < 1``. The
        split itself is the official one and does not depend on the seed.
    validation_fraction : float, default 1.0
        Share of the official ``valid/`` folder used as the validation split, in ``[0, 1]``:
        1 takes all of it (90,000 images), a smaller share a subset stratified by
        (class, domain) and seeded (scikit-learn's ``train_test_split``), 0 none. The paper
        does not use a validation split.
    image_size : int, default 32
        Pixels per side; CINIC-10's images are 32x32, used as they are by default (the
        paper's choice), resized otherwise (see :mod:`fral.datasets._images`).
    cache_dir : str or path, optional
        Folder of the decoded cache; see :func:`default_cache_dir`. One cache serves every
        seed and ``validation_fraction``.
    decode_workers : int, default 1
        Processes decoding the images on the first load (later loads decode nothing).
    test_fraction : None
        Not applicable: CINIC-10 has its official test split. Accepted only as ``None`` (an
        error otherwise), so that callers passing split options to every loader get a clear
        message.

    Returns
    -------
    FairDataset
        ``train`` = ``train/``, ``validation`` = (a share of) ``valid/``, ``test`` =
        ``test/``, 90,000 images each in the full data set. ``x``: lazy uint8 images read
        as float32 in ``[0, 1]`` of shape ``(N, 3, image_size, image_size)`` (grayscale PNGs
        among the ImageNet images are replicated to RGB); ``y``: the class folder
        (:data:`CINIC10_CLASS_NAMES`); ``z``: 0 for a file named ``cifar10-...``, else 1
        (ImageNet; these are named after their synset, e.g. ``n02690373_1234.png``);
        ``index``: the image's position in the file list of ``train/``, then ``valid/``,
        then ``test/``, each sorted by relative path. Attacks: L-inf ``eps = 4/255``,
        ``alpha = 2/255``, ``bounds = (0, 1)``.

    Raises
    ------
    DatasetNotAvailableError
        Naming the folder: ``data_dir`` or a split folder missing; a folder in a split that
        is not a CINIC-10 class; a class folder missing or without ``.png`` images.
    CorruptDataFileError
        Naming the file, for an image that cannot be decoded.
    TypeError, ValueError
        For a malformed option, naming it.
    """
    if test_fraction is not None:
        raise ValueError(
            f"test_fraction does not apply to cinic10 (got {test_fraction!r}): CINIC-10 has "
            "its official test split (test/); leave test_fraction out"
        )
    check_split_options(seed, 0.0, 0.5)  # the seed only: the fractions are checked below
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, (int, float, np.number)
    ):
        raise TypeError(f"validation_fraction must be a number, got {validation_fraction!r}")
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(
            f"validation_fraction must lie in [0, 1] for cinic10 (the share of valid/ used), "
            f"got {validation_fraction!r}"
        )
    image_size = check_image_size(image_size)
    decode_workers = check_workers(decode_workers)
    root = check_data_dir(data_dir, "CINIC-10")

    paths: list[Path] = []
    labels: list[int] = []
    groups: list[int] = []
    split_of: list[int] = []
    for split_number, folder_name in enumerate(CINIC10_SPLIT_FOLDERS.values()):
        for label, group, path in _split_files(root, folder_name):
            paths.append(path)
            labels.append(label)
            groups.append(group)
            split_of.append(split_number)
    images = decoded_images(
        "cinic10",
        root,
        paths,
        {"label": labels, "group": groups, "split": split_of},
        image_size=image_size,
        cache_dir=cache_dir,
        decode_workers=decode_workers,
    )
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(groups, dtype=np.int64)
    member = np.asarray(split_of)
    generator = np.random.default_rng(int(seed))
    rows = {}
    for split_number, split in enumerate(CINIC10_SPLIT_FOLDERS):
        rows[split] = generator.permutation(np.flatnonzero(member == split_number))
    rows["validation"] = _validation_subset(rows["validation"], y, z, validation_fraction, seed)
    return image_dataset(
        "cinic10",
        images,
        y,
        z,
        rows,
        class_names=CINIC10_CLASS_NAMES,
        group_names=CINIC10_GROUP_NAMES,
        group_attribute="domain",
    )


def _split_files(root: Path, folder_name: str) -> list[tuple[int, int, Path]]:
    """``(label, group, path)`` of every image of one official split folder."""
    folder = root / folder_name
    if not folder.is_dir():
        raise DatasetNotAvailableError(
            f"CINIC-10 folder {folder} is missing: data_dir must hold train/, valid/ and "
            "test/, each with one folder per class"
        )
    class_folders = sorted(
        entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    unknown = [entry for entry in class_folders if entry.name not in CINIC10_CLASS_NAMES]
    if unknown:
        raise DatasetNotAvailableError(
            f"CINIC-10 folder {unknown[0]} is not a CINIC-10 class; the class folders are "
            f"{', '.join(CINIC10_CLASS_NAMES)}"
        )
    present = {entry.name for entry in class_folders}
    missing = [name for name in CINIC10_CLASS_NAMES if name not in present]
    if missing:
        raise DatasetNotAvailableError(
            f"CINIC-10 folder {folder} lacks the class folder(s) {', '.join(missing)}"
        )
    files = []
    for label, name in enumerate(CINIC10_CLASS_NAMES):
        images = list_files(folder / name, (".png",))
        if not images:
            raise DatasetNotAvailableError(
                f"CINIC-10 class folder {folder / name} holds no .png image"
            )
        files.extend((label, 0 if path.name.startswith("cifar10-") else 1, path) for path in images)
    return files


def _validation_subset(
    rows: np.ndarray, y: np.ndarray, z: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """``fraction`` of ``rows``, stratified by (class, group) and seeded."""
    if fraction >= 1.0:
        return rows
    if fraction <= 0.0:
        return rows[:0]
    from sklearn.model_selection import train_test_split

    strata = y[rows] * len(CINIC10_GROUP_NAMES) + z[rows]
    try:
        kept, _ = train_test_split(
            rows, train_size=float(fraction), stratify=strata, random_state=int(seed)
        )
    except ValueError as error:
        raise ValueError(
            f"cannot take validation_fraction={fraction} of CINIC-10's valid/ stratified by "
            f"(class, domain): {error}"
        ) from error
    return kept
