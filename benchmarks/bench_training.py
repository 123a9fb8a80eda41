"""fral's training steps against the reference loops they stand for, in one run (CPU or GPU).

1. **TRADES**: fral's :class:`~fral.training.Trainer` (the default ``trades="official"``
   form and the two-pass ``"fast"`` form) against a faithful re-implementation of the official
   TRADES training loop (``trades.py`` of yaodongyu/TRADES: ``model.eval()``, the attack
   recomputing ``softmax(model(x_natural))`` at every step, ``model.train()``, three
   train-mode forward passes, ``loss.backward()``, ``optimizer.step()``), written out below
   (:func:`official_step`). Goal: fral's default form at >= 2.0x the official loop's
   throughput on CPU for SmallCNN and MobileNetV2 at batch 128.
2. **Standard training** (the auxiliary model M_S): fral's Trainer with ``adversarial=False``
   against a plain PyTorch loop (``model.train()``, cross-entropy, backward, SGD step).

Before timing, the script checks the loss of one batch, with the global RNG seeded alike (the
start of the attack and Dropout masks come from it in both): in float32, fral running the model
as it is (``optimize=False``) gives the official loss (asserted to 1e-6, relative: the same
computation); in float64, fral's default with its speed-ups gives ``optimize=False``'s loss
(asserted to 1e-12); the default's float32 difference from the official loss is printed (a
component of the attack's gradient within rounding of zero may take the other sign).
Then each side trains its own copy of the model for one epoch of ``--batches`` batches of
``--batch-size`` (the same samples), the sides taking turns (official, fral, fral fast, plain,
fral standard, official, ...; a warm-up round, then ``--pairs`` rounds), and each speed-up,
time(reference) / time(fral), is the median of the rounds with its [min, max]. fral's time
includes everything a :meth:`Trainer.fit` call does (checks of the inputs and model, the
first-batch probe), spread over the epoch's batches.

What makes fral's step faster, with the same results up to float rounding (``optimize=True``,
the default; see :func:`fral.training.trades_loss`): the attack's clean distribution is
computed once (the official code recomputes it, with a graph, at every step); the attack's
eval passes run on fral's checked eval copy (BatchNorm folded, parameters frozen,
``channels_last``); the train-mode passes of a convolutional model take ``channels_last``
inputs where the model gives the same output on them. Run:

    .venv/bin/python benchmarks/bench_training.py [--model all|smallcnn|mobilenetv2]
        [--batches 4] [--pairs 5] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from _common import Ratio, bench_model, ratio, rounds, stopwatch, write_results
from torch import nn

from fral.pool import Pool
from fral.training import TrainConfig, Trainer, trades_loss

OPTIONS = {"eps": 4 / 255, "alpha": 2 / 255, "steps": 5, "beta": 6.0}
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 2e-4}


def official_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The official ``trades_loss`` (L-inf) for the device at hand, with the paper's settings.

    Edits to the official code: ``torch.randn(...)`` on ``x``'s device instead of ``.cuda()``,
    ``reduction="sum"`` for the deprecated ``size_average=False``, and the optimiser's
    ``zero_grad`` left to :func:`official_step`.
    """
    criterion_kl = nn.KLDivLoss(reduction="sum")
    eps, alpha, steps, beta = OPTIONS["eps"], OPTIONS["alpha"], OPTIONS["steps"], OPTIONS["beta"]
    model.eval()
    batch_size = len(x)
    x_adv = x.detach() + 0.001 * torch.randn(x.shape).to(x.device, x.dtype).detach()
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / batch_size) * criterion_kl(
        F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1)
    )
    return loss_natural + beta * loss_robust


def official_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    """One step of the official training loop: ``zero_grad``, the loss, backward, SGD step."""
    optimizer.zero_grad()
    official_loss(model, x, y).backward()
    optimizer.step()


