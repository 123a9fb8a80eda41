"""fral: Fair Robust Active Learning for PyTorch.

>>> from fral import JIN, Pool
>>> picks = JIN(budget=100).select(model_r, model_s, Pool(x, groups))  # doctest: +SKIP
"""

from fral._modules import OptimizationWarning, clear_cache
from fral._progress import show_progress
from fral.active_set import ActiveSet
from fral.attacks import PGD, TorchattacksAttack, as_attack, pgd
from fral.autoattack import AutoAttack
from fral.datasets import FairDataset, load_dataset
from fral.loop import initialize, run_experiment
from fral.metrics import (
    ConfidenceIntervals,
    Evaluation,
    GroupMetric,
    evaluate,
    group_accuracy,
    group_f1,
    group_ranking,
    worst_group,
)
from fral.pool import Pool
from fral.predict import embeddings, logits, probabilities
from fral.protocol import QueryStrategy, Strategy
from fral.scores import (
    entropy,
    fuse,
    kl_from_logits,
    robust_inconsistency,
    standard_inconsistency,
    zscore,
)
from fral.scoring import (
    entropy_scores,
    inconsistency_scores,
    robust_inconsistency_scores,
    standard_inconsistency_scores,
)
from fral.strategies import (
    BADGE,
    CSET,
    ENT,
    GENT,
    GRAND,
    JIN,
    OPT,
    RAND,
    STRATEGIES,
    FairAL,
    MinMax,
    build_strategy,
)
from fral.training import (
    INHERIT,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    adversarial_train,
    standard_train,
    trades_loss,
)

__version__ = "0.2.0"

__all__ = [
    "BADGE",
    "CSET",
    "ENT",
    "GENT",
    "GRAND",
    "INHERIT",
    "JIN",
    "OPT",
    "PGD",
    "RAND",
    "STRATEGIES",
    "ActiveSet",
    "AutoAttack",
    "ConfidenceIntervals",
    "Evaluation",
    "FairAL",
    "FairDataset",
    "GroupMetric",
    "MinMax",
    "NonFiniteLossError",
    "OptimizationWarning",
    "Pool",
    "QueryStrategy",
    "Strategy",
    "TorchattacksAttack",
    "TrainConfig",
    "Trainer",
    "__version__",
    "adversarial_train",
    "as_attack",
    "build_strategy",
    "clear_cache",
    "embeddings",
    "entropy",
    "entropy_scores",
    "evaluate",
    "fuse",
    "group_accuracy",
    "group_f1",
    "group_ranking",
    "inconsistency_scores",
    "initialize",
    "kl_from_logits",
    "load_dataset",
    "logits",
    "pgd",
    "probabilities",
    "robust_inconsistency",
    "robust_inconsistency_scores",
    "run_experiment",
    "show_progress",
    "standard_inconsistency",
    "standard_inconsistency_scores",
    "standard_train",
    "trades_loss",
    "worst_group",
    "zscore",
]
