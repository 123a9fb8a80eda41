"""FRAL on tabular data: UCI Adult income, sex as the sensitive attribute, an MLP.

Compares JIN with G-RAND and RAND for a few rounds from one shared round 0 and prints the
paper's Table 1 layout: the initialization row and one row per strategy, which differ because
each strategy labelled different samples. The attack works in standardised feature units
(eps 0.1, no input bounds).

    python examples/adult_fairness.py [--quick]
"""

from __future__ import annotations

import argparse

from fral.datasets import adult
from fral.loop import initialize, run_experiment
from fral.report import final_table
from fral.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    args = parser.parse_args()
    data = adult(group="sex")
    data = data.subsample(train=1500 if args.quick else 8000, validation=500, test=2000, seed=0)
    # Enough optimiser steps for the MLP to learn more than the majority class even in the
    # quick run (300 initial labels: 10 steps an epoch at batch 32).
    train = TrainConfig(
        epochs=5 if args.quick else 10,
        batch_size=32 if args.quick else 64,
        lr=0.05,
        warmup_epochs=0 if args.quick else 1,
        eps=data.eps,
        alpha=data.alpha,
        bounds=data.bounds,
    )
    start = initialize(data, train=train, seed=0)
    rounds = 1 if args.quick else 3
    results = [
        run_experiment(name, data, rounds=rounds, train=train, seed=0, initialization=start)
        for name in ("RAND", "G-RAND", "JIN")
    ]
    print(final_table([result.to_dict() for result in results]))


if __name__ == "__main__":
    main()
