"""The paper's image data sets (UTKFace, CINIC-10, HAM-10000) from tiny local copies.

Each test writes a data set in its real on-disk form (file names, folder layout, CSV
columns, real JPEG/PNG files made with Pillow) into ``tmp_path``. Images are solid colours
that encode their label and group, so that every sample's pixels can be checked against its
``y`` and ``z`` after the split.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fral.datasets._images as images_module
from fral.datasets import (
    CINIC10_CLASS_NAMES,
    HAM10000_CLASS_NAMES,
    CorruptDataFileError,
    DatasetNotAvailableError,
    FairDataset,
    cinic10,
    ham10000,
    load_dataset,
    utkface,
)

SIZE = 8
"""image_size used in the tests (the sources are 12x12 or 8x8 pixels)."""


def _save(path: Path, colour: tuple[int, int, int] | int, size=(12, 12), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, colour)
    if path.suffix == ".png":
        image.save(path)
    else:
        image.save(path, quality=95)


def _all_rows(data: FairDataset) -> dict[str, torch.Tensor]:
    return {name: split.index for name, split in data.splits().items()}


def _pixels(split) -> torch.Tensor:
    """The mean colour of each image of a split, rounded to 0..255, shape (N, 3)."""
    x = split.pool().get_inputs(torch.arange(len(split)))
    assert x.dtype == torch.float32 and x.shape[1:] == (3, SIZE, SIZE)
    return torch.round(x.mean(dim=(2, 3)) * 255)


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache holds it")

    monkeypatch.setattr(images_module, "decode_image", refuse)


# --- UTKFace -------------------------------------------------------------------------------

UTK_AGES = {0: (1, 15, 22, 28, 29, 29, 3, 9, 18, 25), 1: (30, 30, 31, 45, 60, 80, 99, 33, 50, 70)}
"""Ten ages per group (29 is young and 30 old at the default threshold)."""


def _utk_colour(race: int, age: int) -> tuple[int, int, int]:
    """Race in red, the default age group in green (JPEG keeps coarse steps only)."""
    return (race * 60, 200 if age >= 30 else 40, 128)


def _write_utkface(folder: Path, layout: str = "flat") -> None:
    """10 faces per (race 0..3, age group), 2 "Others", 2 malformed names."""
    number = 0
    for race in range(4):
        for group in (0, 1):
            for age in UTK_AGES[group]:
                number += 1
                stamp = 20170116174525125 + number
                if layout == "flat":
                    path = folder / f"{age}_{number % 2}_{race}_{stamp}.jpg.chip.jpg"
                else:
                    path = (
                        folder / f"part{number % 3 + 1}" / f"{age}_{number % 2}_{race}_{stamp}.jpg"
                    )
                _save(path, _utk_colour(race, age))
    _save(folder / "40_0_4_20170116174525999.jpg.chip.jpg", (250, 250, 250))
    _save(folder / "20_1_4_20170116174525998.jpg.chip.jpg", (250, 250, 250))
    _save(folder / "39_1_20170116174525125.jpg.chip.jpg", (250, 250, 250))
    _save(folder / "nonsense.jpg", (250, 250, 250))
    (folder / "README.txt").write_text("not an image")
    # macOS archive debris, not images: ignored (they would be corrupt images otherwise)
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "25_0_0_20170116174525125.jpg.chip.jpg").write_bytes(b"\0\5\22")
    (folder / "._25_0_0_20170116174525126.jpg.chip.jpg").write_bytes(b"\0\5\22")


@pytest.fixture(scope="module")
def utk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("utk") / "UTKFace"
    _write_utkface(folder)
    return folder


def _utk(folder: Path, cache: Path, **options) -> FairDataset:
    options = {"validation_fraction": 0.2, "image_size": SIZE, **options}
    with pytest.warns(UserWarning, match="skipped 2 file"):
        return utkface(data_dir=folder, cache_dir=cache, **options)


def _utk_kept_names(folder: Path) -> list[str]:
    """The kept faces' file names in the loader's row order (sorted relative paths)."""
    kept = []
    for path in folder.rglob("*.jpg"):
        if path.name.startswith(".") or "__MACOSX" in path.parts:
            continue
        fields = path.name.split("_")
        if len(fields) >= 4 and fields[2] in "0123":
            kept.append(path.relative_to(folder).as_posix())
    return [name.rsplit("/", 1)[-1] for name in sorted(kept)]


def _check_utk_samples(data: FairDataset, folder: Path, threshold: int = 30) -> None:
    """Each sample's y and z match its file name (through index) and its pixels."""
    names = _utk_kept_names(folder)
    for split in data.splits().values():
        fields = [names[row].split("_") for row in split.index.tolist()]
        assert split.y.tolist() == [int(field[2]) for field in fields]
        assert split.z.tolist() == [int(int(field[0]) >= threshold) for field in fields]
        colour = _pixels(split)
        assert torch.equal(torch.round(colour[:, 0] / 60).long(), split.y)
        ages = torch.tensor([int(field[0]) for field in fields])
        assert torch.equal((colour[:, 1] > 120).long(), (ages >= 30).long())
        assert torch.allclose(colour[:, 2], torch.full_like(colour[:, 2], 128), atol=3)


