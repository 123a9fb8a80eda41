"""Seeds and generators: every random draw in fral comes from an explicit torch.Generator."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RandomState", "make_generator", "resolve_seed"]

RandomState = int | np.integer | torch.Generator | None


def resolve_seed(random_state: RandomState) -> int:
    """An integer seed from ``random_state``.

    ``None`` draws one from torch's global RNG (so ``torch.manual_seed`` makes it
    reproducible); an int is used as is; a ``torch.Generator`` gives its next draw.
    """
    if random_state is None:
        return int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=random_state).item())
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    raise TypeError(
        f"random_state must be None, an int or a torch.Generator, got {type(random_state).__name__}"
    )


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator
