"""fral.datasets: offline loaders, seeded stratified splits, the .npz cache, clear errors."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import fral.datasets._adult as adult_module
import fral.datasets._digits as digits_module
import fral.datasets._embedded as embedded
from fral.datasets import (
    DATASETS,
    FairDataset,
    Split,
    adult,
    default_cache_dir,
    digits_domains,
    load_dataset,
)
from fral.pool import Pool


def _refuse_network(*args, **kwargs):
    raise AssertionError("fral.datasets tried to use the network")


@contextlib.contextmanager
def _network_blocked() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse_network)
        patch.setattr(socket.socket, "connect_ex", _refuse_network)
        patch.setattr(socket, "create_connection", _refuse_network)
        yield


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with _network_blocked():
        yield


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the default digits_domains splits (built once per module)."""
    folder = tmp_path_factory.mktemp("digits-cache")
    with _network_blocked():
        digits_domains(cache_dir=folder)
    return folder


@pytest.fixture(scope="module")
def digits(digits_cache: Path) -> FairDataset:
    with _network_blocked():
        return digits_domains(cache_dir=digits_cache)


@pytest.fixture(scope="module")
def adult_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the default adult splits (built once per module)."""
    folder = tmp_path_factory.mktemp("adult-cache")
    with _network_blocked():
        adult(cache_dir=folder)
    return folder


@pytest.fixture(scope="module")
def adult_sex(adult_cache: Path) -> FairDataset:
    with _network_blocked():
        return adult(cache_dir=adult_cache)


@pytest.fixture
def warm_cache(digits_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the digits cache, for tests that damage it."""
    folder = tmp_path / "warm"
    shutil.copytree(digits_cache, folder)
    return folder


def _embedded_arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(embedded.DATA_DIR / name, allow_pickle=False) as archive:
        return {member: archive[member] for member in archive.files}


def _adult_file_rows() -> tuple[list[list[str]], int]:
    """Records of both raw Adult files, decoded here from the embedded file's columns.

    Returns the kept rows (label without adult.test's ".") and the count of rows dropped for
    a "?". Numbers stay strings, as in the files.
    """
    arrays = _embedded_arrays("adult.npz")
    columns = []
    for name in adult_module.ADULT_COLUMNS:
        if f"{name}.codes" in arrays:
            columns.append(
                [str(arrays[f"{name}.values"][code]) for code in arrays[f"{name}.codes"]]
            )
        else:
            columns.append([str(value) for value in arrays[name].tolist()])
    records = [list(row) for row in zip(*columns, strict=True)]
    assert len(records) == int(arrays["rows_per_file"].sum()) == 48842
    kept = [[*row[:-1], row[-1].rstrip(".")] for row in records if "?" not in row]
    return kept, len(records) - len(kept)


def _all_splits(dataset: FairDataset) -> list[Split]:
    return [dataset.train, dataset.validation, dataset.test]


def _assert_same(first: FairDataset, second: FairDataset) -> None:
    for a, b in zip(_all_splits(first), _all_splits(second), strict=True):
        for name in ("x", "y", "z", "index"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_network_is_blocked_in_these_tests():
    with pytest.raises(AssertionError, match="network"):
        socket.create_connection(("example.org", 80))


def test_digits_shapes_dtypes_and_ranges(digits):
    assert digits.name == "digits_domains"
    assert digits.input_shape == (1, 28, 28)
    assert (digits.num_classes, digits.num_groups) == (10, 2)
    assert digits.group_names == ("MNIST", "UCI optdigits")
    assert (digits.eps, digits.alpha, digits.bounds) == (4 / 255, 2 / 255, (0.0, 1.0))
    for split in _all_splits(digits):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 28, 28)
        assert split.y.dtype == torch.int64 and split.z.dtype == torch.int64
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
        assert set(split.y.tolist()) == set(range(10))
        assert set(split.z.tolist()) == {0, 1}
    assert float(digits.train.x.max()) == 1.0


