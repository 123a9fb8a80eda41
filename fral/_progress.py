"""One rule for progress bars: a bar in a terminal, quiet in logs and notebooks unless asked.

Every long-running call of fral (training, the loop, FairAL, AutoAttack, the command line)
takes ``progress: bool | None``:

* ``True`` / ``False``: a bar, or none, as asked;
* ``None`` (the default everywhere): the environment variable ``FRAL_PROGRESS`` decides when
  it is set (``1``/``true``/``yes``/``on`` for bars, ``0``/``false``/``no``/``off`` for
  none); otherwise a bar is shown only when standard error is a terminal, so a log file, a CI
  job or a notebook stays quiet.

The bars are tqdm's text bars, written to standard error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm

__all__ = ["ENVIRONMENT_VARIABLE", "progress_bar", "show_progress"]

ENVIRONMENT_VARIABLE = "FRAL_PROGRESS"
"""The environment variable that decides ``progress=None`` when set."""

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off", ""}


def check_progress(value: Any, name: str = "progress") -> bool | None:
    """``value`` if it is ``True``, ``False`` or ``None``, else a ``TypeError`` naming it."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be True, False or None (automatic), got {value!r}")
    return value


def show_progress(progress: bool | None) -> bool:
    """Whether to draw a bar for ``progress`` (``True``, ``False`` or ``None``: automatic).

    Raises
    ------
    ValueError
        For a ``FRAL_PROGRESS`` value that is neither on nor off.
    """
    check_progress(progress)
    if progress is not None:
        return progress
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured is not None:
        value = configured.strip().lower()
        if value in _ON:
            return True
        if value in _OFF:
            return False
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}={configured!r}: use 1 (progress bars) or 0 (none)"
        )
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def progress_bar(
    iterable: Iterable[Any] | None = None, *, progress: bool | None, **options: Any
) -> tqdm:
    """A tqdm text bar over ``iterable`` (``options`` as tqdm's), shown per
    :func:`show_progress`."""
    return tqdm(iterable, disable=not show_progress(progress), **options)
