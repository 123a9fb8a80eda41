"""JIN's scoring time against the bare cost of the passes it has to make, in one run.

Per candidate batch JIN must run: one clean forward of M_R, one of M_S, the attack's steps
(forward + backward w.r.t. the input of M_R) and one forward of M_R on the adversarial batch.
The "bare" loops below run exactly those passes and nothing else (no KL, z-score, sort, copy
or validation), once on the same eval copies JIN uses (BatchNorm folded: the overhead ratio,
goal <= 1.10) and once on the user's models as they are (what a hand-written loop would cost).
Run:

    .venv/bin/python benchmarks/bench_scoring.py [--pool 1024] [--device cuda]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import bench_model, timed

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
    parser.add_argument("--pool", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
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

    t_jin = timed(lambda: jin.score(model_r, model_s, pool), args.repeats, device)
    with evaluation_view(model_r) as view_r, evaluation_view(model_s) as view_s:
        t_bare = timed(lambda: bare_passes(view_r, view_s, batches, steps), args.repeats, device)
    model_r.eval()
    model_s.eval()
    t_plain = timed(lambda: bare_passes(model_r, model_s, batches, steps), args.repeats, device)
    print(
        f"device={device} threads={torch.get_num_threads()} model={args.model} "
        f"pool={args.pool} batch={args.batch_size} PGD-{steps}"
    )
    print(f"JIN.score                          {t_jin:8.3f} s")
    print(f"bare passes, same eval copies      {t_bare:8.3f} s   JIN / bare = {t_jin / t_bare:.3f}")
    print(
        f"bare passes, user's models as is   {t_plain:8.3f} s   JIN / bare = {t_jin / t_plain:.3f}"
    )


if __name__ == "__main__":
    main()
