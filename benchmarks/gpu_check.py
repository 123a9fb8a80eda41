"""One prepared GPU check (under 8 minutes on a current card): correctness on CUDA, then the
speed figures of issue 12 in one printed table. Needs CUDA.

Checks (one line each, ``[ok]`` or ``[FAIL]``): models unchanged by every call on CUDA, PGD in
float64 equal on CUDA, on CPU and in torchattacks, every strategy selecting on CUDA, JIN's
scores on CUDA against the CPU's (float32) and bf16 against float32.

Measurements, each with the benchmark script that defines it (run here with ``--device cuda``
and fewer rounds), collected into one table at the end and written to
``benchmarks/results/gpu-cuda.json`` (rendered on the docs' benchmarks page):

- PGD against torchattacks, SmallCNN and MobileNetV2 (``bench_pgd.py``; goal >= 1.5x);
- the TRADES step against the official loop, and the standard step against a plain loop
  (``bench_training.py``; goal >= 2x);
- JIN's scoring throughput in float32 and bf16 (MobileNetV2-0.5 on digits_domains);
- a whole round of JIN, ``M_S`` from scratch and fine-tuned (``bench_round.py``).

Run on a GPU machine from the repository root:

    PYTHONPATH=. python benchmarks/gpu_check.py

``GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1`` makes a short dry run of every step on the CPU (to
try the script before spending GPU time; its figures are not written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_pgd
import bench_round
import bench_training
from _common import bench_model, timed, write_results

from fral import (
    JIN,
    PGD,
    STRATEGIES,
    Pool,
    build_strategy,
    embeddings,
    evaluate,
    pgd,
)
from fral.datasets import digits_domains
from fral.models import MobileNetV2
from fral.training import TrainConfig, Trainer
from tests.utils import assert_unchanged, make_net, snapshot

CUDA = torch.device(os.environ.get("GPU_CHECK_DEVICE", "cuda"))
#: A few-seconds dry run of every step (e.g. on the CPU before spending GPU time).
QUICK = bool(os.environ.get("GPU_CHECK_QUICK"))


#: The rows of the final table: what was measured, the figure, the goal.
TABLE: list[dict[str, Any]] = []


def measured(what: str, figure: str, goal: str = "-") -> None:
    TABLE.append({"measurement": what, "figure": figure, "goal": goal})
    print(f"  {what}: {figure}" + ("" if goal == "-" else f" (goal {goal})"), flush=True)


def check(name: str, passed: bool, detail: str = "") -> None:
    print(f"[{'ok' if passed else 'FAIL'}] {name} {detail}", flush=True)


def models_unchanged() -> None:
    for train in (True, False):
        net_r, net_s = make_net(seed=1, train=train).to(CUDA), make_net(seed=2).to(CUDA)
        before = snapshot(net_r)
        x = torch.rand(64, 1, 8, 8, device=CUDA)
        pool = Pool(x, torch.arange(64) % 2)
        validation = Pool(x[:32], torch.arange(32) % 2, labels=torch.arange(32) % 4)
        pgd(net_r, x)
        JIN(8, random_state=0).select(net_r, net_s, pool, validation=validation)
        JIN(8, random_state=0, amp=True).select(net_r, net_s, pool)
        evaluate(net_r, validation)
        embeddings(net_r, pool)
        assert_unchanged(net_r, before)
        check("model unchanged after pgd/JIN/evaluate/embeddings on CUDA", True, f"train={train}")


def pgd_matches_cpu_and_torchattacks() -> None:
    import torchattacks

    model, shape = bench_model("mobilenetv2", torch.device("cpu"))
    model = model.double()
    x = torch.rand(64, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (64,))
    options = {"eps": 4 / 255, "alpha": 2 / 255, "steps": 5, "random_start": False}
    on_cpu = pgd(model, x, y, **options)
    model_gpu = model.to(CUDA)
    on_gpu = pgd(model_gpu, x.to(CUDA), y.to(CUDA), **options).cpu()
    theirs = torchattacks.PGD(model_gpu, **options)(x.to(CUDA), y.to(CUDA)).cpu()
    cpu_gap, ta_gap = (on_gpu - on_cpu).abs().max().item(), (on_gpu - theirs).abs().max().item()
    check("pgd float64 CUDA == CPU", cpu_gap <= 1e-9, f"max|diff| {cpu_gap:.1e}")
    check("pgd float64 CUDA == torchattacks CUDA", ta_gap <= 1e-9, f"max|diff| {ta_gap:.1e}")


def jin_on_cuda() -> None:
    data = digits_domains()
    torch.manual_seed(0)
    model_r, model_s = MobileNetV2(10, 1, width=0.5), MobileNetV2(10, 1, width=0.5)
    labelled = data.train.pool().subset(torch.arange(200 if QUICK else 2000))
    for model, adversarial in ((model_r, True), (model_s, False)):
        config = TrainConfig(epochs=1 if QUICK else 8, batch_size=128, adversarial=adversarial)
        Trainer(model.to(CUDA), config, random_state=0).fit(labelled)
    end = 2300 if QUICK else None
    pool = Pool(data.train.x[2000:end], data.train.z[2000:end])
    attack = PGD(random_start=False)
    fp32 = JIN(300, attack=attack).score(model_r, model_s, pool)
    bf16 = JIN(300, attack=attack, amp=True).score(model_r, model_s, pool)
    cpu = JIN(300, attack=attack).score(model_r.cpu(), model_s.cpu(), pool)
    model_r.to(CUDA)
    model_s.to(CUDA)

    def overlap(a: torch.Tensor, b: torch.Tensor, k: int = 300) -> float:
        top_a, top_b = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
        return len(top_a & top_b) / k

    def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
        ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
        return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])

    fp32c = fp32.cpu()
    check(
        "JIN scores CUDA fp32 vs CPU",
        overlap(fp32c, cpu) > 0.95,
        f"top-300 overlap {overlap(fp32c, cpu):.3f}, Spearman {spearman(fp32c, cpu):.4f}",
    )
    check(
        "JIN scores CUDA bf16 vs fp32",
        overlap(bf16.cpu(), fp32c) > 0.8,
        f"top-300 overlap {overlap(bf16.cpu(), fp32c):.3f}, "
        f"Spearman {spearman(bf16.cpu(), fp32c):.4f}",
    )
    copies = 1 if QUICK else 4
    big = Pool(data.train.x[:end].repeat(copies, 1, 1, 1), data.train.z[:end].repeat(copies))
    for amp in (False, True):
        jin = JIN(100, batch_size=2048, amp=amp)
        seconds = timed(lambda jin=jin: jin.score(model_r, model_s, big), 3, CUDA)
        measured(
            f"JIN scoring, MobileNetV2-0.5 28 px, {'bf16' if amp else 'float32'}",
            f"{len(big) / seconds:,.0f} candidates/s ({len(big)} in {seconds:.2f} s)",
        )
    result = evaluate(model_r, data.test.pool())
    print(
        f"evaluate on CUDA: {result.summary()['robust_accuracy_worst']:.3f} worst robust acc",
        flush=True,
    )


def strategies_on_cuda() -> None:
    net_r, net_s = make_net(seed=1).to(CUDA), make_net(seed=2).to(CUDA)
    x = torch.rand(120, 1, 8, 8)
    pool, labeled = Pool(x, torch.arange(120) % 3), Pool(x[:30], torch.arange(30) % 3)
    validation = Pool(x[:45], torch.arange(45) % 3, labels=torch.arange(45) % 4)
    for name in STRATEGIES:
        options = {"progress": False, "top_k": 12} if name == "fairal" else {}
        strategy = build_strategy(name, 10, random_state=0, **options)
        picks = strategy.select(net_r, net_s, pool, labeled=labeled, validation=validation)
        ok = picks.dtype == torch.int64 and len(set(picks.tolist())) == len(picks) <= 10
        check(f"{strategy.name} selects on CUDA", ok, f"{len(picks)} picks")


def pgd_speed() -> None:
    batch = 16 if QUICK else 256
    args = argparse.Namespace(batch_size=batch, steps=5, pairs=1 if QUICK else 5, amp=True)
    for name in ("smallcnn", "mobilenetv2"):
        row = bench_pgd.compare(name, args, CUDA)
        measured(f"PGD-5 vs torchattacks, {name}, batch {batch}", row["speed-up"], ">= 1.5x")
        measured(f"PGD-5 bf16 vs torchattacks, {name}", row["bf16 speed-up"])


def training_speed() -> None:
    batch = 16 if QUICK else 128
    args = argparse.Namespace(batch_size=batch, batches=1 if QUICK else 8, pairs=1 if QUICK else 5)
    for name in ("smallcnn", "mobilenetv2"):
        for row in bench_training.compare(name, args, CUDA):
            goal = ">= 2x" if row["step"] == "TRADES (official form)" else "-"
            measured(
                f"{row['step']} vs reference loop, {name}, batch {batch}",
                f"{row['speed-up']} ({row['fral img/s']:,.0f} img/s)",
                goal,
            )


def round_cost() -> None:
    args = bench_round.parser().parse_args(
        [
            "--device",
            str(CUDA),
            "--epochs",
            "1" if QUICK else "5",
            "--strategies",
            "jin",
            "--repeats",
            "1" if QUICK else "3",
        ]
    )
    for row in bench_round.run(args, bench_round.prepare(args)):
        measured(
            f"JIN round, M_S {row['M_S']}, SmallCNN digits_domains, {args.epochs} epochs",
            f"{row['round s']:.1f} s; selection / fine-tuning "
            f"{row['selection / fine-tuning %']:.1f}% "
            f"{row['selection / fine-tuning [min, max]']}",
            "<= 12%" if row["M_S"] == "scratch" else "<= 8%",
        )


def main() -> None:
    if CUDA.type == "cuda" and not torch.cuda.is_available():
        sys.exit("needs CUDA")
    name = torch.cuda.get_device_name() if CUDA.type == "cuda" else "CPU dry run"
    print(f"torch {torch.__version__}, {name}", flush=True)
    steps = (
        models_unchanged,
        pgd_matches_cpu_and_torchattacks,
        strategies_on_cuda,
        jin_on_cuda,
        pgd_speed,
        training_speed,
        round_cost,
    )
    for step in steps:
        start = time.perf_counter()
        try:
            step()
        except Exception as error:  # report and go on: one run must say as much as it can
            check(step.__name__, False, f"{type(error).__name__}: {error}")
        print(f"  ({step.__name__}: {time.perf_counter() - start:.1f} s)", flush=True)
    width = max(len(row["measurement"]) for row in TABLE) if TABLE else 0
    print(f"\n{name}, torch {torch.__version__}")
    for row in TABLE:
        print(f"{row['measurement']:<{width}}  {row['figure']}  (goal {row['goal']})")
    if TABLE and CUDA.type == "cuda" and not QUICK:
        write_results("gpu-cuda", ["measurement", "figure", "goal"], TABLE, CUDA)


if __name__ == "__main__":
    main()
