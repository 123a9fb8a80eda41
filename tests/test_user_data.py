"""A user's own data: FairDataset.from_arrays / from_dataset, UInt8Images, lazy Dataset inputs.

The Dataset-backed path must give the same picks and metrics as the in-memory path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from fral import PGD, Pool, evaluate, run_experiment
from fral.datasets import FairDataset, Split, UInt8Images
from fral.loop import strategy_for
from fral.pool import Rows
from fral.run_folder import data_fingerprint, inputs_digest
from fral.strategies import STRATEGIES
from fral.training import TrainConfig


def tabular(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, n)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)) + y[:, None] * 0.8 + groups[:, None] * 0.3
    return x, y, groups


def images(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    groups = rng.integers(0, 2, n)
    x = rng.integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8)
    return x, y, groups


class Mlp(nn.Module):
    def __init__(self, inputs: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Linear(16, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Triples(Dataset):
    """A user's dataset of (x, y, group) items, counting its reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor) -> None:
        self.x, self.y, self.groups = x, y, groups
        self.reads = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        self.reads += 1
        return self.x[index], int(self.y[index]), int(self.groups[index])


# -- from_arrays -------------------------------------------------------------------------------
def test_from_arrays_splits_like_the_built_in_loaders():
    x, y, groups = tabular()
    data = FairDataset.from_arrays(x, y, groups, bounds=None, eps=0.1, name="mine")
    assert data.name == "mine"
    assert (len(data.train), len(data.validation), len(data.test)) == (151, 17, 72)
    assert data.train.x.dtype == torch.float32 and data.input_shape == (6,)
    assert data.alpha == pytest.approx(0.05) and data.bounds is None
    assert data.class_names == ("0", "1", "2") and data.group_names == ("group 0", "group 1")
    rows = torch.cat([data.train.index, data.validation.index, data.test.index])
    assert sorted(rows.tolist()) == list(range(240))
    for split in data.splits().values():
        torch.testing.assert_close(split.x, torch.from_numpy(x[split.index.numpy()]).float())
        assert split.y.tolist() == y[split.index.numpy()].tolist()
        assert split.z.tolist() == groups[split.index.numpy()].tolist()
    # stratified by (class, group): each stratum's test share is close to 30%
    strata = y * 2 + groups
    test_strata = strata[data.test.index.numpy()]
    for stratum in range(6):
        share = (test_strata == stratum).sum() / (strata == stratum).sum()
        assert 0.2 < share < 0.4


def test_from_arrays_is_seeded():
    x, y, groups = tabular()
    first = FairDataset.from_arrays(x, y, groups, bounds=None, seed=3)
    again = FairDataset.from_arrays(x, y, groups, bounds=None, seed=3)
    other = FairDataset.from_arrays(x, y, groups, bounds=None, seed=4)
    assert torch.equal(first.train.index, again.train.index)
    assert not torch.equal(first.train.index, other.train.index)


def test_from_arrays_takes_the_users_split_names_and_torch_tensors():
    x, y, groups = tabular(40)
    splits = {"train": np.arange(0, 20), "test": np.arange(30, 40)}
    data = FairDataset.from_arrays(
        torch.from_numpy(x),
        torch.from_numpy(y),
        torch.from_numpy(groups),
        splits=splits,
        bounds=None,
        class_names=["a", "b", "c", "d"],
        group_names=["young", "old"],
        eps=0.3,
        alpha=0.1,
    )
    assert data.train.index.tolist() == list(range(20))
    assert len(data.validation) == 0 and data.test.index.tolist() == list(range(30, 40))
    assert data.num_classes == 4 and data.class_names[3] == "d"
    assert (data.eps, data.alpha) == (0.3, 0.1)


def test_uint8_images_stay_uint8_and_become_floats_per_batch():
    x, y, groups = images()
    data = FairDataset.from_arrays(x, y, groups, group_names=["a", "b"])
    assert data.train.lazy and data.input_shape == (3, 8, 8)
    pool = data.train.pool()
    batch = next(pool.batches(16))
    expected = torch.from_numpy(x[data.train.index[:16].numpy()]).float() / 255
    assert batch.dtype == torch.float32
    assert torch.equal(batch, expected)
    image = UInt8Images(x)
    assert torch.equal(image[5], torch.from_numpy(x[5]).float() / 255)
    assert torch.equal(
        image.get_batch(torch.tensor([7, 2, 7])), torch.from_numpy(x[[7, 2, 7]]) / 255
    )


