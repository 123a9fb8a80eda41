"""Batched inference: logits, probabilities and embeddings over pools and tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fral.pool import Pool
from fral.predict import RowWriter, embeddings, logits, probabilities, row_count
from tests.utils import assert_unchanged, make_net, snapshot


def reference(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = net.training
    net.eval()
    with torch.no_grad():
        out = net(x)
    net.train(was)
    return out


@pytest.mark.parametrize("train", [True, False])
def test_logits_match_an_eval_forward_and_leave_the_model_alone(train) -> None:
    net = make_net(train=train)
    x = torch.rand(37, 1, 8, 8)
    before = snapshot(net)
    expected = reference(net, x)
    for data in (x, Pool(x, torch.zeros(37, dtype=torch.long))):
        for optimize in (True, False):
            out = logits(net, data, batch_size=10, optimize=optimize)
            assert out.shape == (37, 4) and out.dtype == torch.float32
            assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(probabilities(net, x).sum(1), torch.ones(37))
    assert torch.allclose(logits(net, x, indices=torch.tensor([5, 2])), expected[[5, 2]], atol=1e-5)
    assert_unchanged(net, before)


def test_dataset_pool_and_amp() -> None:
    net = make_net()
    x = torch.rand(9, 1, 8, 8)
    pool = Pool(TensorDataset(x, torch.zeros(9)), torch.zeros(9, dtype=torch.long))
    assert torch.allclose(logits(net, pool, batch_size=4), reference(net, x), atol=1e-5)
    low = logits(net, x, amp=True)
    assert low.dtype == torch.float32 and torch.allclose(low, reference(net, x), atol=0.1)


@pytest.mark.parametrize("train", [True, False])
def test_embeddings_are_the_input_of_the_last_linear(train) -> None:
    net = make_net(train=train)
    x = torch.rand(11, 1, 8, 8)
    before = snapshot(net)
    net_eval = make_net(train=False)
    net_eval.load_state_dict(net.state_dict())
    with torch.no_grad():
        expected = net_eval.features(x)
    emb, out = embeddings(net, x, batch_size=4, return_logits=True)
    assert emb.shape == (11, 32)
    assert torch.allclose(emb, expected, atol=1e-5)
    assert torch.allclose(out, reference(net, x), atol=1e-5)
    by_name = embeddings(net, x, layer="head")
    by_module = embeddings(net, x, layer=net.head)
    assert torch.allclose(by_name, expected, atol=1e-5) and torch.equal(by_name, by_module)
    via_callable = embeddings(net, x, features=lambda model, xs: model.features(xs))
    assert torch.allclose(via_callable, expected, atol=1e-5)
    assert_unchanged(net, before)
    assert not net.head._forward_pre_hooks


def test_embeddings_of_chosen_samples_in_their_order(monkeypatch) -> None:
    net = make_net()
    x = torch.rand(11, 1, 8, 8)
    chosen = torch.tensor([7, 2, 9, 0, 5])
    full, full_logits = embeddings(net, x, return_logits=True)
    pool = Pool(x, torch.arange(11) % 2)
    monkeypatch.setattr(Pool, "subset", None)  # the pool is not copied
    for data in (x, pool):
        emb, out = embeddings(net, data, indices=chosen, batch_size=2, return_logits=True)
        assert emb.shape == (5, 32) and out.shape == (5, 4)
        assert torch.allclose(emb, full[chosen], atol=1e-5)
        assert torch.allclose(out, full_logits[chosen], atol=1e-5)
        via_callable = embeddings(
            net, data, indices=chosen, features=lambda model, xs: model.features(xs)
        )
        assert torch.allclose(via_callable, full[chosen], atol=1e-5)
    with pytest.raises(IndexError, match="must lie in"):
        embeddings(net, pool, indices=torch.tensor([11]))


def test_embedding_errors() -> None:
    no_linear = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="no nn.Linear"):
        embeddings(no_linear, torch.rand(2, 1, 8, 8))
    net = make_net()
    with pytest.raises(ValueError, match="no submodule"):
        embeddings(net, torch.rand(2, 1, 8, 8), layer="nope")
    with pytest.raises(ValueError, match="not a submodule"):
        embeddings(net, torch.rand(2, 1, 8, 8), layer=nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"\(b, d\)"):
        embeddings(net, torch.rand(2, 1, 8, 8), features=lambda m, xs: xs[:1])


def test_bad_data() -> None:
    net = make_net()
    with pytest.raises(TypeError, match="Pool or a torch.Tensor"):
        logits(net, [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        logits(net, torch.zeros(0, 1, 8, 8))
    with pytest.raises(ValueError, match="batch_size"):
        logits(net, torch.rand(2, 1, 8, 8), batch_size=0)


def test_row_writer_fills_one_output_in_order() -> None:
    """Batch outputs go into one tensor allocated at the first batch (no list + cat)."""
    writer = RowWriter(5)
    first, second = torch.arange(6.0).view(3, 2), torch.arange(6.0, 10.0).view(2, 2)
    writer.add(first)
    out = writer.out
    writer.add(second)
    assert writer.result() is out  # written in place, never re-allocated
    assert torch.equal(out, torch.arange(10.0).view(5, 2))
    with pytest.raises(ValueError, match="does not fit"):
        writer.add(first)
    with pytest.raises(RuntimeError, match="2 of 3 rows"):
        partial = RowWriter(3)
        partial.add(second)
        partial.result()
    assert row_count(torch.zeros(7, 3)) == 7
    assert row_count(torch.zeros(7, 3), torch.tensor([1, 2])) == 2


def test_logits_and_embeddings_fill_one_output() -> None:
    """logits and embeddings return the rows of every batch, in order, as one tensor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    x = torch.randn(11, 4)
    with torch.no_grad():
        expected = model(x)
        hidden = model[1](model[0](x))
    assert torch.allclose(logits(model, x, batch_size=4), expected, atol=1e-6)
    emb, out = embeddings(model, x, batch_size=4, return_logits=True)
    assert torch.allclose(emb, hidden, atol=1e-6) and torch.allclose(out, expected, atol=1e-6)
    picked = torch.tensor([10, 0, 5])
    assert torch.allclose(logits(model, x, indices=picked, batch_size=2), expected[picked])
