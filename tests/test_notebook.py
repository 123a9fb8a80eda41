"""The quick-start notebook's code cells run in order, as a kernel would run them."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_notebook_runs(capsys) -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    for number, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}[{number}]", "exec"), namespace)
    assert len(namespace["picks"]) == 60
    assert (namespace["pool"].groups[namespace["picks"]] == namespace["z_star"]).all()
    assert "| JIN |" in capsys.readouterr().out