MALFORMED = [
    ("x as a list", {"x": [[0.0]] * 4}, TypeError, "numpy array or a torch tensor"),
    ("integer features", {"x": np.ones((40, 3), dtype=np.int64)}, TypeError, "astype"),
    ("one dimension", {"x": np.zeros(40)}, ValueError, "reshape"),
    ("NaN", {"x": np.full((40, 2), np.nan)}, ValueError, "NaN"),
    (
        "outside bounds",
        {"x": np.full((40, 2), 2.0), "bounds": (0, 1)},
        ValueError,
        "outside bounds",
    ),
    ("y float", {"y": np.zeros(40)}, TypeError, "integers"),
    ("y short", {"y": np.zeros(39, dtype=int)}, ValueError, "39 entries"),
    ("y 2-D", {"y": np.zeros((40, 1), dtype=int)}, ValueError, "1-D"),
    ("negative group", {"groups": np.r_[-1, np.zeros(39, dtype=int)]}, ValueError, "non-negative"),
    ("too few class names", {"class_names": ["a"]}, ValueError, "class ids reach 1"),
    ("names as one string", {"group_names": "ab"}, TypeError, "sequence of str"),
    ("num_classes too small", {"num_classes": 1}, ValueError, "class ids reach 1"),
    ("empty", {"x": np.zeros((0, 2)), "y": [], "groups": []}, ValueError, "empty"),
    ("bad eps", {"eps": -1.0}, ValueError, "eps"),
    ("bad alpha", {"alpha": 0.0}, ValueError, "alpha"),
    ("bad bounds", {"bounds": (1.0, 0.0)}, ValueError, "low < high"),
    ("bad metric", {"metric": "auc"}, ValueError, "metric"),
    ("splits overlap", {"splits": {"train": [0, 1], "test": [1, 2]}}, ValueError, "overlap"),
    ("splits repeat", {"splits": {"train": [0, 0], "test": [1]}}, ValueError, "twice"),
    ("splits range", {"splits": {"train": [0], "test": [40]}}, IndexError, "row 40"),
    ("splits keys", {"splits": {"train": [0], "tst": [1]}}, ValueError, "keys"),
    ("splits empty", {"splits": {"train": [], "test": [1]}}, ValueError, "must not be empty"),
    ("bad seed", {"seed": -1}, ValueError, "seed"),
    ("bad fraction", {"test_fraction": 1.5}, ValueError, "test_fraction"),
    (
        "uint8 outside bounds",
        {"x": np.zeros((40, 1, 2, 2), np.uint8), "bounds": (0, 0.5)},
        ValueError,
        "uint8",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "error", "match"), MALFORMED, ids=[c[0] for c in MALFORMED]
)
def test_from_arrays_refuses_malformed_input(case, change, error, match):
    rng = np.random.default_rng(0)
    arguments = {
        "x": rng.random((40, 2)),
        "y": np.arange(40) % 2,
        "groups": (np.arange(40) // 2) % 2,
        "bounds": (0, 1),
    }
    arguments.update(change)
    x, y, groups = arguments.pop("x"), arguments.pop("y"), arguments.pop("groups")
    with pytest.raises(error, match=match):
        FairDataset.from_arrays(x, y, groups, **arguments)


def test_a_stratum_too_small_to_split_is_named():
    with pytest.raises(ValueError, match="stratified by \\(class, group\\)"):
        FairDataset.from_arrays(np.zeros((5, 1)), [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], bounds=None)


# -- from_dataset ------------------------------------------------------------------------------
def test_from_dataset_reads_labels_and_groups_from_triples_and_stays_lazy():
    x, y, groups = tabular()
    triples = Triples(torch.from_numpy(x).float(), torch.from_numpy(y), torch.from_numpy(groups))
    data = FairDataset.from_dataset(triples, bounds=None, eps=0.1)
    assert data.train.lazy and isinstance(data.train.x, Rows)
    assert data.train.x.dataset is triples
    in_memory = FairDataset.from_arrays(x, y, groups, bounds=None, eps=0.1)
    for name, split in data.splits().items():
        other = in_memory.splits()[name]
        assert torch.equal(split.index, other.index) and torch.equal(split.y, other.y)
        assert torch.equal(next(split.pool().batches(500)), other.x)


def test_from_dataset_with_labels_and_groups_alongside_reads_only_a_first_batch():
    x, y, groups = tabular()
    triples = Triples(torch.from_numpy(x).float(), torch.from_numpy(y), torch.from_numpy(groups))
    FairDataset.from_dataset(triples, labels=y, groups=groups, bounds=None)
    # one batch of 64 to check dtype and bounds, then one item per split for its input shape
    assert triples.reads <= 64 + 3


def test_from_dataset_pairs_need_groups():
    x, y, groups = tabular(120)
    pairs = TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y))
    with pytest.raises(ValueError, match="give groups="):
        FairDataset.from_dataset(pairs, bounds=None)
    data = FairDataset.from_dataset(pairs, groups=groups, bounds=None)
    assert data.num_groups == 2 and len(data.train) + len(data.validation) + len(data.test) == 120


