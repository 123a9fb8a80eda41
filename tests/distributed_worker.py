"""Worker of the distributed tests: every strategy and ``evaluate`` on one rank of a group.

Run by tests/test_distributed.py in ``world_size`` processes (gloo on the CPU, loopback
address); :func:`scenario` is also run in the test process itself, without a process group,
for the one-process reference.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fral.metrics import evaluate
from fral.pool import Pool
from fral.strategies import STRATEGIES, build_strategy
from fral.training import TrainConfig, Trainer
from tests.utils import make_net, run_rank

#: Not divisible by 2 or 3; with BATCH_SIZE, 7 batches: 3 ranks get 2, 2 and 3 batches.
POOL_SIZE = 101
BATCH_SIZE = 16
BUDGET = 7
#: Options that keep the slow strategies fast here (FairAL's fine-tuning).
CHEAP = {"finetune_steps": 1, "max_labels": 1, "progress": False}


class CountingImages(Dataset):
    """Images read a batch at a time, counting the rows read (to see each rank's share)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.rows_read = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        self.rows_read += 1
        return self.images[index]

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        self.rows_read += indices.numel()
        return self.images[indices]


def _pool(seed: int, size: int, labelled: bool) -> Pool:
    generator = torch.Generator().manual_seed(seed)
    x = CountingImages(torch.rand(size, 1, 8, 8, generator=generator))
    groups = torch.randint(0, 3, (size,), generator=generator)
    labels = torch.randint(0, 4, (size,), generator=generator) if labelled else None
    return Pool(x, groups, labels=labels, num_groups=3)


def _build(name: str, **options: Any):
    accepted = inspect.signature(type(build_strategy(name, 1)).__init__).parameters
    kept = {key: value for key, value in options.items() if key in accepted}
    return build_strategy(name, BUDGET, random_state=3, **kept)


def scenario() -> dict[str, torch.Tensor]:
    """Picks of every strategy (whole pool, worst group from validation, ``group=1``) and an
    evaluation, as tensors keyed by what they are; ``reads/...``: pool rows this process read
    (not compared: they show the sharding)."""
    torch.manual_seed(0)
    model_r, model_s = make_net(1), make_net(2)
    pool = _pool(10, POOL_SIZE, labelled=False)
    labeled = _pool(11, 23, labelled=True)
    validation = _pool(12, 40, labelled=True)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in STRATEGIES:
            strategy = _build(name, batch_size=BATCH_SIZE, **CHEAP)
            for label, group in (("", None), ("group1", 1)):
                before = pool.inputs.rows_read
                picks = strategy.select(
                    model_r, model_s, pool, labeled=labeled, validation=validation, group=group
                )
                results[f"{name}{label}"] = picks
                results[f"reads/{name}{label}"] = torch.tensor(pool.inputs.rows_read - before)
        # CSET without a labelled sample: its first pick is a seeded draw.
        results["cset/no-labels"] = _build("cset", batch_size=BATCH_SIZE).select(
            model_r, pool=pool, labeled=labeled.subset(torch.zeros(0, dtype=torch.int64))
        )
        # NaN inputs in the last rows: the rank that reads them raises, and so does every
        # other rank (no rank is left waiting in a collective).
        broken = pool.inputs.images.clone()
        broken[-3:] = float("nan")
        broken_pool = Pool(CountingImages(broken), pool.groups, num_groups=3)
        for name in ("ent", "cset", "badge"):
            try:
                _build(name, batch_size=BATCH_SIZE).select(
                    model_r, pool=broken_pool, labeled=labeled
                )
                results[f"raised/{name}/nan-inputs"] = torch.tensor(0)
            except (ValueError, RuntimeError):
                results[f"raised/{name}/nan-inputs"] = torch.tensor(1)
        result = evaluate(model_r, validation, batch_size=BATCH_SIZE, random_state=5)
    for kind, table in (("clean", result.clean), ("robust", result.robust)):
        for metric, value in table.items():
            results[f"evaluate/{kind}/{metric}"] = torch.as_tensor(value.per_group)
    results.update(training())
    return results


def training() -> dict[str, torch.Tensor]:
    """Weights and losses after a few steps of standard and TRADES training of a net without
    BatchNorm or Dropout (``train/...``: equal to one process's up to float rounding), and a
    net with both (``rankwise/...``: the same on every rank, not one process's)."""
    data = _pool(13, 25, labelled=True)  # 2 batches per epoch: 12 and 13 samples
    results = {}
    for adversarial in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 4))
        config = TrainConfig(
            epochs=2, batch_size=12, lr=0.05, warmup_epochs=0, adversarial=adversarial
        )
        history = Trainer(model, config, random_state=0).fit(data)
        kind = "trades" if adversarial else "standard"
        results[f"train/{kind}/loss"] = torch.tensor([epoch["loss"] for epoch in history])
        for name, value in model.state_dict().items():
            results[f"train/{kind}/{name}"] = value
    results["reads/train"] = torch.tensor(data.inputs.rows_read)
    model = make_net(3)
    config = TrainConfig(epochs=1, batch_size=12, lr=0.05, warmup_epochs=0, adversarial=False)
    Trainer(model, config, random_state=0).fit(data)
    for name, value in model.state_dict().items():
        results[f"rankwise/{name}"] = value
    return results


def main(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Join the group as ``rank``, run :func:`scenario`, save the results."""
    run_rank(
        rank,
        world_size,
        port,
        lambda: torch.save(scenario(), os.path.join(out_dir, f"rank{rank}.pt")),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