def test_digits_groups_are_the_two_sources(digits):
    index = torch.cat([s.index for s in _all_splits(digits)])
    groups = torch.cat([s.z for s in _all_splits(digits)])
    mnist = _embedded_arrays("mnist_5k.npz")
    mnist_rows = len(mnist["labels"])
    first_rows = [
        [*mnist["images"][row].reshape(-1).tolist(), int(mnist["labels"][row])]
        for row in (0, 1, 4999)
    ]
    uci = load_digits()
    assert int((groups == 0).sum()) == mnist_rows == 5000
    assert int((groups == 1).sum()) == len(uci.target) == 1797
    assert torch.equal(index[groups == 0].sort().values, torch.arange(mnist_rows))
    assert torch.equal(
        index[groups == 1].sort().values, torch.arange(mnist_rows, mnist_rows + 1797)
    )

    x = torch.cat([s.x for s in _all_splits(digits)])
    y = torch.cat([s.y for s in _all_splits(digits)])
    position = torch.empty_like(index)
    position[index] = torch.arange(len(index))
    for row_number, row in zip((0, 1, 4999), first_rows, strict=True):
        at = position[row_number]
        expected = torch.tensor(row[:-1], dtype=torch.float32).reshape(1, 28, 28) / 255
        assert torch.equal(x[at], expected) and int(y[at]) == row[-1]
    for image_number in (0, 1, 1796):
        at = position[mnist_rows + image_number]
        canvas, source = x[at, 0], torch.tensor(uci.images[image_number]) / 16
        assert int(y[at]) == int(uci.target[image_number])
        # a 4-pixel empty frame around the 20x20 box, whose corners are the 8x8 corners
        assert canvas[:4].abs().sum() == 0 and canvas[24:].abs().sum() == 0
        assert canvas[:, :4].abs().sum() == 0 and canvas[:, 24:].abs().sum() == 0
        torch.testing.assert_close(canvas[4, 4], source[0, 0].float())
        torch.testing.assert_close(canvas[23, 23], source[7, 7].float())
        torch.testing.assert_close(canvas[4, 23], source[0, 7].float())
        assert float(canvas[4:24, 4:24].sum()) > 0


def test_adult_shapes_dtypes_and_group_counts(adult_sex):
    rows, dropped = _adult_file_rows()
    assert dropped > 0
    assert adult_sex.name == "adult" and adult_sex.group_attribute == "sex"
    assert (adult_sex.num_classes, adult_sex.num_groups) == (2, 2)
    assert adult_sex.group_names == ("Female", "Male")
    assert adult_sex.bounds is None and adult_sex.eps > adult_sex.alpha > 0
    d = len(adult_sex.feature_names)
    assert adult_sex.input_shape == (d,)
    for split in _all_splits(adult_sex):
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (d,)
        assert torch.isfinite(split.x).all()
        assert set(split.y.tolist()) == {0, 1} and set(split.z.tolist()) == {0, 1}

    summary = adult_sex.summary()
    assert summary["total"]["samples"] == len(rows)
    sex = [row[9] for row in rows]
    assert summary["total"]["per_group"] == {
        "Female": sex.count("Female"),
        "Male": sex.count("Male"),
    }
    rich = sum(row[-1].rstrip(".") == ">50K" for row in rows)
    assert summary["total"]["per_class"] == {"<=50K": len(rows) - rich, ">50K": rich}


def test_adult_race_groups(tmp_path):
    rows, _ = _adult_file_rows()
    race = adult(group="race", cache_dir=tmp_path)
    assert race.num_groups == 5 and race.group_attribute == "race"
    assert race.group_names[0] == "White"
    per_group = race.summary()["total"]["per_group"]
    assert per_group == {name: [row[8] for row in rows].count(name) for name in race.group_names}
    assert not any(name.startswith("race=") for name in race.feature_names)
    assert any(name.startswith("sex=") for name in race.feature_names)


def test_adult_sensitive_columns_excluded_unless_asked(adult_sex, tmp_path):
    assert not any(name.startswith("sex=") for name in adult_sex.feature_names)
    assert any(name.startswith("race=") for name in adult_sex.feature_names)
    with_sex = adult(include_sensitive=True, cache_dir=tmp_path)
    names = list(with_sex.feature_names)
    assert len(names) == len(adult_sex.feature_names) + 2
    for split in _all_splits(with_sex):
        male = split.x[:, names.index("sex=Male")]
        female = split.x[:, names.index("sex=Female")]
        assert torch.equal(male, (split.z == 1).float())
        assert torch.equal(female, (split.z == 0).float())


