"""Pool: construction, validation, subsets and batching."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from fral.pool import Pool, as_index_tensor, initial_split


def test_tensor_pool_basics() -> None:
    x = torch.arange(24.0).view(6, 1, 2, 2)
    pool = Pool(x, [0, 2, 2, 0, 1, 2], labels=[1, 0, 1, 1, 0, 0])
    assert len(pool) == 6 and pool.num_groups == 3 and pool.has_labels
    assert pool.group_counts().tolist() == [2, 1, 3]
    assert pool.group_indices(2).tolist() == [1, 2, 5]
    assert pool.groups.dtype == torch.int64 and pool.ids.tolist() == list(range(6))
    sub = pool.subset([5, 0])
    assert torch.equal(sub.inputs, x[[5, 0]])
    assert sub.groups.tolist() == [2, 0] and sub.labels.tolist() == [0, 1]
    assert sub.ids.tolist() == [5, 0] and sub.num_groups == 3
    assert sub.subset([1]).ids.tolist() == [0]


def test_many_groups_and_explicit_num_groups() -> None:
    groups = torch.arange(7) % 5
    pool = Pool(torch.zeros(7, 3), groups, num_groups=9)
    assert pool.num_groups == 9 and pool.group_counts().tolist() == [2, 2, 1, 1, 1, 0, 0, 0, 0]


def test_batches_cover_the_pool_in_order_for_tensor_and_dataset() -> None:
    x = torch.randn(10, 3)
    for inputs in (x, TensorDataset(x, torch.zeros(10))):
        pool = Pool(inputs, torch.zeros(10, dtype=torch.long))
        batches = list(pool.batches(4))
        assert [len(b) for b in batches] == [4, 4, 2]
        assert torch.equal(torch.cat(batches), x)
        picked = torch.cat(list(pool.batches(2, indices=torch.tensor([9, 1, 4]))))
        assert torch.equal(picked, x[[9, 1, 4]])


def test_labeled_batches() -> None:
    pool = Pool(torch.randn(5, 2), [0, 1, 0, 1, 1], labels=[3, 2, 1, 0, 3])
    _, ys, zs = zip(*pool.labeled_batches(2), strict=True)
    assert torch.cat(ys).tolist() == [3, 2, 1, 0, 3] and torch.cat(zs).tolist() == [0, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="labels"):
        next(Pool(torch.randn(2, 2), [0, 1]).labeled_batches())


def test_empty_pool_is_allowed_as_a_labelled_set() -> None:
    pool = Pool(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert len(pool) == 0 and list(pool.batches(4)) == []


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ([0, 1], ValueError, "2 entries"),
        ([0.0, 1.0, 0.0], TypeError, "integers"),
        ([True, False, True], TypeError, "integers"),
        ([0, -1, 0], ValueError, "non-negative"),
        ([[0, 1, 0]], ValueError, "1-D"),
    ],
)
def test_bad_groups(groups, error, match) -> None:
    with pytest.raises(error, match=match):
        Pool(torch.zeros(3, 2), groups)


def test_other_bad_inputs() -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        Pool([[0.0], [1.0]], [0, 1])
    with pytest.raises(ValueError, match="num_groups"):
        Pool(torch.zeros(2, 1), [0, 3], num_groups=2)
    with pytest.raises(ValueError, match="labels"):
        Pool(torch.zeros(2, 1), [0, 1], labels=[0])
    with pytest.raises(IndexError):
        Pool(torch.zeros(2, 1), [0, 1]).subset([2])
    with pytest.raises(ValueError, match="batch_size"):
        next(Pool(torch.zeros(2, 1), [0, 1]).batches(0))
    with pytest.raises(IndexError):
        as_index_tensor([-1], 3)


def test_initial_split_is_a_seeded_partition() -> None:
    labeled, unlabeled = initial_split(100, 0.2, generator=torch.Generator().manual_seed(1))
    assert len(labeled) == 20 and len(unlabeled) == 80
    assert sorted(torch.cat([labeled, unlabeled]).tolist()) == list(range(100))
    again, _ = initial_split(100, 0.2, generator=torch.Generator().manual_seed(1))
    other, _ = initial_split(100, 0.2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(labeled, again) and not torch.equal(labeled, other)
    with pytest.raises(ValueError):
        initial_split(10, 1.5, generator=torch.Generator())
