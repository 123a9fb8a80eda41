"""Label for real: plug your annotation tool in as the oracle, survive its failures.

The oracle is any callable ``oracle(indices) -> labels`` (training-split indices in, one integer
label per index out). Every answer is written to disk before the next question, so when the
tool fails (here: a simulated outage in the middle of round 2, after one and a half rounds'
budget of answers) nothing is lost: the run is resumed, the answered samples are never asked
again, and the result equals an uninterrupted run. The script checks all three and fails
otherwise.

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
    """Stands in for your labelling service; ``fail_after`` answers, then an outage."""

    def __init__(self, truth: torch.Tensor, fail_after: int | None = None) -> None:
        self.truth, self.fail_after = truth, fail_after
        self.asked: list[int] = []  # every index this tool answered, in order

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and len(self.asked) >= self.fail_after:
            raise ConnectionError("annotation service unavailable")
        self.asked.extend(indices.tolist())
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
    budget = round(0.02 * len(data.train))  # the loop's default budget per round
    fail_after = budget + budget // 2  # round 1 is complete, round 2 half answered
    with tempfile.TemporaryDirectory() as folder:
        first = AnnotationTool(data.train.y, fail_after=fail_after)
        try:
            run_experiment("JIN", data, checkpoint_dir=folder, oracle=first, **options)
        except ConnectionError as error:
            saved = json.loads((Path(folder) / "open_round.json").read_text())
            print(
                f"outage after {len(first.asked)} answers ({error}); round {saved['round']} "
                f"is open with {len(saved['labels'])} of its {len(saved['picks'])} answers on disk"
            )
        else:
            raise AssertionError("the simulated outage did not happen")
        second = AnnotationTool(data.train.y)
        resumed = run_experiment(
            "JIN", data, checkpoint_dir=folder, oracle=second, resume=True, **options
        )
    initial = resumed.history[0]["labeled"]
    queried = resumed.labeled[initial:].tolist()
    # Nothing lost, nothing asked twice: the two tools together answered each pick once.
    assert not set(first.asked) & set(second.asked), "a sample was asked twice"
    assert first.asked + second.asked == queried, "an answer was lost"
    assert torch.equal(resumed.labels, data.train.y[resumed.labeled])
    print(
        f"resumed: {len(second.asked)} more labels asked, none twice; "
        f"{len(first.asked)} + {len(second.asked)} = {len(queried)} queried, "
        f"{resumed.labeled.numel()} labelled in total"
    )
    uninterrupted = run_experiment("JIN", data, oracle=AnnotationTool(data.train.y), **options)
    assert torch.equal(uninterrupted.labeled, resumed.labeled)
    assert uninterrupted.history[-1]["test"] == resumed.history[-1]["test"]
    print("the resumed run labelled exactly what an uninterrupted run labels")


if __name__ == "__main__":
    main()
