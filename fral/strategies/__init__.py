"""Active-learning strategies, one small class per file, all behind one ``select`` signature."""

from fral.strategies.jin import JIN

__all__ = ["JIN"]