@pytest.mark.parametrize(
    ("dataset", "options", "error", "match"),
    [
        (
            TensorDataset(torch.zeros(40, 2, dtype=torch.uint8), torch.zeros(40, dtype=torch.long)),
            {"groups": np.zeros(40, int)},
            TypeError,
            "x.float\\(\\) / 255",
        ),
        (
            TensorDataset(torch.full((40, 2), 3.0), torch.zeros(40, dtype=torch.long)),
            {"groups": np.zeros(40, int)},
            ValueError,
            "outside bounds",
        ),
        (
            TensorDataset(torch.zeros(40, 2)),
            {"groups": np.zeros(40, int)},
            ValueError,
            "\\(x, y\\)",
        ),
        (
            TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
            {},
            ValueError,
            "empty",
        ),
        ([1, 2, 3], {}, TypeError, "sized torch.utils.data.Dataset"),
        (
            TensorDataset(torch.zeros(40, 2), torch.zeros(40, dtype=torch.long)),
            {"groups": np.zeros(39, int)},
            ValueError,
            "39 entries",
        ),
    ],
    ids=[
        "uint8 items",
        "outside bounds",
        "items without labels",
        "empty",
        "a list",
        "groups short",
    ],
)
def test_from_dataset_refuses_malformed_input(dataset, options, error, match):
    with pytest.raises(error, match=match):
        FairDataset.from_dataset(dataset, **options)


# -- the lazy path equals the in-memory path ---------------------------------------------------
@pytest.fixture(scope="module")
def twin_datasets() -> tuple[FairDataset, FairDataset]:
    x, y, groups = tabular(300, seed=1)
    in_memory = FairDataset.from_arrays(x, y, groups, bounds=None, eps=0.2, name="twin")
    triples = Triples(torch.from_numpy(x).float(), torch.from_numpy(y), torch.from_numpy(groups))
    lazy = FairDataset.from_dataset(triples, bounds=None, eps=0.2, name="twin")
    return in_memory, lazy


def trained_models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model_r, model_s = Mlp(), Mlp()
    for model in (model_r, model_s):
        model.train()
        with torch.no_grad():
            model(torch.randn(64, 6))
        model.eval()
    return model_r, model_s


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_picks_the_same_on_both_paths(twin_datasets, name, one_torch_thread):
    in_memory, lazy = twin_datasets
    model_r, model_s = trained_models()
    picks = []
    for data in (in_memory, lazy):
        strategy = strategy_for(name, 12, data, seed=0, attack_steps=2)
        labeled = data.train.pool().subset(torch.arange(40))
        pool = data.train.pool(labeled=False).subset(torch.arange(40, len(data.train)))
        picks.append(
            strategy.select(
                model_r,
                model_s,
                pool,
                labeled=labeled,
                validation=data.validation.pool(),
            )
        )
    assert torch.equal(picks[0], picks[1])


def test_evaluation_is_the_same_on_both_paths(twin_datasets):
    in_memory, lazy = twin_datasets
    model_r, _ = trained_models()
    results = [
        evaluate(
            model_r, data.test.pool(), attack=PGD(eps=0.2, alpha=0.1, bounds=None), random_state=0
        ).to_dict()
        for data in (in_memory, lazy)
    ]
    assert results[0] == results[1]


