"""Markdown tables from the benchmark results under ``benchmarks/results/``.

Each benchmark script writes ``benchmarks/results/<name>.json`` through
``benchmarks/_common.write_results``: the command, the date, the machine and a list of rows
(one dict per measured case) with the order of the columns. A page asks for a table with the
marker ``<!-- results: <name> -->``; the docs build replaces it, so no figure is typed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!-- results: ([A-Za-z0-9_-]+) -->")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def table(name: str) -> str:
    """The Markdown for ``benchmarks/results/<name>.json``: where and how, then the rows."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.relative_to(ROOT)} is missing: run the benchmark that writes it "
            f"(see benchmarks/) before building the docs"
        )
    result = json.loads(path.read_text())
    columns = result["columns"]
    lines = [
        f"Measured on {result['date']} on {result['machine']} with `{result['command']}` "
        f"(`{path.relative_to(ROOT)}`).",
        "",
        "| " + " | ".join(_cell(column) for column in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in result["rows"]:
        lines.append("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)


def fill(markdown: str) -> str:
    """``markdown`` with every results marker replaced by its table."""
    return MARKER.sub(lambda match: table(match.group(1)), markdown)
