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

The paper's ablations (Table 3) have names too: ``JIN-S`` is JIN with the standard
inconsistency alone (``components=("standard",)``), ``JIN-R`` with the robust one alone.
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
    "ABLATIONS",
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
    "strategy_class",
    "strategy_key",
]

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
"""The paper's names (lower case, dashes optional) to strategy classes."""


ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "jin-s": ("jin", {"components": ("standard",)}),
    "jin-r": ("jin", {"components": ("robust",)}),
}
"""Named ablations: (base key in :data:`STRATEGIES`, constructor options they fix)."""


def strategy_key(name: str) -> str:
    """The :data:`STRATEGIES` or :data:`ABLATIONS` key of a paper name (case, ``_`` and ``G-``
    spelling forgiven)."""
    key = name.lower().replace("_", "-")
    if key in ("grand", "gent"):
        key = f"g-{key[1:]}"
    if key not in STRATEGIES and key not in ABLATIONS:
        choices = ", ".join([*STRATEGIES, *ABLATIONS])
        raise ValueError(f"unknown strategy {name!r}; choose from {choices}")
    return key


def strategy_class(name: str) -> type[Strategy]:
    """The class behind a paper name (``"JIN-S"`` gives :class:`JIN`)."""
    key = strategy_key(name)
    return STRATEGIES[ABLATIONS[key][0] if key in ABLATIONS else key]


def build_strategy(name: str, budget: int, **options: Any) -> Strategy:
    """A strategy by its paper name (``"JIN"``, ``"G-RAND"``, ``"FairAL"``, ``"JIN-S"``...),
    case-insensitive.

    ``options`` go to the strategy's constructor (``random_state``, ``attack``...); an
    ablation's own options (JIN-S's ``components``) cannot be overridden.
    """
    key = strategy_key(name)
    if key in ABLATIONS:
        fixed = ABLATIONS[key][1]
        clash = sorted(set(fixed) & set(options))
        if clash:
            raise ValueError(f"{name} fixes {', '.join(clash)}; use 'JIN' to choose them")
        options = {**options, **fixed}
    return strategy_class(key)(budget, **options)
