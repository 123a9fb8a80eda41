"""JIN's scoring time against the bare cost of the passes it has to make, in one run.

Per candidate batch JIN must run: one clean forward of M_R, one of M_S, the attack's steps
(forward + backward w.r.t. the input of M_R) and one forward of M_R on the adversarial batch.
The "bare" loops below run exactly those passes and nothing else (no KL, z-score, sort, copy
or validation), once on the same eval copies JIN uses (BatchNorm folded: the overhead ratio,
goal <= 1.10; the views are opened, hence refreshed and checked, at each call as JIN does) and
once on the user's models as they are (what a hand-written loop would cost).
The three take turns (JIN, bare on the copies, bare as is, JIN, ...; ``--pairs`` rounds after
a warm-up round, ``--no-plain`` leaves the third out) and each ratio JIN / bare is the median
of the rounds with its [min, max]. Run:

    .venv/bin/python benchmarks/bench_scoring.py [--pool 512] [--pairs 5] [--device cuda]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import bench_model, ratio, rounds, stopwatch, write_results

from fral import JIN, PGD, Pool
from fral._modules import evaluation_view


def bare_passes(
    net_r: Callable[[torch.Tensor], torch.Tensor],
    net_s: Callable[[torch.Tensor], torch.Tensor],
    batches: list[torch.Tensor],
    steps: int,
) -> None:
    """The forward/backward passes of JIN's scoring, with sign steps and nothing else."""
    for x in batches:
        with torch.no_grad():
            target = net_r(x).argmax(1)
            net_s(x)
        x_adv = x.clone()
        for _ in range(steps):
            x_in = x_adv.detach().requires_grad_(True)
            loss = F.cross_entropy(net_r(x_in), target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_in)
            x_adv.add_(grad.sign_(), alpha=2 / 255)
        with torch.no_grad():
            net_r(x_adv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"])
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=5, help="measured rounds after a warm-up")
    parser.add_argument(
        "--no-plain", action="store_true", help="skip the bare loop on the models as they are"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model_r, shape = bench_model(args.model, device)
    torch.manual_seed(1)
    model_s, _ = bench_model(args.model, device)
    x = torch.rand(args.pool, *shape, device=device)
    pool = Pool(x, torch.zeros(args.pool, dtype=torch.long))
    steps = PGD().steps
    jin = JIN(args.pool, batch_size=args.batch_size, random_state=0)
    batches = list(x.split(args.batch_size))
    print(
        f"device={device} threads={torch.get_num_threads()} model={args.model} "
        f"pool={args.pool} batch={args.batch_size} PGD-{steps} pairs={args.pairs} "
        "(median [min, max] of the rounds)",
        flush=True,
    )

    def bare() -> None:  # opens the views at each call, as JIN.score does (a few ms)
        with evaluation_view(model_r) as view_r, evaluation_view(model_s) as view_s:
            bare_passes(view_r, view_s, batches, steps)

    sides = [lambda: jin.score(model_r, model_s, pool), bare]
    if not args.no_plain:
        sides.append(lambda: bare_passes(model_r, model_s, batches, steps))
    times = rounds([stopwatch(side, device) for side in sides], args.pairs)
    copies = ratio(times[0], times[1])
    print(f"JIN.score                          {copies.a_median:8.3f} s")
    print(f"bare passes, same eval copies      {copies.b_median:8.3f} s   JIN / bare = {copies}")
    row: dict[str, object] = {
        "device": str(device),
        "model": args.model,
        "pool": args.pool,
        "JIN.score s": copies.a_median,
        "bare passes, same eval copies s": copies.b_median,
        "JIN / bare": str(copies),
    }
    if not args.no_plain:
        as_is = ratio(times[0], times[2])
        print(f"bare passes, user's models as is   {as_is.b_median:8.3f} s   JIN / bare = {as_is}")
        row["bare passes, models as given s"] = as_is.b_median
        row["JIN / bare as given"] = str(as_is)
    write_results(f"scoring-{device.type}", list(row), [row], device)


if __name__ == "__main__":
    main()
