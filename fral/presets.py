"""The paper's settings for each of its data sets, as ``fral run --dataset NAME`` applies them.

From the paper's main text ("Training Protocol", active-learning setting) and its
supplementary ("Training Details"):

==============  ==========  ======  =====  ====  =========  ======  ==========
data set        SGD lr      E       E_w    B     metric     overs.  network
==============  ==========  ======  =====  ====  =========  ======  ==========
``utkface``     0.1         70      10     32    accuracy   no      MobileNetV2
``cinic10``     0.1         100     10     64    accuracy   no      MobileNetV2
``ham10000``    0.02        50      5      32    macro-F1   yes     MobileNetV2
==============  ==========  ======  =====  ====  =========  ======  ==========

Common to all three: SGD with momentum 0.9 and weight decay 2e-4, linear warm-up for ``E_w``
epochs then cosine annealing; TRADES adversarial training and a PGD-5 threat model at
``eps = 4/255``, step ``2/255``, inputs in ``[0, 1]``; MobileNetV2 at full width, not
pre-trained; 5 rounds, 20% of the training split labelled at start, a budget of 2% per round.
The training values come from :data:`fral.training.PRESETS` (one source for both).

What fral does with them, exactly:

- Round 0 trains ``M_R`` with TRADES for ``E`` epochs (peak lr, warm-up ``E_w``, batch ``B``).
- Each round's Adv-TRAIN ("for each active learning iteration, we adversarially train the
  model for E epochs") runs the same schedule again, ``E`` epochs with a fresh warm-up and
  cosine from the same peak lr, continuing from the current weights and SGD momentum buffers
  (Algorithm 1 fine-tunes ``M_R``; the paper does not say whether the optimiser state is
  kept: fral keeps it).
- ``M_S`` (for JIN and the strategies that need a standard model) is trained from scratch
  every round ("for each active selection step, we first train an auxiliary standard model
  under full supervision"), with cross-entropy and the same schedule (``E``, ``E_w``, lr,
  ``B``); the paper does not give ``M_S``'s schedule, this is fral's choice.
- When a command line shortens a phase's epochs without ``--warmup-epochs``, that phase's
  warm-up shrinks in proportion (``E_w * epochs / E``), keeping the schedule's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fral.training import PRESETS as TRAINING_PRESETS
from fral.training import TrainConfig

__all__ = ["PAPER_PRESETS", "PaperPreset", "paper_preset"]


@dataclass(frozen=True)
class PaperPreset:
    """The paper's settings for one data set.

    Attributes
    ----------
    dataset : str
        The data set's name in :data:`fral.datasets.DATASETS`.
    train : TrainConfig
        Adversarial training of every phase (round 0 and each round): lr, momentum, weight
        decay, ``E``, ``E_w``, ``B``, oversampling, the TRADES threat model.
    model : str
        The network, for :func:`fral.loop.default_model_fn` (``"mobilenetv2"``).
    width : float
        Its width multiplier (1.0: the standard network).
    rounds, initial_fraction, budget_fraction : int, float, float
        The active-learning protocol: ``K = 5``, 20% labelled at start, 2% per round.
    attack_steps : int
        PGD steps of the evaluation and the strategies' attacks (PGD-5).
    standard_mode : str
        How ``M_S`` is trained each round (``"scratch"``, as the paper).
    metric : str
        The per-group metric of the paper's tables (``"f1"``: macro-F1, for HAM-10000).
    data_layout : str
        What ``--data-dir`` must hold (for error messages).
    """

    dataset: str
    train: TrainConfig
    model: str = "mobilenetv2"
    width: float = 1.0
    rounds: int = 5
    initial_fraction: float = 0.2
    budget_fraction: float = 0.02
    attack_steps: int = 5
    standard_mode: str = "scratch"
    metric: str = "accuracy"
    data_layout: str = ""

    def options(self) -> dict[str, Any]:
        """The preset as values of ``fral run``'s options (their argparse ``dest`` names).

        Returns
        -------
        dict
            ``rounds``, ``initial_fraction``, ``budget_fraction``, ``attack_steps``,
            ``standard_mode``, ``model``, ``width``, ``epochs``, ``finetune_epochs``,
            ``standard_epochs``, ``lr``, ``finetune_lr``, ``warmup_epochs``, ``batch_size``,
            ``momentum``, ``weight_decay``, ``beta``, ``oversample``, ``metric``, ``eps``,
            ``alpha``, ``bounds`` (a list ``[low, high]``).
        """
        train = self.train
        return {
            "rounds": self.rounds,
            "initial_fraction": self.initial_fraction,
            "budget_fraction": self.budget_fraction,
            "attack_steps": self.attack_steps,
            "standard_mode": self.standard_mode,
            "model": self.model,
            "width": self.width,
            "epochs": train.epochs,
            "finetune_epochs": train.epochs,
            "standard_epochs": train.epochs,
            "lr": train.lr,
            "finetune_lr": train.lr,
            "warmup_epochs": train.warmup_epochs,
            "batch_size": train.batch_size,
            "momentum": train.momentum,
            "weight_decay": train.weight_decay,
            "beta": train.beta,
            "oversample": train.oversample,
            "metric": self.metric,
            "eps": train.eps,
            "alpha": train.alpha,
            "bounds": list(train.bounds),
        }


PAPER_PRESETS: dict[str, PaperPreset] = {
    "utkface": PaperPreset(
        "utkface",
        TRAINING_PRESETS["utkface"],
        data_layout="the UTKFace images, named age_gender_race_datetime.jpg (the UTKFace/ "
        "folder, or the in-the-wild part1/ part2/ part3/ folders)",
    ),
    "cinic10": PaperPreset(
        "cinic10",
        TRAINING_PRESETS["cinic10"],
        data_layout="CINIC-10's train/, valid/ and test/ folders, one sub-folder per class",
    ),
    "ham10000": PaperPreset(
        "ham10000",
        TRAINING_PRESETS["ham10000"],
        metric="f1",
        data_layout="HAM10000_metadata.csv and the image folders (HAM10000_images_part_1/, "
        "HAM10000_images_part_2/)",
    ),
}
"""The paper's settings by data set name."""


def paper_preset(name: str) -> PaperPreset | None:
    """The paper's settings for data set ``name``, ``None`` for a data set not in the paper."""
    return PAPER_PRESETS.get(name)
