"""Label for real: plug your annotation tool in as the oracle, survive its failures.

The oracle is any callable ``oracle(indices) -> labels`` (training-split indices in, one integer
label per index out). Every answer is written to disk before the next question, so when the
tool fails (here: a simulated outage after 40 labels) nothing is lost: the run is resumed, the
answered samples are never asked again, and the result equals an uninterrupted run.

    python examples/your_own_oracle.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from fral.datasets import digits_domains
from fral.loop import run_experiment
from fral.training import TrainConfig


class AnnotationTool:
    """Stands in for your labelling service; ``fail_after`` simulates an outage."""

    def __init__(self, truth: torch.Tensor, fail_after: int | None = None) -> None:
        self.truth, self.fail_after, self.answered = truth, fail_after, 0

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.answered >= self.fail_after:
            raise ConnectionError("annotation service unavailable")
        self.answered += len(indices)
        return self.truth[indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    args = parser.parse_args()
    data = digits_domains()
    if args.quick:
        data = data.subsample(train=600, validation=100, test=200, seed=0)
    train = TrainConfig(epochs=1 if args.quick else 10, batch_size=64, lr=0.05, warmup_epochs=0)
    options = {"rounds": 2, "train": train, "oracle_batch_size": 8, "seed": 0}
    with tempfile.TemporaryDirectory() as folder:
        tool = AnnotationTool(data.train.y, fail_after=40)
        try:
            run_experiment("JIN", data, checkpoint_dir=folder, oracle=tool, **options)
        except ConnectionError as error:
            saved = json.loads((Path(folder) / "open_round.json").read_text())
            print(
                f"interrupted ({error}); {len(saved['labels'])} answers of round "
                f"{saved['round']} are on disk"
            )
        tool = AnnotationTool(data.train.y)
        resumed = run_experiment(
            "JIN", data, checkpoint_dir=folder, oracle=tool, resume=True, **options
        )
        print(
            f"resumed: the tool was asked {tool.answered} more labels; "
            f"{resumed.labeled.numel()} labelled in total"
        )
    uninterrupted = run_experiment("JIN", data, oracle=AnnotationTool(data.train.y), **options)
    assert torch.equal(uninterrupted.labeled, resumed.labeled)
    print("the resumed run labelled exactly what an uninterrupted run labels")


if __name__ == "__main__":
    main()