def test_utkface_labels_groups_filters_and_splits(utk_dir, tmp_path):
    data = _utk(utk_dir, tmp_path)
    assert data.name == "utkface"
    assert data.class_names == ("White", "Black", "Asian", "Indian")
    assert data.group_names == ("young", "old")
    assert data.input_shape == (3, SIZE, SIZE)
    assert (data.eps, data.alpha, data.bounds) == (4 / 255, 2 / 255, (0.0, 1.0))
    assert data.metric == "accuracy" and not data.oversample
    assert all(split.lazy for split in data.splits().values())
    # 80 kept: Others (race 4) and the two malformed names dropped
    assert [len(split) for split in data.splits().values()] == [44, 12, 24]
    rows = torch.cat(list(_all_rows(data).values()))
    assert sorted(rows.tolist()) == list(range(80))
    # stratified by (race, age group): 3 of each 10 in test
    summary = data.summary()
    for group in data.group_names:
        assert set(summary["test"]["per_group_class"][group].values()) == {3}
        assert set(summary["total"]["per_group_class"][group].values()) == {10}
    _check_utk_samples(data, utk_dir)


def test_utkface_age_threshold_boundary_and_option(utk_dir, tmp_path):
    data = _utk(utk_dir, tmp_path)
    _check_utk_samples(data, utk_dir, threshold=30)
    names = _utk_kept_names(utk_dir)
    groups = {}
    for split in data.splits().values():
        for row, group in zip(split.index.tolist(), split.z.tolist(), strict=True):
            groups.setdefault(int(names[row].split("_")[0]), set()).add(group)
    assert groups[29] == {0} and groups[30] == {1}  # the boundary: age < 30 is young
    forty = _utk(utk_dir, tmp_path, age_threshold=40, validation_fraction=0.0)
    _check_utk_samples(forty, utk_dir, threshold=40)
    assert forty.summary()["total"]["per_group"] == {"young": 4 * 14, "old": 4 * 6}
    with pytest.raises(TypeError, match="age_threshold"):
        utkface(data_dir=utk_dir, cache_dir=tmp_path, age_threshold=30.0)
    with pytest.raises(ValueError, match="age_threshold"):
        utkface(data_dir=utk_dir, cache_dir=tmp_path, age_threshold=0)


def test_utkface_malformed_names_are_skipped_with_a_warning_naming_them(utk_dir, tmp_path):
    with pytest.warns(UserWarning) as record:
        utkface(data_dir=utk_dir, cache_dir=tmp_path, image_size=SIZE, validation_fraction=0.2)
    (message,) = [str(w.message) for w in record]
    assert "skipped 2 file(s)" in message
    assert "39_1_20170116174525125.jpg.chip.jpg" in message and "nonsense.jpg" in message


