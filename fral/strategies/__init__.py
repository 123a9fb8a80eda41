"""Active-learning strategies, one small class per file, all behind one ``select`` signature.

=========  ============================================  ====================================
name       class                                         needs
=========  ============================================  ====================================
JIN        :class:`~fral.strategies.jin.JIN`             model_s (validation: worst group)
RAND       :class:`~fral.strategies.random.RAND`         -
ENT        :class:`~fral.strategies.entropy.ENT`         -
CSET       :class:`~fral.strategies.coreset.CSET`        labeled
BADGE      :class:`~fral.strategies.badge.BADGE`         -
G-RAND     :class:`~fral.strategies.group_random.GRAND`  validation (or group=k)
G-ENT      :class:`~fral.strategies.group_entropy.GENT`  validation (or group=k)
MinMax     :class:`~fral.strategies.minmax.MinMax`       validation
OPT        :class:`~fral.strategies.opt.OPT`             validation, labeled
FairAL     :class:`~fral.strategies.fairal.FairAL`       validation
=========  ============================================  ====================================
"""

from __future__ import annotations

from typing import Any

from fral.protocol import Strategy
from fral.strategies.badge import BADGE
from fral.strategies.coreset import CSET
from fral.strategies.entropy import ENT
from fral.strategies.fairal import FairAL
from fral.strategies.group_entropy import GENT
from fral.strategies.group_random import GRAND
from fral.strategies.jin import JIN
from fral.strategies.minmax import MinMax
from fral.strategies.opt import OPT
from fral.strategies.random import RAND

__all__ = [
    "BADGE",
    "CSET",
    "ENT",
    "GENT",
    "GRAND",
    "JIN",
    "OPT",
    "RAND",
    "STRATEGIES",
    "FairAL",
    "MinMax",
    "build_strategy",
    "strategy_key",
]

#: The paper's names (lower case, dashes optional) to strategy classes.
STRATEGIES: dict[str, type[Strategy]] = {
    "jin": JIN,
    "rand": RAND,
    "ent": ENT,
    "cset": CSET,
    "badge": BADGE,
    "g-rand": GRAND,
    "g-ent": GENT,
    "minmax": MinMax,
    "opt": OPT,
    "fairal": FairAL,
}


def strategy_key(name: str) -> str:
    """The :data:`STRATEGIES` key of a paper name (case, ``_`` and ``G-`` spelling forgiven)."""
    key = name.lower().replace("_", "-")
    if key in ("grand", "gent"):
        key = f"g-{key[1:]}"
    if key not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return key


def build_strategy(name: str, budget: int, **options: Any) -> Strategy:
    """A strategy by its paper name (``"JIN"``, ``"G-RAND"``, ``"FairAL"``...), case-insensitive.

    ``options`` go to the strategy's constructor (``random_state``, ``attack``...).
    """
    return STRATEGIES[strategy_key(name)](budget, **options)
