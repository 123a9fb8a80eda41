"""JIN, BADGE and an evaluation across processes with torch.distributed (torchrun).

Every rank builds the same pool and models and makes the same calls; fral splits the pool
into contiguous shards, each rank scores its own, and every rank gets the picks one process
would make. Launch it with torchrun (gloo on CPUs, NCCL on GPUs)::

    torchrun --nproc_per_node=2 examples/distributed_selection.py
    python examples/distributed_selection.py            # one process: the same picks
    python examples/distributed_selection.py --quick    # both, compared (a few seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from fral import BADGE, JIN, evaluate
from fral.datasets import digits_domains
from fral.distributed import sharding
from fral.models import SmallCNN
from fral.training import adversarial_train, standard_train


def select(train: int) -> dict[str, list]:
    """Train two small models, then select with JIN and BADGE and evaluate; the same results
    on every rank.

    The training here runs whole on every rank (``sharding(enabled=False)``), so that the
    models are bit for bit those of one process and the comparison of ``--quick`` is exact;
    without that block it is data-parallel (see ``fral.training.Trainer``): the same steps up
    to float rounding, and BatchNorm statistics from each rank's part of a batch.
    """
    torch.set_num_threads(1)
    data = digits_domains().subsample(train=train, seed=0)
    labelled = data.train.pool().subset(torch.arange(300))
    pool = data.train.pool(labeled=False).subset(torch.arange(300, train))
    torch.manual_seed(0)
    model_r, model_s = SmallCNN(channels=(8, 16)), SmallCNN(channels=(8, 16))
    with sharding(enabled=False):
        adversarial_train(model_r, labelled, epochs=1, batch_size=32, random_state=0)
        standard_train(model_s, labelled, epochs=1, batch_size=32, random_state=0)
    if dist.is_initialized() and dist.get_backend() == "nccl":  # each rank on its own GPU
        model_r, model_s = model_r.cuda(), model_s.cuda()
    validation = data.validation.pool()
    jin = JIN(20, batch_size=64, random_state=0)
    badge = BADGE(20, batch_size=64, random_state=0)
    result = evaluate(model_r, data.test.pool(), batch_size=64)
    return {
        "JIN": jin.select(model_r, model_s, pool, validation=validation).tolist(),
        "BADGE": badge.select(model_r, pool=pool).tolist(),
        "robust accuracy per group": result.robust["accuracy"].per_group.tolist(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 processes, compared")
    parser.add_argument("--train", type=int, default=1500, help="training samples")
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "picks.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
            command += ["--master_addr=127.0.0.1", f"--master_port={free_port()}", __file__]
            subprocess.run([*command, "--train=700", f"--out={out}"], check=True)
            two = json.loads(out.read_text())
        one = select(700)
        print(json.dumps(one))
        same = one == two
        print("2 processes:", "picks and evaluation identical to one process" if same else two)
        sys.exit(0 if same else 1)
    if "WORLD_SIZE" in os.environ:  # started by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend)
    results = select(args.train)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps(results))
        if args.out:
            Path(args.out).write_text(json.dumps(results))
    if dist.is_initialized():
        dist.barrier()  # last: the collectives before are released before Python shuts down
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