def test_utkface_in_the_wild_layout(tmp_path):
    folder = tmp_path / "wild"
    _write_utkface(folder, layout="parts")
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {
        "part1",
        "part2",
        "part3",
        "__MACOSX",
    }
    data = _utk(folder, tmp_path / "cache")
    assert sum(len(split) for split in data.splits().values()) == 80
    _check_utk_samples(data, folder)


def test_utkface_same_seed_same_splits_other_seed_other_splits(utk_dir, tmp_path):
    first = _utk(utk_dir, tmp_path / "a")
    again = _utk(utk_dir, tmp_path / "b")  # a cold cache: the splits do not come from it
    other = _utk(utk_dir, tmp_path / "a", seed=1)
    for name in ("train", "validation", "test"):
        assert torch.equal(_all_rows(first)[name], _all_rows(again)[name])
        assert torch.equal(first.splits()[name].y, again.splits()[name].y)
    assert not torch.equal(_all_rows(first)["test"], _all_rows(other)["test"])
    # one decoded cache serves every seed
    assert len(list((tmp_path / "a").glob("*.npy"))) == 1


def test_utkface_through_load_dataset(utk_dir, tmp_path):
    with pytest.warns(UserWarning, match="skipped"):
        data = load_dataset(
            "utkface",
            data_dir=str(utk_dir),
            seed=0,
            validation_fraction=0.2,
            test_fraction=0.3,
            cache_dir=tmp_path,
            image_size=SIZE,
            age_threshold=30,
        )
    direct = _utk(utk_dir, tmp_path)
    assert torch.equal(data.test.index, direct.test.index)


# --- the decoded cache ---------------------------------------------------------------------


def test_second_load_decodes_nothing_and_reads_a_memory_map(utk_dir, tmp_path, monkeypatch):
    first = _utk(utk_dir, tmp_path)
    (npy,) = tmp_path.glob("*.npy")
    assert len(list(tmp_path.glob("*.json"))) == 1
    _forbid_decoding(monkeypatch)
    second = _utk(utk_dir, tmp_path)
    source = second.train.x.dataset
    assert isinstance(source.array, np.memmap) and not source.array.flags.writeable
    assert Path(source.array.filename) == npy.resolve()
    for name in ("train", "validation", "test"):
        assert torch.equal(_all_rows(first)[name], _all_rows(second)[name])
        assert torch.equal(_pixels(first.splits()[name]), _pixels(second.splits()[name]))
    # other split options share the decoded images
    _utk(utk_dir, tmp_path, seed=5, test_fraction=0.4, age_threshold=25)


def test_stale_cache_is_rebuilt(utk_dir, tmp_path, monkeypatch):
    folder = tmp_path / "UTKFace"
    shutil.copytree(utk_dir, folder)
    cache = tmp_path / "cache"
    _utk(folder, cache)
    (old_npy,) = cache.glob("*.npy")
    # a file replaced (new content, new size and time): decoded again
    victim = sorted(folder.glob("45_*"))[0]
    _save(victim, _utk_colour(int(victim.name.split("_")[2]), 45), size=(13, 13))
    decoded = []
    original = images_module.decode_image

    def counting(path, size):
        decoded.append(path)
        return original(path, size)

    monkeypatch.setattr(images_module, "decode_image", counting)
    _utk(folder, cache)
    assert len(decoded) == 80
    (new_npy,) = cache.glob("*.npy")  # the old one is removed
    assert new_npy != old_npy
    # a face added: rebuilt, and the new face is there
    decoded.clear()
    _save(folder / "50_0_1_20170116174526000.jpg.chip.jpg", _utk_colour(1, 50))
    data = _utk(folder, cache)
    assert len(decoded) == 81
    assert sum(len(split) for split in data.splits().values()) == 81
    _check_utk_samples(data, folder)
    # unchanged again: nothing decoded
    decoded.clear()
    _utk(folder, cache)
    assert decoded == []