def test_run_experiment_is_the_same_on_both_paths(twin_datasets, one_torch_thread):
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0)
    histories = []
    for data in twin_datasets:
        result = run_experiment(
            "JIN",
            data,
            model_fn=Mlp,
            rounds=1,
            budget_fraction=0.05,
            train=config,
            finetune=config,
            standard=dataclasses.replace(config, adversarial=False),
            seed=0,
        )
        histories.append(
            [{k: v for k, v in r.items() if "seconds" not in k} for r in result.history]
        )
    assert histories[0] == histories[1]
    assert histories[0][-1]["labeled"] > histories[0][0]["labeled"]


# -- the pieces ----------------------------------------------------------------------------------
def test_pool_workers_read_the_same_batches():
    x, y, groups = tabular(100)
    triples = Triples(torch.from_numpy(x).float(), torch.from_numpy(y), torch.from_numpy(groups))
    serial = Pool(triples, groups, labels=y)
    parallel = Pool(triples, groups, labels=y, num_workers=2)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    for a, b in zip(
        serial.labeled_batches(16, indices=order),
        parallel.labeled_batches(16, indices=order),
        strict=True,
    ):
        for left, right in zip(a, b, strict=True):
            assert torch.equal(left, right)
    assert parallel.subset(order[:10]).num_workers == 2


def test_rows_of_rows_keep_one_index_into_the_base():
    x, _y, _groups = images(50)
    base = UInt8Images(x)
    inner = Rows(base, torch.arange(10, 50))
    outer = Rows(torch.utils.data.Subset(inner, [5, 1, 3]), torch.tensor([2, 0]))
    assert outer.dataset is base and outer.rows.tolist() == [13, 15]
    assert torch.equal(
        outer.get_batch(torch.tensor([1, 0])), base.get_batch(torch.tensor([15, 13]))
    )
    assert torch.equal(outer[0], base[13])


def test_split_subset_keeps_dataset_inputs_lazy():
    x, y, groups = images(30)
    split = Split(UInt8Images(x), torch.from_numpy(y), torch.from_numpy(groups))
    part = split.subset(torch.tensor([4, 9]))
    assert part.lazy and len(part) == 2
    assert torch.equal(part.pool().get_inputs(torch.tensor([1])), torch.from_numpy(x[[9]]) / 255)


def test_dataset_inputs_have_a_stable_fingerprint():
    x, y, groups = tabular(120)
    tensors = torch.from_numpy(x).float()
    first = Triples(tensors, torch.from_numpy(y), torch.from_numpy(groups))
    same = Triples(tensors.clone(), torch.from_numpy(y), torch.from_numpy(groups))
    changed = tensors.clone()
    changed[7, 0] += 1
    other = Triples(changed, torch.from_numpy(y), torch.from_numpy(groups))
    assert inputs_digest(first) == inputs_digest(same) != inputs_digest(other)
    images_x, _, _ = images(20)
    read_only = images_x.copy()
    read_only.flags.writeable = False
    stored = UInt8Images(read_only)
    assert stored.fingerprint() == UInt8Images(images_x).fingerprint()
    assert inputs_digest(Rows(stored, torch.tensor([1, 2]))) != inputs_digest(
        Rows(stored, torch.tensor([2, 1]))
    )
    data = FairDataset.from_dataset(first, bounds=None)
    assert data_fingerprint(data) == data_fingerprint(FairDataset.from_dataset(same, bounds=None))


class TinyImageNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_own_uint8_images_run_through_the_loop_with_their_own_threat_model(tmp_path):
    x, y, groups = images(160, seed=2)
    data = FairDataset.from_arrays(x, y, groups, eps=8 / 255, group_names=["indoor", "outdoor"])
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, warmup_epochs=0)
    result = run_experiment(
        "JIN",
        data,
        model_fn=TinyImageNet,
        rounds=1,
        budget_fraction=0.05,
        train=config,
        finetune=config,
        standard=dataclasses.replace(config, adversarial=False),
        checkpoint_dir=tmp_path / "run",
        attack_steps=2,
    )
    for name in ("train", "finetune"):
        recorded = result.settings[name]
        assert recorded["eps"] == pytest.approx(8 / 255)
        assert recorded["alpha"] == pytest.approx(4 / 255)
        assert recorded["bounds"] == [0.0, 1.0]
    assert result.history[-1]["picked"] == round(0.05 * len(data.train))
    assert result.settings["data"]["name"] == "custom"
