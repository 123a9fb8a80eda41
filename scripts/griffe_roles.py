"""A griffe extension for the docs: Sphinx roles in fral's docstrings become code spans.

fral's NumPy docstrings name other objects with Sphinx roles (``:func:`pgd```,
``:class:`~fral.pool.Pool```), which mkdocstrings would print as they are. This extension,
loaded by mkdocs.yml, rewrites each role to a code span of its target (``~`` keeps the last
component, as Sphinx shows it) when griffe loads the docstrings for the site; the source is
not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:attr|class|data|exc|func|meth|mod|obj):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``text`` with every Sphinx role replaced by a code span of its target."""

    def span(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        if match.group(1):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(span, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Called for each object griffe builds, its docstring already attached."""
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
