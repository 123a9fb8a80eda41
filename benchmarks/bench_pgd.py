"""fral.pgd against torchattacks.PGD: same model, inputs, batch and steps, in one run.

Asserts that the adversarial examples are equal in float64 (to 1e-9), then times the two
attacks alternating (torchattacks, fral, torchattacks, fral, ...; ``--pairs`` pairs after a
warm-up pair) and prints each one's median throughput and the speed-up, time(torchattacks) /
time(fral), as the median of the pairs with its [min, max] (goal: >= 1.25x on CPU). In
float32, fral's folded BatchNorm rounds differently, so a gradient component within rounding of
zero can change sign: the share of such pixels is printed too. Run:

    .venv/bin/python benchmarks/bench_pgd.py [--model mobilenetv2|smallcnn] [--pairs 5]
        [--device cuda] [--amp]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torchattacks
from _common import bench_model, ratio, rounds, stopwatch, write_results

from fral.attacks import pgd


def compare(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    """One model: equality check, then the alternating timings; returns the measured row."""
    model, shape = bench_model(name, device)
    x = torch.rand(args.batch_size, *shape, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    options = {"eps": 4 / 255, "alpha": 2 / 255, "steps": args.steps, "random_start": False}

    model64, x64 = copy.deepcopy(model).double(), x.double()
    exact = pgd(model64, x64, y, **options)
    expected = torchattacks.PGD(model64, **options)(x64, y)
    difference = (exact - expected).abs().max().item()
    assert difference <= 1e-9, f"float64 outputs differ by {difference}"

    reference = torchattacks.PGD(model, **options)
    flipped = ((pgd(model, x, y, **options) - reference(x, y)).abs() > 1e-6).double().mean()
    sides = [lambda: reference(x, y), lambda: pgd(model, x, y, **options)]
    if args.amp:  # a third side in the same rotation: torchattacks, fral, fral bf16, ...
        sides.append(lambda: pgd(model, x, y, amp=True, **options))
    times = rounds([stopwatch(side, device) for side in sides], args.pairs)
    speedup = ratio(times[0], times[1])
    row: dict[str, object] = {
        "device": str(device),
        "model": name,
        "batch": args.batch_size,
        "torchattacks img/s": args.batch_size / speedup.a_median,
        "fral img/s": args.batch_size / speedup.b_median,
        "speed-up": str(speedup),
        "float64 max |diff|": f"{difference:.0e}",
        "float32 pixels differing": f"{flipped.item():.1e}",
    }
    if args.amp:
        amp = ratio(times[0], times[2])
        row["fral bf16 img/s"] = args.batch_size / amp.b_median
        row["bf16 speed-up"] = str(amp)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", choices=["all", "mobilenetv2", "smallcnn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5, help="measured pairs after a warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="also time fral with bf16 autocast")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = ["mobilenetv2", "smallcnn"] if args.model == "all" else [args.model]
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"steps={args.steps} eps=4/255 alpha=2/255 pairs={args.pairs} "
        "(speed-up: time(torchattacks) / time(fral), median [min, max] of the pairs)"
    )
    rows = []
    for name in names:
        rows.append(compare(name, args, device))
        print(" | ".join(f"{key} {value}" for key, value in rows[-1].items()), flush=True)
    write_results(f"pgd-{device.type}", list(rows[0]), rows, device)


if __name__ == "__main__":
    main()
