"""What the verified eval copy costs: fral's PGD and JIN scoring with and without the check.

Every call that evaluates a model checks, on a few samples of its first batch, that the optimised
copy gives the model's own eval-mode output (see ``fral._modules``). This script times the two
common calls, ``pgd`` on a batch and ``JIN.score`` on a pool, with the check as shipped (A) and
with it bypassed (B), alternating A B A B ... after a warm-up, and prints the median ratio A / B
with its range. The check must cost the common case under 5%.

    python benchmarks/bench_verify.py [--pairs 7] [--model mobilenetv2 smallcnn]
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
from _common import alternate, bench_model, write_results

from fral import JIN, Pool
from fral._modules import EvalView
from fral.attacks import pgd

_VERIFY = EvalView.verify


def _bypass(self: EvalView, x: torch.Tensor) -> None:
    self._verified = True


def _with_check(fn: Callable[[], object], verify: bool) -> Callable[[], object]:
    """``fn`` run with the check as shipped (``verify``) or bypassed."""

    def run() -> object:
        EvalView.verify = _VERIFY if verify else _bypass
        try:
            return fn()
        finally:
            EvalView.verify = _VERIFY

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["mobilenetv2", "smallcnn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--pool", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"threads={torch.get_num_threads()} pairs={args.pairs} (ratio: with check / without)")
    rows = []
    for name in args.model:
        model_r, shape = bench_model(name, device)
        torch.manual_seed(1)
        model_s, _ = bench_model(name, device)
        x = torch.rand(args.batch_size, *shape)
        pool = Pool(torch.rand(args.pool, *shape), torch.zeros(args.pool, dtype=torch.long))
        jin = JIN(10, random_state=0)
        calls = {
            f"pgd, batch {args.batch_size}": functools.partial(pgd, model_r, x),
            f"JIN.score, pool {args.pool}": functools.partial(jin.score, model_r, model_s, pool),
        }
        row = {"model": name}
        for label, fn in calls.items():
            cost = alternate(_with_check(fn, True), _with_check(fn, False), args.pairs, device)
            print(f"{name:12s} {label:22s} median {cost}")
            row[label] = str(cost)
        rows.append(row)
    write_results("verify", list(rows[0]), rows, device)


if __name__ == "__main__":
    main()
