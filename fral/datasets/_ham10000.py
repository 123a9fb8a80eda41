"""HAM-10000 from a local copy: 7 skin lesion types, the group being sex.

``ham10000``
    The paper's HAM-10000 task (its supplementary, "Dataset Preprocessing"): the seven
    diagnostic categories (``dx``); the sensitive group is sex; duplicated images (several
    images of one lesion) and images without a sex dropped; train:test = 7:3; images resized
    to 112x112; macro-F1 as the metric and random oversampling in training. fral never
    downloads it: ``data_dir`` is the folder you extracted.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from fral.datasets._base import CorruptDataFileError, DatasetNotAvailableError, FairDataset
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

__all__ = ["HAM10000_CLASS_NAMES", "HAM10000_GROUP_NAMES", "ham10000"]

HAM10000_CLASS_NAMES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
"""Class ids of :func:`ham10000`: the ``dx`` codes in alphabetical order."""
HAM10000_GROUP_NAMES = ("female", "male")
"""Group ids of :func:`ham10000`: 0 = female, 1 = male."""

HAM10000_METADATA = "HAM10000_metadata.csv"
"""The metadata file's name."""
HAM10000_COLUMNS = ("lesion_id", "image_id", "dx", "sex")
"""The metadata columns fral reads (the file has more: ``dx_type``, ``age``, ...)."""

_UNKNOWN_SEX = ("unknown", "")


def ham10000(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    image_size: int = 112,
    cache_dir: str | os.PathLike[str] | None = None,
    decode_workers: int = 1,
) -> FairDataset:
    """HAM-10000 skin lesion classification (7 ``dx`` classes) with sex as the group.

    Parameters
    ----------
    data_dir : str or path
        Required (the default ``None`` is refused with a clear message; fral never
        downloads data).
        The folder holding ``HAM10000_metadata.csv`` (in it, or else the one such file
        below it) and the images ``<image_id>.jpg``, searched recursively (e.g. the folders
        ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/``; hidden files and
        ``__MACOSX`` ignored). Images not listed in the CSV are ignored.
    seed : int, default 0
        Seed of the stratified splits.
    validation_fraction : float, default 0.1
        Share of the train part (after the test cut) held out for validation, in ``[0, 1)``
        (fral's choice; the paper does not use a validation split).
    test_fraction : float, default 0.3
        Share of all kept images in the test split (the paper's 7:3), in ``(0, 1)``.
    image_size : int, default 112
        Pixels per side (the paper's 112). HAM-10000's images are 600x450: they are squeezed
        to a square, not cropped (see :mod:`fral.datasets._images` for the resize).
    cache_dir : str or path, optional
        Folder of the decoded cache; see :func:`default_cache_dir`. One cache serves every
        seed and fraction.
    decode_workers : int, default 1
        Processes decoding the images on the first load (later loads decode nothing).

    Returns
    -------
    FairDataset
        ``x``: lazy uint8 images read as float32 in ``[0, 1]`` of shape
        ``(N, 3, image_size, image_size)``; ``y``: ``dx`` (:data:`HAM10000_CLASS_NAMES`);
        ``z``: 0 female, 1 male; ``index``: the image's position among the kept rows sorted
        by ``image_id``. Splits stratified by (class, sex) and seeded (scikit-learn's
        ``train_test_split``). ``metric="f1"`` (macro-F1, as the paper reports for this data
        set) and ``oversample=True`` (the paper's random oversampling). Attacks: L-inf
        ``eps = 4/255``, ``alpha = 2/255``, ``bounds = (0, 1)``.

    Notes
    -----
    The filtering, in the paper's order: (1) duplicates: HAM-10000 holds several images of
    some lesions (same ``lesion_id``); fral keeps one per lesion, the one with the smallest
    ``image_id`` (the paper does not say which; this choice does not depend on the order of
    the CSV's rows). (2) Sex: rows whose ``sex`` is ``unknown`` or empty are dropped (after
    the duplicates, as the paper lists them; a lesion's images share its sex). The paper
    gives no count of the images kept.

    Raises
    ------
    DatasetNotAvailableError
        Naming the file or folder: ``data_dir`` missing; no ``HAM10000_metadata.csv``; the
        image of a kept row missing.
    CorruptDataFileError
        Naming the file (and line): a missing column, a ``dx`` or ``sex`` value outside the
        known ones, an empty ``lesion_id``/``image_id``, an ``image_id`` listed twice, an
        image file found twice, an image that cannot be decoded (e.g. a truncated JPEG).
    TypeError, ValueError
        For a malformed option, naming it.
    """
    check_split_options(seed, validation_fraction, test_fraction)
    image_size = check_image_size(image_size)
    decode_workers = check_workers(decode_workers)
    root = check_data_dir(data_dir, "HAM-10000")
    metadata = _find_metadata(root)
    rows = _read_metadata(metadata)

    kept: dict[str, tuple[str, str, str]] = {}
    for image_id, lesion_id, dx, sex in sorted(rows):
        kept.setdefault(lesion_id, (image_id, dx, sex))
    chosen = sorted(
        (image_id, dx, sex) for image_id, dx, sex in kept.values() if sex not in _UNKNOWN_SEX
    )
    if not chosen:
        raise DatasetNotAvailableError(
            f"{metadata} lists no image with a known sex (male or female)"
        )
    images_by_id = _image_files(root)
    missing = [image_id for image_id, _, _ in chosen if image_id not in images_by_id]
    if missing:
        raise DatasetNotAvailableError(
            f"HAM-10000: no image file for {len(missing)} image_id(s) of {metadata} under "
            f"{root} (expected <image_id>.jpg): {short_list(missing)}"
        )
    paths = [images_by_id[image_id] for image_id, _, _ in chosen]
    labels = [HAM10000_CLASS_NAMES.index(dx) for _, dx, _ in chosen]
    groups = [HAM10000_GROUP_NAMES.index(sex) for _, _, sex in chosen]
    images = decoded_images(
        "ham10000",
        root,
        paths,
        {"dx": labels, "sex": groups},
        image_size=image_size,
        cache_dir=cache_dir,
        decode_workers=decode_workers,
        extra_files=[metadata],
    )
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(groups, dtype=np.int64)
    key = split_key("ham10000", seed, validation_fraction, test_fraction)
    split_rows = split_indices(y, z, len(HAM10000_GROUP_NAMES), key)
    return image_dataset(
        "ham10000",
        images,
        y,
        z,
        split_rows,
        class_names=HAM10000_CLASS_NAMES,
        group_names=HAM10000_GROUP_NAMES,
        group_attribute="sex",
        metric="f1",
        oversample=True,
    )