def test_adult_standardised_with_train_statistics_only(adult_sex):
    rows, _ = _adult_file_rows()
    names = list(adult_sex.feature_names)
    numeric = {"age": 0, "education-num": 4, "capital-gain": 10, "hours-per-week": 12}
    raw = {
        name: torch.tensor([float(row[column]) for row in rows], dtype=torch.float64)
        for name, column in numeric.items()
    }
    raw["capital-gain"] = torch.log1p(raw["capital-gain"])
    train = adult_sex.train
    for name, values in raw.items():
        column = train.x[:, names.index(name)].double()
        assert abs(float(column.mean())) < 1e-4 and abs(float(column.std(correction=0)) - 1) < 1e-4
        train_values = values[train.index]
        mean, std = train_values.mean(), train_values.std(correction=0)
        for split in _all_splits(adult_sex):
            expected = ((values[split.index] - mean) / std).float()
            torch.testing.assert_close(split.x[:, names.index(name)], expected)
    # the test split on its own is not centred: its statistics were not used
    test_age = adult_sex.test.x[:, names.index("age")].double()
    assert abs(float(test_age.mean())) > 1e-4


@pytest.mark.parametrize("name", ["digits", "adult_sex"])
def test_split_proportions_and_stratification(name, request):
    dataset: FairDataset = request.getfixturevalue(name)
    splits = _all_splits(dataset)
    total = sum(len(s) for s in splits)
    index = torch.cat([s.index for s in splits])
    assert torch.equal(index.sort().values, torch.arange(total)), "splits overlap or miss rows"
    assert abs(len(dataset.test) - 0.3 * total) <= 1
    train_part = len(dataset.train) + len(dataset.validation)
    assert abs(len(dataset.validation) - 0.1 * train_part) <= 1

    joint = {split: dataset._joint_counts(s.y, s.z) for split, s in dataset.splits().items()}
    overall = sum(joint.values())
    assert (overall > 0).all()
    assert np.abs(joint["test"] - 0.3 * overall).max() <= 2
    assert np.abs(joint["validation"] - 0.1 * (joint["train"] + joint["validation"])).max() <= 2


def test_same_seed_identical_other_seed_different(digits, tmp_path):
    rebuilt = digits_domains(seed=0, cache_dir=tmp_path / "cold")
    _assert_same(digits, rebuilt)
    other = digits_domains(seed=1, cache_dir=tmp_path / "cold")
    assert not torch.equal(other.train.index, digits.train.index)
    assert not torch.equal(other.test.index.sort().values, digits.test.index.sort().values)
    assert len(list((tmp_path / "cold").glob("*.npz"))) == 2


def test_validation_fraction_is_a_parameter(tmp_path):
    none = digits_domains(validation_fraction=0.0, cache_dir=tmp_path)
    assert len(none.validation) == 0 and len(none.validation.pool()) == 0
    # equal options spelled differently share one cache file
    digits_domains(seed=np.int64(0), validation_fraction=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert none.summary()["validation"]["samples"] == 0
    fifth = digits_domains(validation_fraction=0.2, cache_dir=tmp_path)
    assert len(fifth.test) == len(none.test)
    assert abs(len(fifth.validation) - 0.2 * len(none.train)) <= 1
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="validation_fraction"):
            digits_domains(validation_fraction=bad, cache_dir=tmp_path)


def test_cache_round_trip_reads_the_npz(tmp_path, monkeypatch):
    first_digits = digits_domains(cache_dir=tmp_path)
    first_adult = adult(cache_dir=tmp_path)
    files = sorted(path.name for path in tmp_path.iterdir())
    assert len(files) == 2 and all(name.endswith(".npz") for name in files), files

    def broken():
        raise AssertionError("raw files read although the cache holds the data")

    monkeypatch.setattr(digits_module, "_raw_digits", broken)
    monkeypatch.setattr(adult_module, "_raw_adult", broken)
    _assert_same(first_digits, digits_domains(cache_dir=tmp_path))
    cached_adult = adult(cache_dir=tmp_path)
    _assert_same(first_adult, cached_adult)
    assert cached_adult.feature_names == first_adult.feature_names
    with pytest.raises(AssertionError, match="raw files read"):
        digits_domains(seed=3, cache_dir=tmp_path)