@pytest.mark.parametrize("damage", ["truncate", "manifest", "delete"])
def test_damaged_cache_is_rebuilt(utk_dir, tmp_path, damage):
    # read before the damage: truncating the file in place would pull the pages from under
    # this memory map (SIGBUS); fral itself only ever replaces cache files, never rewrites them
    expected = _pixels(_utk(utk_dir, tmp_path).test)
    (npy,) = tmp_path.glob("*.npy")
    (manifest,) = tmp_path.glob("*.json")
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "manifest":
        manifest.write_text("{not json")
    else:
        npy.unlink()
    with pytest.warns(UserWarning) as record:
        rebuilt = utkface(
            data_dir=utk_dir, cache_dir=tmp_path, image_size=SIZE, validation_fraction=0.2
        )
    messages = " | ".join(str(w.message) for w in record)
    assert "rebuilding" in messages
    assert (manifest if damage == "manifest" else npy).name in messages
    assert torch.equal(expected, _pixels(rebuilt.test))


def test_unwritable_cache_folder_decodes_into_memory_with_a_warning(utk_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning) as record:
        data = utkface(
            data_dir=utk_dir, cache_dir=blocker / "cache", image_size=SIZE, validation_fraction=0.2
        )
    assert any("decoding into memory" in str(w.message) for w in record)
    _check_utk_samples(data, utk_dir)


def test_parallel_decoding_gives_the_same_images(utk_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "_CHUNK", 16)  # several chunks from 80 images
    serial = _utk(utk_dir, tmp_path / "one")
    parallel = _utk(utk_dir, tmp_path / "two", decode_workers=2)
    one = np.load(next((tmp_path / "one").glob("*.npy")))
    two = np.load(next((tmp_path / "two").glob("*.npy")))
    assert np.array_equal(one, two)
    assert torch.equal(serial.test.index, parallel.test.index)
    with pytest.raises(ValueError, match="decode_workers"):
        utkface(data_dir=utk_dir, cache_dir=tmp_path, decode_workers=0)


def test_pixel_values_round_trip_exactly_from_png(tmp_path):
    path = tmp_path / "solid.png"
    _save(path, (10, 200, 255), size=(16, 16))
    image = images_module.decode_image(path, SIZE)
    assert image.dtype == np.uint8 and image.shape == (3, SIZE, SIZE)
    assert (image[0] == 10).all() and (image[1] == 200).all() and (image[2] == 255).all()
    grey = tmp_path / "grey.png"
    _save(grey, 77, size=(SIZE, SIZE), mode="L")
    assert (images_module.decode_image(grey, SIZE) == 77).all()