def _find_metadata(root: Path) -> Path:
    direct = root / HAM10000_METADATA
    if direct.is_file():
        return direct
    found = [path for path in list_files(root, (".csv",)) if path.name == HAM10000_METADATA]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetNotAvailableError(
            f"no {HAM10000_METADATA} in {root} or below it: data_dir must hold the metadata "
            "file and the image folders of HAM-10000"
        )
    raise DatasetNotAvailableError(
        f"{len(found)} files named {HAM10000_METADATA} below {root} "
        f"({short_list([str(path) for path in found])}): keep one, or put it in data_dir"
    )


def _read_metadata(path: Path) -> list[tuple[str, str, str, str]]:
    """``(image_id, lesion_id, dx, sex)`` of every row, checked; ``sex`` lower-cased."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            absent = [name for name in HAM10000_COLUMNS if name not in columns]
            if absent:
                raise CorruptDataFileError(
                    f"{path} lacks the column(s) {', '.join(absent)} (its header: "
                    f"{', '.join(columns) or 'empty'}); expected at least "
                    f"{', '.join(HAM10000_COLUMNS)}"
                )
            reader.fieldnames = columns
            rows = []
            seen: dict[str, int] = {}
            for record in reader:
                line = reader.line_num
                values = {name: (record.get(name) or "").strip() for name in HAM10000_COLUMNS}
                for name in ("lesion_id", "image_id"):
                    if not values[name]:
                        raise CorruptDataFileError(f"{path}, line {line}: empty {name}")
                if values["image_id"] in seen:
                    raise CorruptDataFileError(
                        f"{path}, line {line}: image_id {values['image_id']} is listed twice "
                        f"(also on line {seen[values['image_id']]})"
                    )
                seen[values["image_id"]] = line
                if values["dx"] not in HAM10000_CLASS_NAMES:
                    raise CorruptDataFileError(
                        f"{path}, line {line}: dx {values['dx']!r} is not one of "
                        f"{', '.join(HAM10000_CLASS_NAMES)}"
                    )
                sex = values["sex"].lower()
                if sex not in (*HAM10000_GROUP_NAMES, *_UNKNOWN_SEX):
                    raise CorruptDataFileError(
                        f"{path}, line {line}: sex {values['sex']!r} is not male, female, "
                        "unknown or empty"
                    )
                rows.append((values["image_id"], values["lesion_id"], values["dx"], sex))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorruptDataFileError(f"cannot read {path}: {error}") from None
    return rows


def _image_files(root: Path) -> dict[str, Path]:
    """``image_id -> path`` of every ``.jpg`` below ``root``."""
    files: dict[str, Path] = {}
    for path in list_files(root, (".jpg",)):
        image_id = path.name[: -len(".jpg")]
        if image_id in files:
            raise CorruptDataFileError(
                f"HAM-10000 image {image_id}.jpg is found twice: {files[image_id]} and {path}; "
                "keep one copy under data_dir"
            )
        files[image_id] = path
    return files