def plain_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    """One step of a plain PyTorch cross-entropy loop."""
    model.train()
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def check_same_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """fral's ``trades_loss`` against :func:`official_loss` on the same batch and RNG draws.

    Returns relative differences of the loss:

    - ``"arithmetic, float32"``: fral running the model as it is (``optimize=False``)
      against the official code, asserted <= 1e-6: the same computation;
    - ``"speed-ups, float64"``: fral's default (``optimize=True``) against
      ``optimize=False``, asserted <= 1e-12: the speed-ups change nothing beyond rounding
      (in float64 no attack gradient is within rounding of zero);
    - ``"speed-ups, float32"``: the default against the official code in float32, printed:
      where a component of the attack's gradient is within rounding of zero its sign may
      differ, and ``x'`` with it at a few pixels.

    (fral computes the losses in float32 from the logits, so in float64 its loss is not the
    official code's float64 loss; in float32 they are the same computation.)
    """
    out = {}
    for dtype in (torch.float64, torch.float32):
        ours, exact = copy.deepcopy(model).to(dtype), copy.deepcopy(model).to(dtype)
        theirs, xd = copy.deepcopy(model).to(dtype), x.to(dtype)
        torch.manual_seed(0)
        expected = official_loss(theirs, xd, y).item()
        torch.manual_seed(0)
        loss = trades_loss(ours, xd, y, bounds=(0.0, 1.0), **OPTIONS).item()
        torch.manual_seed(0)
        plain = trades_loss(exact, xd, y, bounds=(0.0, 1.0), optimize=False, **OPTIONS).item()
        if dtype == torch.float64:
            out["speed-ups, float64"] = abs(loss - plain) / abs(plain)
        else:
            out["arithmetic, float32"] = abs(plain - expected) / abs(expected)
            out["speed-ups, float32"] = abs(loss - expected) / abs(expected)
    assert out["arithmetic, float32"] <= 1e-6, out
    assert out["speed-ups, float64"] <= 1e-12, out
    return out


def compare(name: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, object]]:
    """One model: the loss check, then the alternating TRADES and standard timings."""
    model, shape = bench_model(name, device)
    rows = args.batch_size * args.batches
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(rows, *shape, generator=generator).to(device)
    y = torch.randint(0, 10, (rows,), generator=generator).to(device)
    same = check_same_loss(model, x[: args.batch_size], y[: args.batch_size])
    print(
        f"{name}: loss, relative difference: "
        + ", ".join(f"{key} {value:.0e}" for key, value in same.items()),
        flush=True,
    )
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size), strict=True))
    pool = Pool(x, torch.zeros(rows, dtype=torch.long, device=device), labels=y)

    def reference(step):
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.SGD(copy_.parameters(), **SGD)

        def run() -> None:
            for xb, yb in batches:
                step(copy_, optimizer, xb, yb)

        return run

    def fral(**options):
        config = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            warmup_epochs=0,
            bounds=(0.0, 1.0),
            **SGD,
            **options,
        )
        trainer = Trainer(copy.deepcopy(model), config, random_state=0, progress=False)
        return lambda: trainer.fit(pool)

    adversarial = {"eps": OPTIONS["eps"], "alpha": OPTIONS["alpha"], "steps": OPTIONS["steps"]}
    sides = [
        reference(official_step),
        fral(**adversarial),
        fral(trades="fast", **adversarial),
        reference(plain_step),
        fral(adversarial=False),
    ]
    times = rounds([stopwatch(side, device) for side in sides], args.pairs)
    official, fast, standard = (
        ratio(times[0], times[1]),
        ratio(times[0], times[2]),
        ratio(times[3], times[4]),
    )
    common = {"device": str(device), "model": name, "batch": args.batch_size}
    checks = {
        "loss: exact vs official (f32)": f"{same['arithmetic, float32']:.0e}",
        "loss: optimised vs exact (f64)": f"{same['speed-ups, float64']:.0e}",
        "loss: optimised vs official (f32)": f"{same['speed-ups, float32']:.0e}",
    }

    def row(step: str, speedup: Ratio, checked: bool) -> dict[str, object]:
        return {
            **common,
            "step": step,
            "reference img/s": rows / speedup.a_median,
            "fral img/s": rows / speedup.b_median,
            "speed-up": str(speedup),
            **(checks if checked else dict.fromkeys(checks, "-")),
        }

    return [
        row("TRADES (official form)", official, True),
        row("TRADES (fast form)", fast, False),
        row("standard (M_S)", standard, False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", choices=["all", "mobilenetv2", "smallcnn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed epoch")
    parser.add_argument("--pairs", type=int, default=5, help="measured rounds after a warm-up")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="results name (default training-<device>)")
    args = parser.parse_args()
    device = torch.device(args.device)
    names = ["smallcnn", "mobilenetv2"] if args.model == "all" else [args.model]
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch_size} "
        f"batches={args.batches} TRADES eps=4/255 alpha=2/255 steps=5 beta=6 pairs={args.pairs} "
        "(speed-up: time(reference) / time(fral), median [min, max] of the rounds)",
        flush=True,
    )
    rows = []
    for name in names:
        for row in compare(name, args, device):
            rows.append(row)
            print(" | ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    write_results(args.output or f"training-{device.type}", list(rows[0]), rows, device)


if __name__ == "__main__":
    main()
