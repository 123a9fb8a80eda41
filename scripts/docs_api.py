"""Which public symbol of fral is documented on which page of the API reference.

Shared by the MkDocs hook that writes the reference pages (``scripts/mkdocs_hooks.py``) and by
``tests/test_docs.py``, which checks the built site against it. Read statically with griffe
(the library mkdocstrings uses), so what is checked is what the site renders.

A public module is ``fral`` or any module under it with no path component starting with an
underscore. Its public symbols are the names in its ``__all__`` (dunder names such as
``__version__`` aside). A symbol is documented once, on its *home* page: following the chain of
re-exports (``fral.JIN`` -> ``fral.strategies.JIN`` -> ``fral.strategies.jin.JIN``), the last
object that lives in a public module. The other modules that export it link to that entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fral"


@dataclass
class ModulePage:
    """One page of the API reference: a public module, its own entries and its re-exports."""

    path: str
    documented: list[str] = field(default_factory=list)
    reexported: dict[str, str] = field(default_factory=dict)

    @property
    def page(self) -> str:
        """The page's path inside the docs folder."""
        return f"reference/{self.path}.md"


def load() -> griffe.Module:
    """fral as griffe reads it from this checkout, NumPy docstrings, aliases resolved."""
    return griffe.load(
        PACKAGE,
        search_paths=[str(ROOT)],
        docstring_parser="numpy",
        resolve_aliases=True,
        resolve_external=False,
    )


def is_public(path: str) -> bool:
    """Whether a dotted module path names a public module."""
    return not any(part.startswith("_") for part in path.split("."))


def public_modules(package: griffe.Module) -> list[griffe.Module]:
    """``package`` and every public module below it, depth first, sorted by name."""
    found = [package]
    for name in sorted(package.modules):
        module = package.modules[name]
        if is_public(module.path):
            found.extend(public_modules(module))
    return found


def exports(module: griffe.Module) -> list[str]:
    """The names in ``module.__all__``, dunder names aside."""
    names = [str(name) for name in (module.exports or ())]
    return [name for name in names if not (name.startswith("__") and name.endswith("__"))]


def home(obj: griffe.Object | griffe.Alias) -> griffe.Object | griffe.Alias:
    """The last object of ``obj``'s chain of re-exports that lives in a public module."""
    found = obj
    while obj.is_alias:
        obj = obj.target
        if is_public(obj.parent.path):
            found = obj
    return found


def pages(package: griffe.Module | None = None) -> list[ModulePage]:
    """One :class:`ModulePage` per public module, in reading order."""
    package = package if package is not None else load()
    result = []
    for module in public_modules(package):
        page = ModulePage(module.path)
        for name in exports(module):
            target = home(module[name])
            if target.path == f"{module.path}.{name}":
                page.documented.append(name)
            else:
                page.reexported[name] = target.path
        result.append(page)
    return result


def undocumented(package: griffe.Module | None = None) -> list[str]:
    """Public modules and symbols without a docstring, as dotted paths."""
    package = package if package is not None else load()
    missing = []
    for module in public_modules(package):
        if not module.docstring:
            missing.append(module.path)
        for name in exports(module):
            obj = module[name]
            target = obj.final_target if obj.is_alias else obj
            if not (obj.docstring or target.docstring):
                missing.append(f"{module.path}.{name}")
    return missing
