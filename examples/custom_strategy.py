"""Write your own strategy and run it through Algorithm 1 next to JIN.

A strategy subclasses ``fral.protocol.Strategy`` and implements ``_select``; the base class
validates the arguments and seeds the call. Here: margin sampling (the smallest gap between the
two most likely classes of M_R), restricted like JIN to the worst group when the loop passes it.

    python examples/custom_strategy.py [--quick]
"""

from __future__ import annotations

import argparse

import torch

from fral.datasets import digits_domains
from fral.loop import initialize, run_experiment
from fral.predict import logits
from fral.protocol import Request, Strategy, candidate_indices, top_budget
from fral.strategies import JIN
from fral.training import TrainConfig


class Margin(Strategy):
    """Label the candidates whose two most likely classes are closest."""

    group_aware = True  # the loop passes the worst group as group=

    def _select(self, request: Request) -> torch.Tensor:
        candidates = candidate_indices(request.pool, request.group)
        outputs = logits(request.model_r, request.pool, indices=candidates)
        top2 = outputs.softmax(1).topk(2, dim=1).values
        return candidates[top_budget(top2[:, 1] - top2[:, 0], self.budget).cpu()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    args = parser.parse_args()
    data = digits_domains()
    if args.quick:
        data = data.subsample(train=600, validation=100, test=300, seed=0)
    # The quick run still takes enough optimiser steps (120 initial labels at batch 16) for
    # the models to learn well above chance (10%); one round.
    epochs, rounds, batch = (6, 1, 16) if args.quick else (20, 3, 64)
    train = TrainConfig(epochs=epochs, batch_size=batch, lr=0.05, warmup_epochs=min(1, epochs / 5))
    finetune = TrainConfig(epochs=max(1, epochs // 3), batch_size=batch, lr=0.02, warmup_epochs=0)
    budget = round(0.02 * len(data.train))
    start = initialize(data, train=train, seed=0)
    print(f"chance level: {1 / data.num_classes:.3f} accuracy ({data.num_classes} classes)")
    for strategy in (Margin(budget, random_state=0), JIN(budget, random_state=0)):
        result = run_experiment(
            strategy,
            data,
            rounds=rounds,
            train=train,
            finetune=finetune,
            seed=0,
            initialization=start,
        )
        final = result.history[-1]["test"]["summary"]
        print(
            f"{strategy.name:7s} F_std {final['clean_accuracy_worst']:.3f} "
            f"F_rob {final['robust_accuracy_worst']:.3f}"
        )


if __name__ == "__main__":
    main()
