"""fral.datasets.load_npz: a user's data set file, its threat model kept, every error naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fral.datasets import load_npz

N = 120


def tabular(**extra):
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=(N, 5)),
        "y": rng.integers(0, 2, N),
        "group": np.arange(N) % 2,
        **extra,
    }


def images(**extra):
    rng = np.random.default_rng(1)
    return {
        "x": rng.integers(0, 256, size=(N, 3, 6, 6), dtype=np.uint8),
        "y": np.arange(N) % 3,
        "group": (np.arange(N) // 3) % 2,
        **extra,
    }


def test_a_tabular_file_keeps_its_threat_model_names_and_split(tmp_path) -> None:
    path = tmp_path / "bank.npz"
    rows = np.arange(N)
    np.savez(
        path,
        **tabular(
            eps=0.25,
            alpha=0.1,
            bounds=[np.nan, np.nan],
            class_names=np.array(["no", "yes"]),
            group_names=np.array(["f", "m"]),
            feature_names=np.array(list("abcde")),
            train=rows[:70],
            validation=rows[70:80],
            test=rows[80:],
            name="my bank",
            metric="f1",
            oversample=True,
            group_attribute="sex",
        ),
    )
    data = load_npz(path)
    assert (data.name, data.eps, data.alpha, data.bounds) == ("my bank", 0.25, 0.1, None)
    assert data.class_names == ("no", "yes") and data.group_names == ("f", "m")
    assert data.feature_names == tuple("abcde") and data.group_attribute == "sex"
    assert data.metric == "f1" and data.oversample is True
    assert data.train.index.tolist() == list(range(70))
    assert data.test.index.tolist() == list(range(80, N))
    expected = torch.from_numpy(np.load(path)["x"][:70]).float()
    assert torch.equal(data.train.x, expected)


def test_defaults_are_from_arrays_defaults_and_the_name_is_the_stem(tmp_path) -> None:
    path = tmp_path / "faces.npz"
    np.savez(path, **images())
    data = load_npz(path, seed=3)
    assert data.name == "faces" and data.bounds == (0.0, 1.0)
    assert data.eps == pytest.approx(4 / 255) and data.alpha == pytest.approx(2 / 255)
    assert data.input_shape == (3, 6, 6)
    again = load_npz(path, seed=3)
    assert torch.equal(data.train.index, again.train.index)
    assert not torch.equal(data.train.index, load_npz(path, seed=4).train.index)


def test_uncompressed_uint8_images_stay_on_disk_compressed_ones_load(tmp_path) -> None:
    arrays = images()
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "packed.npz", **arrays)
    plain, packed = load_npz(tmp_path / "plain.npz"), load_npz(tmp_path / "packed.npz")
    assert isinstance(plain.train.x.dataset.array, np.memmap)
    assert not plain.train.x.dataset.array.flags.writeable
    assert not isinstance(packed.train.x.dataset.array, np.memmap)
    rows = torch.arange(len(plain.train))
    expected = torch.from_numpy(arrays["x"][plain.train.index.numpy()]).float() / 255
    assert torch.equal(plain.train.x.get_batch(rows), expected)
    assert torch.equal(packed.train.x.get_batch(rows), expected)


BAD = [
    ({"y": None}, "no member 'y'"),
    ({"groups": np.zeros(N, dtype=np.int64)}, "unknown member(s) 'groups'"),
    ({"class_names": np.array(["a", 1], dtype=object)}, "member 'class_names' is an object array"),
    ({"class_names": np.array([0, 1])}, "class_names must be a 1-D str array"),
    ({"eps": np.array([0.1, 0.2])}, "eps must be a single number"),
    ({"eps": -1.0}, "eps must be finite and >= 0"),
    ({"bounds": np.array([0.0, 1.0, 2.0])}, "bounds must be 2 numbers"),
    ({"bounds": np.array([np.nan, 1.0])}, "or [nan, nan] for unbounded"),
    ({"bounds": np.array([2.0, 3.0])}, "outside bounds=(2.0, 3.0)"),
    ({"bounds": None}, "the file has no bounds member, so bounds is [0, 1]"),
    ({"y": np.zeros(N - 1, dtype=np.int64)}, "y has 119 entries, x has 120 samples"),
    ({"y": np.zeros(N)}, "y must hold integers"),
    ({"group": -np.ones(N, dtype=np.int64)}, "groups must be non-negative ids"),
    ({"train": np.arange(10)}, 'splits must have keys "train", "test"'),
    ({"name": np.array(["a", "b"])}, "name must be a single str"),
    ({"oversample": 1}, "oversample must be a single bool"),
    ({"metric": "auc"}, 'metric must be "accuracy" or "f1"'),
]


@pytest.mark.parametrize(("change", "needle"), BAD)
def test_every_malformed_file_is_an_error_naming_it(tmp_path, change, needle) -> None:
    unbounded = tabular(bounds=np.array([np.nan, np.nan]))
    arrays = {k: v for k, v in {**unbounded, **change}.items() if v is not None}
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises((TypeError, ValueError, IndexError)) as error:
        load_npz(path)
    assert str(error.value).startswith(f"{path}: ") and needle in str(error.value)


def test_channels_last_images_are_refused_with_the_fix(tmp_path) -> None:
    path = tmp_path / "hwc.npz"
    arrays = images()
    np.savez(path, **{**arrays, "x": arrays["x"].transpose(0, 2, 3, 1).copy()[:, :, :5]})
    with pytest.raises(ValueError, match=r"looks like \(N, H, W, C\).*transpose\(0, 3, 1, 2\)"):
        load_npz(path)


def test_a_missing_or_foreign_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.npz: no such data set file"):
        load_npz(tmp_path / "nothing.npz")
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match=f"{text}: not a readable .npz file"):
        load_npz(text)
    single = tmp_path / "x.npy"
    np.save(single, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=f"{single}: holds a single array"):
        load_npz(single)