def test_decoding_refuses_to_pad_truncated_images(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "solid.png"
    _save(path, (1, 2, 3))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        images_module.decode_image(path, SIZE)


# --- errors shared by the loaders ----------------------------------------------------------


@pytest.mark.parametrize("loader", [utkface, cinic10, ham10000])
def test_data_dir_missing_or_not_given(loader, tmp_path):
    with pytest.raises(TypeError, match="data_dir is required"):
        loader(cache_dir=tmp_path)
    with pytest.raises(DatasetNotAvailableError, match=f"{tmp_path / 'absent'} does not exist"):
        loader(data_dir=tmp_path / "absent", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="image_size"):
        loader(data_dir=tmp_path, cache_dir=tmp_path, image_size=8.0)


def test_utkface_empty_folder(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    with pytest.raises(DatasetNotAvailableError, match=f"no UTKFace face found in {tmp_path}"):
        utkface(data_dir=tmp_path / "UTKFace", cache_dir=tmp_path / "cache")


def test_truncated_jpeg_is_an_error_naming_the_file(utk_dir, tmp_path):
    folder = tmp_path / "UTKFace"
    shutil.copytree(utk_dir, folder)
    victim = sorted(folder.glob("31_*"))[0]
    _save(victim, (10, 20, 30), size=(64, 64))
    victim.write_bytes(victim.read_bytes()[:-200])
    with (
        pytest.warns(UserWarning, match="skipped"),
        pytest.raises(CorruptDataFileError, match=victim.name),
    ):
        utkface(data_dir=folder, cache_dir=tmp_path / "cache", image_size=SIZE)
    victim.write_bytes(b"this is not a JPEG")
    with (
        pytest.warns(UserWarning, match="skipped"),
        pytest.raises(CorruptDataFileError, match=victim.name),
    ):
        utkface(data_dir=folder, cache_dir=tmp_path / "cache", image_size=SIZE)
    assert not list((tmp_path / "cache").glob("*.tmp")) and not list(
        (tmp_path / "cache").glob(".*")
    )


# --- CINIC-10 ------------------------------------------------------------------------------


def _cinic_colour(label: int, group: int) -> tuple[int, int, int]:
    return (label * 25, group * 200 + 20, 60)


def _write_cinic(folder: Path) -> None:
    """Per split and class: 2 CIFAR-10 and 2 ImageNet 8x8 PNGs (train has 3 + 3)."""
    for split, count in (("train", 3), ("valid", 2), ("test", 2)):
        for label, name in enumerate(CINIC10_CLASS_NAMES):
            for k in range(count):
                _save(
                    folder / split / name / f"cifar10-{split}-{label * 10 + k}.png",
                    _cinic_colour(label, 0),
                    size=(SIZE, SIZE),
                )
                _save(
                    folder / split / name / f"n0{label}{k}12345_{k}.png",
                    _cinic_colour(label, 1),
                    size=(SIZE, SIZE),
                )
    # a grayscale ImageNet image, as CINIC-10 has some
    _save(folder / "test" / "bird" / "n01530575_99.png", 120, size=(SIZE, SIZE), mode="L")
    (folder / "README.md").write_text("CINIC-10")


@pytest.fixture(scope="module")
def cinic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cinic") / "CINIC-10"
    _write_cinic(folder)
    return folder


def test_cinic10_official_split_labels_domains_and_pixels(cinic_dir, tmp_path):
    data = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE)
    assert data.name == "cinic10" and data.class_names == CINIC10_CLASS_NAMES
    assert data.group_names == ("CIFAR-10", "ImageNet") and data.group_attribute == "domain"
    assert [len(split) for split in data.splits().values()] == [60, 40, 41]
    summary = data.summary()
    assert summary["train"]["per_group"] == {"CIFAR-10": 30, "ImageNet": 30}
    assert summary["test"]["per_class"]["bird"] == 5
    for split in data.splits().values():
        colour = _pixels(split)
        grey = (colour[:, 0] == 120) & (colour[:, 1] == 120) & (colour[:, 2] == 120)
        assert int(grey.sum()) == (1 if split is data.test else 0)
        # PNG is lossless and 8 px is the source size: exact values
        assert torch.equal(colour[~grey, 0], split.y[~grey].float() * 25)
        assert torch.equal(colour[~grey, 1], split.z[~grey].float() * 200 + 20)
        assert int(split.y[grey].sum()) == 2 * len(split.y[grey])  # the grey one is a bird
        assert torch.equal(split.z[grey], torch.ones_like(split.z[grey]))
    # the floats themselves: exactly uint8 / 255 in float32, every pixel
    x = data.train.pool().get_inputs(torch.arange(len(data.train)))
    red = (data.train.y * 25).to(torch.float32) / 255
    green = (data.train.z * 200 + 20).to(torch.float32) / 255
    assert torch.equal(x[:, 0], red[:, None, None].expand(-1, SIZE, SIZE))
    assert torch.equal(x[:, 1], green[:, None, None].expand(-1, SIZE, SIZE))
    assert torch.equal(x[:, 2], torch.full_like(x[:, 2], 60 / 255))


def test_cinic10_resizes_when_asked(cinic_dir, tmp_path):
    data = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=4)
    assert data.input_shape == (3, 4, 4)
    assert data.train.pool().get_inputs(torch.arange(3)).shape == (3, 3, 4, 4)


