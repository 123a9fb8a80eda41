"""The documentation holds: its code runs, its API reference is complete, its site builds.

- Every ```` ```python ```` block of the README and of the pages under ``docs/`` runs, each
  page's blocks in order in one namespace, in a fresh working folder. A block that is not meant
  to run (a signature, a fragment with ``...``) has ``<!-- no-run -->`` on the line before it.
- Every public module and every name in its ``__all__`` has a docstring (read by griffe, as
  mkdocstrings reads it, so constants need an attribute docstring, not a ``#:`` comment).
- ``mkdocs build --strict`` succeeds (a broken link, nav entry or reference fails it), and the
  built site's inventory holds every public symbol at its place in the API reference.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import docs_api  # noqa: E402

NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^```python[ \t]*$")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(text: str, name: str = "page") -> list[tuple[int, str]]:
    """The runnable ```` ```python ```` blocks of a Markdown text: (first line number, code).

    A block preceded (blank lines aside) by ``<!-- no-run -->`` is left out; ```` ```python
    title="..." ```` or any other info string is not a runnable block either. An unclosed
    block is an error.
    """
    lines = text.splitlines()
    blocks, number = [], 0
    while number < len(lines):
        if FENCE.match(lines[number]):
            previous = next((line for line in reversed(lines[:number]) if line.strip()), "")
            end = next((i for i in range(number + 1, len(lines)) if lines[i] == "```"), None)
            if end is None:
                raise ValueError(f"{name}:{number + 1}: a ```python block is never closed")
            if previous.strip() != NO_RUN:
                blocks.append((number + 2, "\n".join(lines[number + 1 : end]) + "\n"))
            number = end
        number += 1
    return blocks


def run_page(path: Path) -> dict:
    """Run ``path``'s python blocks in order in one namespace; return the namespace."""
    namespace: dict = {"__name__": "__main__"}
    for line, code in python_blocks(path.read_text(), path.name):
        # Line numbers in a traceback point into the page.
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
    return namespace


def test_python_blocks_are_found_and_marked_blocks_skipped() -> None:
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- no-run -->",
            "",
            "```python",
            "model.select(...)",
            "```",
            '```python title="x"',
            "skipped = True",
            "```",
            "```bash",
            "fral demo",
            "```",
            "```python",
            "b = a + 1",
            "```",
        ]
    )
    assert python_blocks(text) == [(2, "a = 1\n"), (16, "b = a + 1\n")]
    with pytest.raises(ValueError, match="never closed"):
        python_blocks("```python\nx = 1\n")


def test_a_failing_block_fails_its_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2, 'wrong'\n```\n")
    with pytest.raises(AssertionError, match="wrong") as failure:
        run_page(page)
    assert failure.traceback[-1].lineno + 1 == 8  # the page's own line


def test_every_page_in_the_nav_or_generated() -> None:
    """A page under docs/ that the nav does not list is unreachable on the site."""
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    listed = set(re.findall(r":\s+(\S+\.md)", nav))
    pages = {str(path.relative_to(ROOT / "docs")) for path in ROOT.glob("docs/**/*.md")}
    assert pages - listed == set()
    assert listed - pages == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_page_code_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_page(page)
    check = PAGE_CHECKS.get(str(page.relative_to(ROOT)))
    if check is not None:
        check(namespace)


def check_readme(namespace: dict) -> None:
    """The README's quick start picked what it says it picked."""
    picks, pool = namespace["picks"], namespace["pool"]
    assert len(picks) == 50 and len(set(picks.tolist())) == 50
    assert namespace["to_label"].tolist() == namespace["unlabeled"][picks].tolist()
    # JIN drew from one group only: the worst on the validation set.
    assert len(set(pool.groups[picks].tolist())) == 1


PAGE_CHECKS = {"README.md": check_readme}


def test_every_public_symbol_has_a_docstring() -> None:
    assert docs_api.undocumented() == []


def test_docstring_check_sees_a_missing_docstring(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package."""\n\n__all__ = ["CONSTANT", "documented", "bare"]\n\n'
        'CONSTANT = 3\n\n\ndef documented():\n    """Yes."""\n\n\ndef bare():\n    pass\n'
    )
    (package / "_private.py").write_text("__all__ = ['hidden']\n\n\ndef hidden():\n    pass\n")
    import griffe

    loaded = griffe.load("pkg", search_paths=[str(tmp_path)], docstring_parser="numpy")
    assert docs_api.undocumented(loaded) == ["pkg.CONSTANT", "pkg.bare"]


def inventory(path: Path) -> set[str]:
    """The object names in a Sphinx ``objects.inv`` (version 2) as mkdocstrings writes it."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    body = zlib.decompress(data[header_end:]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` into a temporary folder."""
    site_dir = tmp_path_factory.mktemp("site")
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]' (make install does)")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    return site_dir


def test_site_builds_strict_with_every_public_symbol(site: Path) -> None:
    names = inventory(site / "objects.inv")
    missing = []
    for page in docs_api.pages():
        assert (site / page.page.removesuffix(".md") / "index.html").is_file(), page.page
        missing += [
            f"{page.path}.{name}" for name in page.documented if f"{page.path}.{name}" not in names
        ]
        missing += [target for target in page.reexported.values() if target not in names]
    assert missing == []


def test_site_renders_every_notebook_and_results_table(site: Path) -> None:
    from mkdocs_hooks import notebooks

    for path in notebooks():
        assert (site / path.removesuffix(".ipynb") / "index.html").is_file(), path
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert "<!-- results:" not in benchmarks
    for result in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert json.loads(result.read_text())["command"] in benchmarks, result.name


def test_results_tables_render_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import results_tables

    monkeypatch.setattr(results_tables, "RESULTS", tmp_path)
    monkeypatch.setattr(results_tables, "ROOT", tmp_path.parent)
    record = {
        "command": "python benchmarks/bench_x.py --pairs 3",
        "date": "2026-11-28 12:00 UTC",
        "machine": "a CPU",
        "columns": ["model", "max |diff|", "speed-up", "img/s"],
        "rows": [{"model": "smallcnn", "max |diff|": "0e+00", "speed-up": "1.5 [1.2, 1.8]"}],
    }
    (tmp_path / "x.json").write_text(json.dumps(record))
    page = results_tables.fill("before\n\n<!-- results: x -->\n\nafter")
    assert "<!-- results" not in page and page.startswith("before") and page.endswith("after")
    assert "`python benchmarks/bench_x.py --pairs 3`" in page and "2026-11-28" in page
    assert "| model | max \\|diff\\| | speed-up | img/s |" in page
    assert "| smallcnn | 0e+00 | 1.5 [1.2, 1.8] |  |" in page
    with pytest.raises(FileNotFoundError, match="missing"):
        results_tables.fill("<!-- results: absent -->")


def test_sphinx_roles_become_code_spans() -> None:
    from griffe_roles import plain

    text = "See :func:`pgd`, :class:`~fral.pool.Pool` and :meth:`FairDataset.from_arrays`."
    assert plain(text) == "See `pgd`, `Pool` and `FairDataset.from_arrays`."
    assert plain("no role, `code` stays") == "no role, `code` stays"
