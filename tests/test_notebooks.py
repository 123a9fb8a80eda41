"""The notebooks under examples/ run top to bottom at their CI size and show what they claim.

Each notebook is executed in a fresh kernel (nbclient) with ``FRAL_EXAMPLE_SIZE=ci``, in a
temporary working directory; a cell appended here (never committed) prints, as JSON, the values
that the notebook's claims rest on, and the test asserts the claims on them.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Per notebook: code run after its last cell, printing the values its claims rest on as JSON.
PROBES = {
    "quickstart.ipynb": """
import json
print(json.dumps({
    "budget": budget,
    "picks": picks.tolist(),
    "groups_of_picks": pool.groups[picks].tolist(),
    "z_star": int(z_star),
    "clean_average": before.clean["accuracy"].average,
    "num_classes": data.num_classes,
    "results": [r.to_dict() for r in results],
}))
""",
    "full_loop.ipynb": """
import json
print(json.dumps({
    "rounds": rounds,
    "history": result.history,
    "longer": longer.history,
    "files": sorted(p.name for p in folder.iterdir()),
    "num_classes": data.num_classes,
}))
""",
    "scorers_in_your_pipeline.ipynb": """
import json
print(json.dumps({
    "gaps": [gap_standard, gap_robust, gap_joint],
    "picks": picks.tolist(),
    "jin_picks": jin_picks.tolist(),
    "budget": budget,
    "candidates": len(candidates),
    "shapes": [list(standard.shape), list(robust.shape), list(joint.shape)],
    "rho": float(rho),
}))
""",
    "comparing_strategies.ipynb": """
import json
print(json.dumps({
    "strategies": strategies,
    "results": results,
    "table": final_table(results),
    "files": sorted(p.name for p in output.iterdir()),
}))
""",
    "your_own_data.ipynb": """
import json
print(json.dumps({
    "tabular": tabular.history,
    "images": pictured.history,
    "lazy": pictures.train.lazy,
    "mmap": type(images).__name__,
    "classes": [table.num_classes, pictures.num_classes],
}))
""",
    "robustness_per_group.ipynb": """
import json
curves = [[*key, values] for key, values in curves.items()]
print(json.dumps({"per_group": per_group, "curves": curves}))
""",
}


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the notebook at the CI size; the probe's JSON."""
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBES[name]))
    monkeypatch.setenv("FRAL_EXAMPLE_SIZE", "ci")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models run faster on shared cores
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # a cell that raises fails the test with its traceback
    outputs = [o for o in notebook.cells[-1].outputs if o.get("name") == "stdout"]
    return json.loads("".join(o["text"] for o in outputs))


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(PROBES)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} holds outputs: clear them before committing"
            )
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "FRAL_EXAMPLE_SIZE" in first.source


def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("quickstart.ipynb", tmp_path, monkeypatch)
    picks = values["picks"]
    assert len(picks) == values["budget"] == len(set(picks))
    assert set(values["groups_of_picks"]) == {values["z_star"]}  # JIN drew from the worst group
    assert values["clean_average"] > 1 / values["num_classes"]  # M_R learned above chance
    results = values["results"]
    assert [r["strategy"] for r in results] == ["RAND", "JIN"]
    assert results[0]["history"][-1]["labeled"] == results[1]["history"][-1]["labeled"]
    assert results[0]["labeled"] != results[1]["labeled"]  # other samples labelled


def test_full_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("full_loop.ipynb", tmp_path, monkeypatch)
    history, rounds = values["history"], values["rounds"]
    assert [r["round"] for r in history] == list(range(rounds + 1))
    for before, after in itertools.pairwise(history):
        assert after["labeled"] - before["labeled"] == after["budget"]  # the budget, each round
    assert {"worst_group.png", "per_group.png", "history.json"} <= set(values["files"])
    final = history[-1]["test"]["summary"]
    assert final["clean_accuracy_average"] > 1 / values["num_classes"]  # above chance
    # Resumed with one more round: the first rounds are the saved ones, one round is added.
    assert values["longer"][: rounds + 1] == history and len(values["longer"]) == rounds + 2


def test_scorers_in_your_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("scorers_in_your_pipeline.ipynb", tmp_path, monkeypatch)
    count = values["candidates"]
    assert values["shapes"] == [[count]] * 3
    # By hand, fral.scoring and JIN give the same scores (float noise of folded BatchNorm)...
    assert max(values["gaps"]) < 1e-4, values["gaps"]
    # ...and the same picks.
    assert values["jin_picks"] == values["picks"] and len(values["picks"]) == values["budget"]
    assert -1 <= values["rho"] <= 1


def test_comparing_strategies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("comparing_strategies.ipynb", tmp_path, monkeypatch)
    results = values["results"]
    assert [r["strategy"] for r in results] == values["strategies"]
    # Equal budgets, different choices, hence different final rows.
    assert len({r["history"][-1]["labeled"] for r in results}) == 1
    assert len({tuple(r["labeled"]) for r in results}) == len(results)
    rows = [line for line in values["table"].splitlines() if line.startswith("| ")][1:]
    cells = {tuple(line.split("|")[2:8]) for line in rows[1:]}  # without the header and round 0
    assert len(rows) == len(results) + 1 and len(cells) == len(results), values["table"]
    assert {"worst_group.png", "final.png"} <= set(values["files"])


def test_your_own_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("your_own_data.ipynb", tmp_path, monkeypatch)
    assert values["lazy"] and values["mmap"] == "memmap"  # uint8 images read per batch
    for history, classes in zip(
        (values["tabular"], values["images"]), values["classes"], strict=True
    ):
        assert len(history) >= 2 and history[-1]["labeled"] > history[0]["labeled"]
        final = history[-1]["test"]["summary"]
        assert final["clean_accuracy_average"] > 1 / classes  # learned above chance


def test_robustness_per_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = execute("robustness_per_group.ipynb", tmp_path, monkeypatch)
    for figures in values["per_group"].values():
        clean = figures["clean"]
        for setting in ("PGD-5", "PGD-20"):
            # No group is more accurate under an attack than on clean inputs.
            accuracies = figures[setting]
            assert all(a <= c for a, c in zip(accuracies, clean, strict=True)), (setting, figures)
        # On the checked subset, AutoAttack (worst case with PGD) is never above PGD-5.
        pairs = zip(figures["AutoAttack"], figures["checked PGD-5"], strict=True)
        assert all(a <= p for a, p in pairs), figures
        # PGD-20 is at least as strong as PGD-5 here, group by group.
        assert all(a <= b for a, b in zip(figures["PGD-20"], figures["PGD-5"], strict=True)), (
            figures
        )
    for _model, _group, curve in values["curves"]:
        assert curve[0] >= curve[-1]  # clean vs the largest radius, every model and group
