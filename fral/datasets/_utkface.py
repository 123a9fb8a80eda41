"""UTKFace from a local copy: 4-way race classification, the group being the age band.

``utkface``
    The paper's UTKFace task (its supplementary, "Dataset Preprocessing"): classify race
    among White, Black, Asian and Indian, the "Others" faces dropped; the sensitive group is
    young (age below ``age_threshold``, 30 in the paper) vs old; train:test = 7:3; images
    resized to 112x112. fral never downloads it: ``data_dir`` is the folder you extracted.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from fral.datasets._base import DatasetNotAvailableError, FairDataset
from fral.datasets._images import (
    check_data_dir,
    check_image_size,
    check_workers,
    decoded_images,
    image_dataset,
    list_files,
    short_list,
)
from fral.datasets._split import check_split_options, split_indices, split_key

__all__ = ["UTKFACE_CLASS_NAMES", "UTKFACE_GROUP_NAMES", "utkface"]

UTKFACE_CLASS_NAMES = ("White", "Black", "Asian", "Indian")
"""Class ids of :func:`utkface`: the race field 0..3 of the file names (4, Others, dropped)."""
UTKFACE_GROUP_NAMES = ("young", "old")
"""Group ids of :func:`utkface`: 0 = age below ``age_threshold``, 1 = the others."""

_NAME = re.compile(r"(\d+)_([01])_([0-4])_(\d+)\.jpg(\.chip\.jpg)?", re.IGNORECASE)
_OTHERS = 4


def utkface(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    age_threshold: int = 30,
    image_size: int = 112,
    cache_dir: str | os.PathLike[str] | None = None,
    decode_workers: int = 1,
) -> FairDataset:
    """UTKFace race classification (White, Black, Asian, Indian), young vs old as groups.

    Parameters
    ----------
    data_dir : str or path
        Required (the default ``None`` is refused with a clear message; fral never
        downloads data).
        The folder holding the UTKFace images, searched recursively for ``*.jpg`` files
        (hidden files and ``__MACOSX`` ignored). Either layout of the official download
        works: the "Aligned & Cropped Faces" folder ``UTKFace/`` (200x200 faces named
        ``age_gender_race_datetime.jpg.chip.jpg``) or the "In-the-wild Faces" folders
        ``part1/``, ``part2/``, ``part3/`` (whole photos named
        ``age_gender_race_datetime.jpg``). Point it at one of the two, not at a folder
        holding both, or each face counts twice. The cropped faces are the usual choice (the
        paper does not say which it used).
    seed : int, default 0
        Seed of the stratified splits.
    validation_fraction : float, default 0.1
        Share of the train part (after the test cut) held out for validation, in ``[0, 1)``
        (fral's choice; the paper does not use a validation split).
    test_fraction : float, default 0.3
        Share of all kept faces in the test split (the paper's 7:3), in ``(0, 1)``.
    age_threshold : int, default 30
        Faces with ``age < age_threshold`` are group 0 ("young"), the others group 1
        ("old"); the paper's threshold is 30.
    image_size : int, default 112
        Pixels per side (the paper's 112); see :mod:`fral.datasets._images` for the resize.
    cache_dir : str or path, optional
        Folder of the decoded cache; see :func:`default_cache_dir`. The decoded images do
        not depend on ``seed``, the fractions or ``age_threshold``, so those share one cache.
    decode_workers : int, default 1
        Processes decoding the images on the first load (later loads decode nothing).

    Returns
    -------
    FairDataset
        ``x``: lazy uint8 images read as float32 in ``[0, 1]`` of shape
        ``(N, 3, image_size, image_size)``; ``y``: race 0..3 (:data:`UTKFACE_CLASS_NAMES`);
        ``z``: 0 young, 1 old; ``index``: the face's position among the kept files sorted by
        path relative to ``data_dir``. Splits: stratified by (race, age group) and seeded
        (scikit-learn's ``train_test_split``, as the built-in loaders). Attacks: L-inf
        ``eps = 4/255``, ``alpha = 2/255``, ``bounds = (0, 1)``.

    Notes
    -----
    File names are parsed as ``age_gender_race_datetime.jpg`` (``.jpg.chip.jpg`` for the
    cropped faces): age a whole number, gender 0 or 1, race 0..4 (0 White, 1 Black, 2 Asian,
    3 Indian, 4 Others), then the digits of the date. Faces of race 4 are dropped. The real
    data set has a few malformed names (three cropped faces lack the race field, e.g.
    ``39_1_20170116174525125.jpg.chip.jpg``): fral skips every ``.jpg`` whose name does not
    parse, with one warning giving their count and the first few names, rather than refusing
    the whole data set or guessing their race.

    Raises
    ------
    DatasetNotAvailableError
        When ``data_dir`` does not exist or holds no face with a well-formed name.
    CorruptDataFileError
        Naming the file, for an image that cannot be decoded (e.g. a truncated JPEG).
    TypeError, ValueError
        For a malformed option, naming it.
    """
    check_split_options(seed, validation_fraction, test_fraction)
    if isinstance(age_threshold, bool) or not isinstance(age_threshold, (int, np.integer)):
        raise TypeError(f"age_threshold must be an int (years), got {age_threshold!r}")
    if age_threshold < 1:
        raise ValueError(f"age_threshold must be >= 1 (years), got {age_threshold}")
    image_size = check_image_size(image_size)
    decode_workers = check_workers(decode_workers)
    root = check_data_dir(data_dir, "UTKFace")

    paths: list[Path] = []
    races: list[int] = []
    ages: list[int] = []
    malformed: list[str] = []
    for path in list_files(root, (".jpg",)):
        match = _NAME.fullmatch(path.name)
        if match is None:
            malformed.append(str(path.relative_to(root)))
            continue
        race = int(match.group(3))
        if race == _OTHERS:
            continue
        paths.append(path)
        races.append(race)
        ages.append(int(match.group(1)))
    if malformed:
        warnings.warn(
            f"UTKFace: skipped {len(malformed)} file(s) in {root} whose names do not follow "
            f"age_gender_race_datetime.jpg: {short_list(malformed)}",
            stacklevel=2,
        )
    if not paths:
        raise DatasetNotAvailableError(
            f"no UTKFace face found in {root}: expected .jpg files named "
            "age_gender_race_datetime.jpg (e.g. 25_0_1_20170116174525125.jpg.chip.jpg) with a "
            "race of 0..3, in this folder or below it"
        )
    images = decoded_images(
        "utkface",
        root,
        paths,
        {"race": races, "age": ages},
        image_size=image_size,
        cache_dir=cache_dir,
        decode_workers=decode_workers,
    )
    labels = np.asarray(races, dtype=np.int64)
    groups = (np.asarray(ages, dtype=np.int64) >= age_threshold).astype(np.int64)
    key = split_key("utkface", seed, validation_fraction, test_fraction)
    rows = split_indices(labels, groups, len(UTKFACE_GROUP_NAMES), key)
    return image_dataset(
        "utkface",
        images,
        labels,
        groups,
        rows,
        class_names=UTKFACE_CLASS_NAMES,
        group_names=UTKFACE_GROUP_NAMES,
        group_attribute="age",
    )
