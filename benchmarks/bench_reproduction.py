"""The compute of a full reproduction of the paper per data set, from measured throughput.

Run ``python benchmarks/bench_reproduction.py`` (a few minutes on two CPU cores; add
``--device cuda`` on a GPU). For each of the paper's set-ups (UTKFace and HAM-10000:
MobileNetV2 at 112x112; CINIC-10: MobileNetV2 at 32x32; Table 4's ResNet18 at both sizes) it
measures, on random inputs of the right shape (the data are not needed: the cost does not
depend on the pixels):

* a TRADES training step (fral's ``Trainer`` arithmetic: PGD-5 at 4/255 inside, the official
  three-pass loss, SGD) at the paper's batch size, in images per second;
* a standard (cross-entropy) step, for ``M_S``;
* JIN's scoring (``fral.scoring.inconsistency_scores``: ``M_S`` and ``M_R`` forward, PGD-5
  on ``M_R``), in images per second;

each the median of ``--repeats`` timed calls after a warm-up. From these and the paper's
protocol it estimates one run (one strategy, one seed) of Algorithm 1:

* TRADES: ``E`` epochs on the initial 20% of ``D``, then ``E`` epochs after each of the
  ``K = 5`` rounds on 22%, 24%, ..., 30% of ``D`` (the supplementary: "for each active
  learning iteration, we adversarially train the model for E epochs"): ``1.5 E |D|`` images;
* ``M_S`` trained from scratch each round for ``E`` epochs on the labelled set (the paper's
  setting): ``1.3 E |D|`` images of standard steps;
* JIN's scoring of the worst group's unlabelled candidates each round, taken as half the
  unlabelled pool (two groups): ``0.5 * (0.8 + 0.78 + 0.76 + 0.74 + 0.72) |D| = 1.9 |D|``.

``|D|`` is the training set as fral's loaders build it from the published data: UTKFace
23,705 faces minus "Others" (about 1,700) is about 22,000, 70% of which (less the 10%
validation cut) train: about 13,900; CINIC-10's official train split: 90,000; HAM-10000
(10,015 images, about 7,470 lesions, one image each, unknown sex dropped): about 4,700.
These sizes are estimates, not measured here (fral does not ship the data): pass
``--sizes utkface=N,...`` with the counts ``fral run`` prints for your copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from _common import write_results

from fral.models import MobileNetV2, ResNet18
from fral.scoring import inconsistency_scores
from fral.training import PRESETS, trades_loss


@dataclass(frozen=True)
class SetUp:
    name: str
    preset: str
    model: str
    size: int
    classes: int
    train_size: int


SETUPS = (
    SetUp("UTKFace, MobileNetV2 @112", "utkface", "mobilenetv2", 112, 4, 13_900),
    SetUp("CINIC-10, MobileNetV2 @32", "cinic10", "mobilenetv2", 32, 10, 90_000),
    SetUp("HAM-10000, MobileNetV2 @112", "ham10000", "mobilenetv2", 112, 7, 4_700),
    SetUp("UTKFace, ResNet18 @112 (Table 4)", "utkface", "resnet18", 112, 4, 13_900),
    SetUp("CINIC-10, ResNet18 @32 (Table 4)", "cinic10", "resnet18", 32, 10, 90_000),
)


def build(setup: SetUp, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    if setup.model == "mobilenetv2":
        model = MobileNetV2(setup.classes, 3, width=1.0, input_size=setup.size)
    else:
        model = ResNet18(setup.classes, 3, input_size=setup.size)
    return model.to(device)


def median_seconds(step, repeats: int, device: torch.device) -> float:
    step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(setup: SetUp, device: torch.device, repeats: int) -> dict[str, float]:
    batch = PRESETS[setup.preset].batch_size
    model = build(setup, device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, setup.size, setup.size, device=device)
    y = torch.randint(0, setup.classes, (batch,), device=device)

    def trades_step() -> None:
        model.train()
        loss = trades_loss(model, x, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def standard_step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    model_s = build(setup, device).eval()
    pool = torch.rand(4 * batch, 3, setup.size, setup.size, device=device)

    def score() -> None:
        model.eval()
        inconsistency_scores(model, pool, model_s, batch_size=4 * batch)

    return {
        "trades": batch / median_seconds(trades_step, repeats, device),
        "standard": batch / median_seconds(standard_step, repeats, device),
        "scoring": pool.shape[0] / median_seconds(score, repeats, device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="", help="e.g. utkface=14000,cinic10=90000")
    parser.add_argument("--only", default=None, help="run the set-ups whose name has this")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = dict(item.split("=") for item in args.sizes.split(",") if item)
    rows = []
    for setup in SETUPS:
        if args.only and args.only.lower() not in setup.name.lower():
            continue
        rates = measure(setup, device, args.repeats)
        size = int(sizes.get(setup.preset, setup.train_size))
        epochs = PRESETS[setup.preset].epochs
        seconds = (
            1.5 * epochs * size / rates["trades"]
            + 1.3 * epochs * size / rates["standard"]
            + 1.9 * size / rates["scoring"]
        )
        row = {
            "set-up": setup.name,
            "batch": PRESETS[setup.preset].batch_size,
            "TRADES img/s": round(rates["trades"], 1),
            "standard img/s": round(rates["standard"], 1),
            "JIN scoring img/s": round(rates["scoring"], 1),
            "|D| (estimate)": size,
            "E": epochs,
            "hours per run (one strategy, one seed)": round(seconds / 3600, 1),
        }
        print(row, flush=True)
        rows.append(row)
    write_results(f"reproduction-{device.type}", list(rows[0]), rows, device)


if __name__ == "__main__":
    main()