def test_cache_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAL_DATA_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    adult(cache_dir=None)
    assert len(list((tmp_path / "env").glob("adult-*.npz"))) == 1
    monkeypatch.delenv("FRAL_DATA_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "fral"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_is_rebuilt(digits, warm_cache, damage, monkeypatch):
    (path,) = warm_cache.glob("*.npz")
    content = path.read_bytes()
    damaged = {
        "garbage": b"not a zip archive" * 100,
        "truncated": content[: len(content) // 2],
        "empty": b"",
    }[damage]
    path.write_bytes(damaged)
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = digits_domains(cache_dir=warm_cache)
    _assert_same(digits, rebuilt)
    assert path.read_bytes() != damaged
    assert [p.name for p in warm_cache.iterdir()] == [path.name], "temporary file left behind"

    def broken():
        raise AssertionError("raw files read although the cache was rebuilt")

    monkeypatch.setattr(digits_module, "_raw_digits", broken)
    _assert_same(digits, digits_domains(cache_dir=warm_cache))


def test_cache_file_for_other_options_is_rebuilt(digits, warm_cache):
    (path,) = warm_cache.glob("*.npz")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["cache_key"] = np.array(json.dumps({"name": "digits_domains", "seed": 99}))
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.warns(UserWarning, match="other options"):
        _assert_same(digits, digits_domains(cache_dir=warm_cache))


def test_registry_and_load_dataset(adult_sex, adult_cache, tmp_path):
    assert set(DATASETS) == {"digits_domains", "adult", "utkface", "cinic10", "ham10000"}
    loaded = load_dataset("adult", seed=0, cache_dir=adult_cache)
    _assert_same(adult_sex, loaded)
    with pytest.raises(ValueError, match=r"unknown data set 'cifar10'.*adult.*digits_domains"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="group"):
        load_dataset("adult", group="age", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        load_dataset("digits_domains", seed=-1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("digits_domains", test_fraction=0.0, cache_dir=tmp_path)


def test_split_pool_and_summary(digits):
    pool = digits.train.pool()
    assert isinstance(pool, Pool) and len(pool) == len(digits.train)
    assert pool.num_groups == 2 and torch.equal(pool.labels, digits.train.y)
    assert torch.equal(pool.groups, digits.train.z)
    assert digits.test.pool(labeled=False).labels is None

    summary = json.loads(json.dumps(digits.summary()))
    assert summary["total"]["per_group"] == {"MNIST": 5000, "UCI optdigits": 1797}
    assert summary["total"]["per_group_class"]["MNIST"] == {str(c): 500 for c in range(10)}
    for name, split in digits.splits().items():
        assert summary[name]["samples"] == len(split)
        assert sum(summary[name]["per_class"].values()) == len(split)
        assert list(summary[name]["per_group"].values()) == split.pool().group_counts().tolist()


def test_split_rejects_mismatched_tensors():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="y has shape"):
        Split(x, torch.zeros(3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="z must be an int64"):
        Split(x, torch.zeros(4, dtype=torch.int64), torch.zeros(4))


def _tiny_dataset(**threat: float | None) -> FairDataset:
    split = Split(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 0]))
    return FairDataset(
        "tiny",
        split,
        split,
        split,
        num_classes=2,
        num_groups=1,
        group_names=("all",),
        class_names=("a", "b"),
        input_shape=(3,),
        **threat,
    )


def test_alpha_defaults_to_half_of_eps():
    assert _tiny_dataset().alpha == 2 / 255
    assert _tiny_dataset(eps=8 / 255).alpha == 4 / 255
    assert _tiny_dataset(eps=0.3).alpha == 0.15
    assert _tiny_dataset(eps=8 / 255, alpha=1 / 255).alpha == 1 / 255
    assert _tiny_dataset(eps=8 / 255, alpha=None).alpha == 4 / 255
    stronger = dataclasses.replace(_tiny_dataset(), eps=16 / 255)
    assert stronger.alpha == 2 / 255, "replace keeps the old alpha"
    assert dataclasses.replace(stronger, alpha=None).alpha == 8 / 255