def test_cinic10_seed_orders_and_validation_fraction(cinic_dir, tmp_path, monkeypatch):
    first = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE)
    _forbid_decoding(monkeypatch)
    again = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE)
    other = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE, seed=1)
    for name in ("train", "validation", "test"):
        assert torch.equal(_all_rows(first)[name], _all_rows(again)[name])
        # the official split: the same samples whatever the seed, in another order
        assert sorted(_all_rows(first)[name].tolist()) == sorted(_all_rows(other)[name].tolist())
    assert not torch.equal(_all_rows(first)["train"], _all_rows(other)["train"])
    half = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE, validation_fraction=0.5)
    assert len(half.validation) == 20
    assert set(half.validation.index.tolist()) <= set(first.validation.index.tolist())
    assert half.summary()["validation"]["per_group"] == {"CIFAR-10": 10, "ImageNet": 10}
    none = cinic10(data_dir=cinic_dir, cache_dir=tmp_path, image_size=SIZE, validation_fraction=0)
    assert len(none.validation) == 0 and len(none.train) == 60
    with pytest.raises(ValueError, match="validation_fraction"):
        cinic10(data_dir=cinic_dir, cache_dir=tmp_path, validation_fraction=1.5)
    with pytest.raises(ValueError, match="test_fraction does not apply"):
        cinic10(data_dir=cinic_dir, cache_dir=tmp_path, test_fraction=0.3)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("unknown_class", "folder {root}/train/airplanes is not a CINIC-10 class"),
        ("missing_split", "folder {root}/valid is missing"),
        ("empty_class", "class folder {root}/test/frog holds no .png image"),
        ("missing_class", "folder {root}/train lacks the class folder.s. ship"),
    ],
)
def test_cinic10_layout_errors_name_the_folder(cinic_dir, tmp_path, damage, message):
    root = tmp_path / "CINIC-10"
    shutil.copytree(cinic_dir, root)
    if damage == "unknown_class":
        (root / "train" / "airplanes").mkdir()
    elif damage == "missing_split":
        shutil.rmtree(root / "valid")
    elif damage == "empty_class":
        for path in (root / "test" / "frog").iterdir():
            path.unlink()
    else:
        shutil.rmtree(root / "train" / "ship")
    with pytest.raises(DatasetNotAvailableError, match=message.format(root=root)):
        cinic10(data_dir=root, cache_dir=tmp_path / "cache")


def test_cinic10_corrupt_png_names_the_file(cinic_dir, tmp_path):
    root = tmp_path / "CINIC-10"
    shutil.copytree(cinic_dir, root)
    victim = root / "valid" / "cat" / "cifar10-valid-30.png"
    victim.write_bytes(victim.read_bytes()[:30])
    with pytest.raises(CorruptDataFileError, match="cifar10-valid-30.png"):
        cinic10(data_dir=root, cache_dir=tmp_path / "cache", image_size=SIZE)


# --- HAM-10000 -----------------------------------------------------------------------------

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]


def _ham_colour(label: int, group: int) -> tuple[int, int, int]:
    return (label * 30, group * 150 + 50, 90)


