"""JIN's scorers inside your own pipeline: your models, your batches, your attack.

fral's scorers are pure functions on logits, so they drop into a loop you already have. This
example scores a pool batch by batch by hand (Eq. 2-4), checks the result against
``JIN.score``, and shows a torchattacks attack used in place of fral's PGD.

    python examples/jin_in_your_pipeline.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
import torchattacks

from fral import JIN, PGD, Pool, pgd
from fral.datasets import digits_domains
from fral.models import SmallCNN
from fral.scores import fuse, robust_inconsistency, standard_inconsistency
from fral.training import adversarial_train, standard_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    args = parser.parse_args()
    data = digits_domains().subsample(train=800 if args.quick else 3000, seed=0)
    labelled = data.train.pool().subset(torch.arange(400))
    torch.manual_seed(0)
    model_r, model_s = SmallCNN(channels=(16, 32)), SmallCNN(channels=(16, 32))
    epochs = 2 if args.quick else 8
    adversarial_train(model_r, labelled, epochs=epochs, batch_size=32, random_state=0)
    standard_train(model_s, labelled, epochs=epochs, batch_size=32, random_state=0)
    model_r.eval()
    model_s.eval()

    # The UCI group's unlabelled samples: the candidates of Algorithm 1, line 6.
    candidates = data.train.x[400:][data.train.z[400:] == 1]

    # By hand: your own batches, your own forward passes; fral only scores.
    standard, robust = [], []
    for x in candidates.split(128):
        with torch.no_grad():
            logits_r, logits_s = model_r(x), model_s(x)
        x_adv = pgd(model_r, x, random_start=False)  # attacks M_R's own predictions
        with torch.no_grad():
            logits_adv = model_r(x_adv)
        standard.append(standard_inconsistency(logits_s, logits_r))
        robust.append(robust_inconsistency(logits_r, logits_adv))
    by_hand = fuse(torch.cat(standard), torch.cat(robust))
    budget = 20
    picks = torch.sort(by_hand, descending=True, stable=True).indices[:budget]

    # The same with the strategy object: the same scores, identical ranking. (group=1: the
    # candidates are all of the UCI group; the loop would pass the worst group found on the
    # validation set.)
    pool = Pool(candidates, torch.ones(len(candidates), dtype=torch.long))
    jin = JIN(budget, attack=PGD(random_start=False))
    scores = jin.score(model_r, model_s, pool)
    gap = (scores - by_hand).abs().max().item()
    assert torch.allclose(scores, by_hand, atol=1e-4), gap  # folded BatchNorm: float noise
    assert torch.equal(jin.select(model_r, model_s, pool, group=1), picks)
    print(f"{len(candidates)} candidates; by-hand and JIN scores agree (max gap {gap:.1e})")
    print(f"by-hand and JIN picks agree: {picks[:8].tolist()}...")

    # Any torchattacks attack bound to M_R can replace fral's PGD: the same attack (PGD-5,
    # eps 4/255, step 2/255, no random start, against M_R's own prediction) picks the same.
    atk = torchattacks.PGD(model_r, eps=4 / 255, alpha=2 / 255, steps=5, random_start=False)
    with_torchattacks = JIN(budget, attack=atk).select(model_r, model_s, pool, group=1)
    overlap = len(set(with_torchattacks.tolist()) & set(picks.tolist()))
    print(f"with torchattacks.PGD: {overlap}/{budget} of the same picks")


if __name__ == "__main__":
    main()
