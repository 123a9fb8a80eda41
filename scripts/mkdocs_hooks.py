"""MkDocs hooks: the pages that are generated at build time, never written by hand.

- ``reference/<module>.md``: one page per public module of fral (see ``scripts/docs_api.py``),
  rendered by mkdocstrings from the NumPy docstrings, and the "API reference" nav section.
- ``examples/<name>.ipynb``: the notebooks under ``examples/`` (and ``notebooks/`` while it
  exists), rendered by mkdocs-jupyter without executing them. Where ``build/notebooks/<name>``
  is newer than the notebook (written by ``make notebooks``), that executed copy is shown.
- ``examples/index.md``: the example scripts and notebooks, each with its docstring's summary.
- ``<!-- results: NAME -->`` in a page: replaced by the table of
  ``benchmarks/results/NAME.json``, written by the benchmark scripts (see
  ``scripts/results_tables.py``).
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_api
import results_tables

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_FOLDERS = ("examples",)
EXECUTED = ROOT / "build" / "notebooks"
STAGED = ROOT / "build" / "docs"


def notebook_sources() -> list[Path]:
    """The committed notebooks the docs render, one per name (``examples/`` first)."""
    found: dict[str, Path] = {}
    for folder in NOTEBOOK_FOLDERS:
        for source in sorted((ROOT / folder).glob("*.ipynb")):
            found.setdefault(source.name, source)
    return list(found.values())


def executed_copy(source: Path) -> Path | None:
    """``build/notebooks/<name>`` where it exists and is newer than ``source``."""
    executed = EXECUTED / source.name
    if executed.is_file() and executed.stat().st_mtime >= source.stat().st_mtime:
        return executed
    return None


def notebooks() -> dict[str, Path]:
    """The notebooks to render: page path (``examples/<name>.ipynb``) -> file to read."""
    return {
        f"examples/{source.name}": executed_copy(source) or source for source in notebook_sources()
    }


def _title(path: str) -> str:
    return path.removeprefix("fral.") if path != "fral" else "fral"


def reference_page(page: docs_api.ModulePage) -> str:
    """The Markdown of one module's reference page."""
    lines = [f"# `{page.path}`", ""]
    options = ["    options:", "      show_root_heading: false", "      show_root_toc_entry: false"]
    if page.documented:
        members = ", ".join(page.documented)
        options.append(f"      members: [{members}]")
    else:
        options.append("      members: false")
    lines += [f"::: {page.path}", *options, ""]
    if page.reexported:
        lines += [
            "## Also exported here",
            "",
            "| name | documented as |",
            "|---|---|",
            *(
                f"| `{name}` | [`{target}`][{target}] |"
                for name, target in sorted(page.reexported.items())
            ),
            "",
        ]
    return "\n".join(lines)


_PAGES: list[docs_api.ModulePage] = []


def on_config(config: Any) -> Any:
    """Fill the generated nav sections: the API reference and the example notebooks."""
    _PAGES[:] = docs_api.pages()
    generated = {
        "reference/": [{_title(page.path): page.page} for page in _PAGES],
        "examples/": [
            {"Overview": "examples/index.md"},
            *({Path(path).stem.replace("_", " "): path} for path in sorted(notebooks())),
        ],
    }
    for entry in config["nav"]:
        for title, value in entry.items():
            if isinstance(value, str) and value in generated:
                entry[title] = generated[value]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which claims the notebooks
def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages and the notebooks to the site's files."""
    for page in _PAGES:
        files.append(File.generated(config, page.page, content=reference_page(page)))
    # mkdocs-jupyter reads a notebook through its File's src_dir and src_uri, so each one is
    # staged as build/docs/examples/<name>.ipynb (a copy) and added as a plain file from there.
    for path, source in notebooks().items():
        staged = STAGED / path
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staged)
        files.append(File(path, str(STAGED), config["site_dir"], config["use_directory_urls"]))
    files.append(File.generated(config, "examples/index.md", content=examples_page()))
    return files


def _summary(text: str) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join(text.strip().split("\n\n", 1)[0].split())


def examples_page() -> str:
    """The Markdown of the examples overview: scripts with their summary, then notebooks."""
    lines = [
        "# Examples",
        "",
        "Scripts under `examples/` (each runs in seconds with `--quick`, and the tests run it):",
        "",
    ]
    for script in sorted((ROOT / "examples").glob("*.py")):
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
        lines.append(f"- `python examples/{script.name}`: {_summary(docstring)}")
    lines += ["", "Notebooks, rendered with their outputs where `make notebooks` ran them:", ""]
    for path, source in sorted(notebooks().items()):
        cells = json.loads(source.read_text())["cells"]
        markdown = next((c for c in cells if c["cell_type"] == "markdown"), None)
        title = "".join(markdown["source"]).splitlines()[0].lstrip("# ") if markdown else ""
        name = Path(path).name
        lines.append(f"- [{name}]({name}){': ' + title if title else ''}")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replace each ``<!-- results: NAME -->`` marker with its results table."""
    return results_tables.fill(markdown)
