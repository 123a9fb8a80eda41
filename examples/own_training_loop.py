"""Keep your own training loop: fral.ActiveSet keeps the labels, JIN picks what to label.

Your optimiser, your epochs, your DataLoader: here plain TRADES (``fral.training.trades_loss``)
for the robust model ``M_R`` and cross-entropy for the standard model ``M_S``. Between two
trainings, ``ActiveSet.select`` asks JIN for the worst group's most inconsistent samples (as
dataset indices) and ``ActiveSet.label`` records what your annotators answer. After round 1
the state is saved and the process "restarts" from the files, losing nothing. Each round
prints the worst-group clean and robust accuracy on the test split.

    python examples/own_training_loop.py [--quick] [--rounds 3] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fral import JIN, PGD, ActiveSet, FairDataset, evaluate
from fral.datasets import digits_domains
from fral.models import SmallCNN
from fral.training import trades_loss


def load_data(quick: bool) -> FairDataset:
    """The digits (group = MNIST or UCI optdigits), subsampled for a quick run."""
    data = digits_domains()
    if quick:
        return data.subsample(train=600, validation=150, test=300, seed=0)
    return data.subsample(train=3000, seed=0)


def build_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN(num_classes=10, in_channels=1, channels=(16, 32))


def attack_for(data: FairDataset) -> PGD:
    """PGD-5 under the data set's own threat model (eps 4/255, step 2/255, inputs in [0, 1])."""
    return PGD(eps=data.eps, alpha=data.alpha, steps=5, bounds=data.bounds)


def train(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    labelled: Dataset,
    data: FairDataset,
    *,
    epochs: int,
    seed: int,
    robust: bool,
) -> None:
    """Your own loop: TRADES for M_R, cross-entropy for M_S."""
    order = torch.Generator().manual_seed(seed)
    loader = DataLoader(labelled, batch_size=32, shuffle=True, generator=order)
    noise = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for x, y, _group in loader:
            optimiser.zero_grad()
            if robust:
                loss = trades_loss(
                    model, x, y, eps=data.eps, alpha=data.alpha, bounds=data.bounds, generator=noise
                )
            else:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimiser.step()
    model.eval()


def worst_group(model: nn.Module, data: FairDataset, round_number: int) -> tuple[float, float]:
    """Worst-group clean and robust (PGD-5) accuracy on the test split."""
    result = evaluate(model, data.test.pool(), attack=attack_for(data), random_state=round_number)
    return result.clean["accuracy"].worst, result.robust["accuracy"].worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        help="keep the files here (the ActiveSet after round 1 and at the end, M_R)",
    )
    args = parser.parse_args()
    if args.quick:
        torch.set_num_threads(1)  # a model this small runs faster on one thread
    data = load_data(args.quick)
    epochs = 3 if args.quick else 10
    budget = round(0.04 * len(data.train))
    annotators = data.train.y  # stands in for your labelling service
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)

        # 20% labelled uniformly at random before round 1 (the paper's start).
        active = ActiveSet(data, initial_fraction=0.2, seed=0)
        active.label(active.pending, annotators[active.pending])
        model_r, model_s = build_model(0), build_model(1)
        optimiser_r = torch.optim.SGD(model_r.parameters(), lr=0.05, momentum=0.9)
        optimiser_s = torch.optim.SGD(model_s.parameters(), lr=0.05, momentum=0.9)
        strategy = JIN(budget, attack=attack_for(data), random_state=0)
        train(
            model_r, optimiser_r, active.labeled_dataset(), data, epochs=epochs, seed=0, robust=True
        )
        clean, robust = worst_group(model_r, data, 0)
        print(f"budget {budget} per round; {len(data.train)} training samples")
        print(
            f"round 0: {active.num_labeled} labelled; worst-group accuracy clean {clean:.4f}, "
            f"robust {robust:.4f}"
        )
        for number in range(1, args.rounds + 1):
            train(
                model_s,
                optimiser_s,
                active.labeled_dataset(),
                data,
                epochs=epochs,
                seed=number,
                robust=False,
            )
            before = active.num_labeled
            picks = active.select(strategy, model_r, model_s)  # dataset indices, best first
            active.label(picks, annotators[picks])
            groups = torch.bincount(data.train.z[picks], minlength=data.num_groups).tolist()
            train(
                model_r,
                optimiser_r,
                active.labeled_dataset(),
                data,
                epochs=epochs,
                seed=number,
                robust=True,
            )
            clean, robust = worst_group(model_r, data, number)
            print(
                f"round {number}: {before} -> {active.num_labeled} labelled "
                f"(+{active.num_labeled - before}, per group {groups}); worst-group accuracy "
                f"clean {clean:.4f}, robust {robust:.4f}"
            )
            if number == 1:
                # Save everything, then continue from the files as a restarted process would.
                active.save(folder / "active-round1.pt")
                torch.save(
                    {
                        "model_r": model_r.state_dict(),
                        "model_s": model_s.state_dict(),
                        "optimiser_r": optimiser_r.state_dict(),
                        "optimiser_s": optimiser_s.state_dict(),
                        "strategy": strategy.state_dict(),
                    },
                    folder / "training.pt",
                )
                saved = active.state_dict()
                active = ActiveSet.load(folder / "active-round1.pt", data)
                restored = active.state_dict()
                same = all(
                    torch.equal(saved[key], restored[key])
                    for key in ("labeled", "labels", "pending")
                )
                assert same, "the reloaded ActiveSet differs from the saved one"
                checkpoint = torch.load(folder / "training.pt")
                model_r.load_state_dict(checkpoint["model_r"])
                model_s.load_state_dict(checkpoint["model_s"])
                optimiser_r.load_state_dict(checkpoint["optimiser_r"])
                optimiser_s.load_state_dict(checkpoint["optimiser_s"])
                strategy.load_state_dict(checkpoint["strategy"])
                print(
                    f"saved after round 1 and reloaded: {active.num_labeled} labels, "
                    f"{active.pending.numel()} pending, identical"
                )
        active.save(folder / "active.pt")
        torch.save(model_r.state_dict(), folder / "model_r.pt")


if __name__ == "__main__":
    main()