def _write_ham(folder: Path) -> list[list[str]]:
    """10 lesions per (dx, sex), one with a duplicate image; 2 unknown-sex and 1 empty-sex
    lesions; images split over two folders. Returns the CSV rows (header first)."""
    rows = [HAM_HEADER]
    number = 0
    for label, dx in enumerate(HAM10000_CLASS_NAMES):
        for group, sex in enumerate(("female", "male")):
            for k in range(10):
                number += 1
                lesion = f"HAM_{number:07d}"
                image = f"ISIC_{1000000 + 10 * number:07d}"
                rows.append([lesion, image, dx, "histo", "45.0", sex, "back"])
                _save(
                    folder / f"HAM10000_images_part_{number % 2 + 1}" / f"{image}.jpg",
                    _ham_colour(label, group),
                )
                if k == 0:  # a second image of the same lesion, with a larger image_id
                    duplicate = f"ISIC_{1000000 + 10 * number + 5:07d}"
                    rows.append([lesion, duplicate, dx, "histo", "45.0", sex, "back"])
                    _save(folder / "HAM10000_images_part_2" / f"{duplicate}.jpg", (255, 0, 255))
    for k, sex in enumerate(("unknown", "unknown", "")):
        image = f"ISIC_{2000000 + k:07d}"
        rows.append([f"HAM_{9000000 + k:07d}", image, "nv", "consensus", "", sex, "unknown"])
        _save(folder / "HAM10000_images_part_1" / f"{image}.jpg", (255, 0, 255))
    # rows in a shuffled order: the kept image must not depend on it
    order = np.random.default_rng(0).permutation(len(rows) - 1) + 1
    rows = [rows[0]] + [rows[i] for i in order]
    _write_csv(folder / "HAM10000_metadata.csv", rows)
    return rows


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def ham_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ham") / "HAM10000"
    _write_ham(folder)
    return folder


def _ham(folder: Path, cache: Path, **options) -> FairDataset:
    return ham10000(
        data_dir=folder,
        cache_dir=cache,
        **{"image_size": SIZE, "validation_fraction": 0.2, **options},
    )


def test_ham10000_filters_labels_groups_and_splits(ham_dir, tmp_path):
    data = _ham(ham_dir, tmp_path)
    assert data.name == "ham10000" and data.class_names == HAM10000_CLASS_NAMES
    assert data.group_names == ("female", "male") and data.group_attribute == "sex"
    assert data.metric == "f1" and data.oversample
    # 140 lesions of known sex: duplicates (magenta) and unknown/empty sex dropped
    assert [len(split) for split in data.splits().values()] == [78, 20, 42]
    summary = data.summary()
    for group in data.group_names:
        assert set(summary["total"]["per_group_class"][group].values()) == {10}
        assert set(summary["test"]["per_group_class"][group].values()) == {3}
    for split in data.splits().values():
        colour = _pixels(split)
        assert torch.allclose(colour[:, 0], split.y.float() * 30, atol=3)
        assert torch.allclose(colour[:, 1], split.z.float() * 150 + 50, atol=3)


def test_ham10000_seed_determinism_and_cache(ham_dir, tmp_path, monkeypatch):
    first = _ham(ham_dir, tmp_path)
    _forbid_decoding(monkeypatch)
    again = _ham(ham_dir, tmp_path)
    other = _ham(ham_dir, tmp_path, seed=2)
    assert torch.equal(first.test.index, again.test.index)
    assert not torch.equal(first.test.index, other.test.index)


