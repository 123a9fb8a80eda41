"""Execute the notebooks under examples/ into build/notebooks/, for the docs to show.

The committed notebooks carry no outputs (they stay out of git) and the docs build never
executes them (``execute: false`` in mkdocs.yml: too slow for CI). This script runs each one top
to bottom in a fresh kernel, in its own folder as Jupyter would, and writes the executed copy to
``build/notebooks/<name>.ipynb``; the docs hook (``scripts/mkdocs_hooks.py``) shows that copy
wherever it is newer than the notebook. A notebook whose copy is already newer is skipped
(``--force`` runs it anyway); a cell that fails stops the script with the notebook's name.

    python scripts/execute_notebooks.py [--force] [--timeout 1800] [NAME.ipynb ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from mkdocs_hooks import EXECUTED, executed_copy, notebook_sources  # noqa: E402


def sources(names: list[str]) -> list[Path]:
    """The notebooks to run: those named, else every notebook the docs render."""
    found = notebook_sources()
    if not names:
        return found
    chosen = [path for path in found if path.name in names]
    unknown = set(names) - {path.name for path in chosen}
    if unknown:
        raise SystemExit(f"no notebook named {sorted(unknown)} among {[p.name for p in found]}")
    return chosen


def execute(source: Path, target: Path, timeout: int) -> float:
    """Run ``source`` in a fresh python3 kernel in its folder; write the result to ``target``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    ).execute()
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--force", action="store_true", help="also those already executed")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()
    for source in sources(args.names):
        target = EXECUTED / source.name
        if not args.force and executed_copy(source) is not None:
            print(f"{source.relative_to(ROOT)}: up to date ({target.relative_to(ROOT)})")
            continue
        print(f"{source.relative_to(ROOT)}: executing...", flush=True)
        seconds = execute(source, target, args.timeout)
        print(f"{source.relative_to(ROOT)}: {seconds:.0f} s -> {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