def test_ham10000_csv_change_makes_the_cache_stale(ham_dir, tmp_path):
    folder = tmp_path / "HAM10000"
    shutil.copytree(ham_dir, folder)
    _ham(folder, tmp_path / "cache")
    csv_path = folder / "HAM10000_metadata.csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    target = next(i for i, row in enumerate(rows) if row[5] == "male")
    rows[target][5] = "unknown"
    _write_csv(csv_path, rows)
    os.utime(csv_path, ns=(1, 1))
    assert sum(len(split) for split in _ham(folder, tmp_path / "cache").splits().values()) == 139


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        ("drop_sex_column", CorruptDataFileError, "HAM10000_metadata.csv lacks the column.s. sex"),
        ("bad_dx", CorruptDataFileError, r"HAM10000_metadata.csv, line \d+: dx 'melanoma'"),
        ("missing_image", DatasetNotAvailableError, "no image file for 1 image_id.s. .*ISIC_"),
        ("no_csv", DatasetNotAvailableError, "no HAM10000_metadata.csv in"),
        ("corrupt_image", CorruptDataFileError, "cannot decode the image .*ISIC_"),
        ("twice", CorruptDataFileError, r"image_id ISIC_\d+ is listed twice"),
    ],
)
def test_ham10000_errors_name_the_file(ham_dir, tmp_path, edit, error, message):
    folder = tmp_path / "HAM10000"
    shutil.copytree(ham_dir, folder)
    csv_path = folder / "HAM10000_metadata.csv"
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = next(row for row in rows[1:] if row[5] == "female")
    image = next(folder.rglob(f"{kept[1]}.jpg"))
    if edit == "drop_sex_column":
        _write_csv(csv_path, [row[:5] + row[6:] for row in rows])
    elif edit == "bad_dx":
        kept[2] = "melanoma"
        _write_csv(csv_path, rows)
    elif edit == "missing_image":
        image.unlink()
    elif edit == "no_csv":
        csv_path.unlink()
    elif edit == "corrupt_image":
        image.write_bytes(image.read_bytes()[:100])
    else:
        _write_csv(csv_path, [*rows, list(kept)])
    with pytest.raises(error, match=message) as caught:
        _ham(folder, tmp_path / "cache")
    if edit in ("missing_image", "corrupt_image"):
        assert kept[1] in str(caught.value)


def test_ham10000_keeps_the_smallest_image_id_of_a_lesion(tmp_path):
    folder = tmp_path / "HAM10000"
    rows = [HAM_HEADER]
    for number in range(56):
        dx = HAM10000_CLASS_NAMES[number % 7]
        sex = ("female", "male")[number // 7 % 2]
        rows.append([f"HAM_{number}", f"ISIC_{number + 100}", dx, "histo", "30", sex, "face"])
        _save(folder / "images" / f"ISIC_{number + 100}.jpg", _ham_colour(number % 7, 0))
    # lesion 0 has a second image with a SMALLER id listed after it: that one is kept
    rows.append(["HAM_0", "ISIC_0001", "akiec", "histo", "30", "female", "face"])
    _save(folder / "images" / "ISIC_0001.jpg", (255, 255, 255))
    _write_csv(folder / "HAM10000_metadata.csv", rows)
    data = ham10000(
        data_dir=folder, cache_dir=tmp_path / "cache", image_size=SIZE, validation_fraction=0
    )
    assert sum(len(split) for split in data.splits().values()) == 56
    whites = [
        int(split.index[(_pixels(split) > 250).all(dim=1)].numel())
        for split in data.splits().values()
    ]
    assert sum(whites) == 1


# --- through the loop ----------------------------------------------------------------------


def test_ham10000_runs_through_the_loop_lazily(ham_dir, tmp_path, one_torch_thread):
    """The lazy memory-mapped splits, macro-F1 and oversampling in one short FRAL run."""
    from fral.loop import run_experiment
    from fral.models import SmallCNN
    from fral.training import TrainConfig

    data = _ham(ham_dir, tmp_path)
    torch.manual_seed(0)
    result = run_experiment(
        "JIN",
        data,
        model_fn=lambda: SmallCNN(7, 3, channels=(4, 8)),
        rounds=1,
        budget_fraction=0.1,
        train=TrainConfig(epochs=1, batch_size=16, lr=0.05, warmup_epochs=0, steps=1),
        standard=TrainConfig(epochs=1, batch_size=16, adversarial=False, warmup_epochs=0),
    )
    assert len(result.history) == 2
    assert "clean_f1_worst" in result.history[-1]["test"]["summary"]
    assert result.labeled.numel() == round(0.2 * len(data.train)) + round(0.1 * len(data.train))
    assert set(result.labeled.tolist()) <= set(range(len(data.train)))
    assert data.train.x.dataset.array.flags.writeable is False  # still the read-only map
