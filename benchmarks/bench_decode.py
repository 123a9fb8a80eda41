"""Decode throughput of the paper's image data sets (Pillow, one process), and a cached load.

Run ``python benchmarks/bench_decode.py`` (about a minute; ``--quick`` for a few seconds).
Synthetic photo-like files stand in for the real ones (smooth random colour fields plus
fine noise, saved as the data sets store them), in the sizes of the real files:

* UTKFace's aligned & cropped faces: 200x200 JPEG, decoded and resized to 112x112;
* a 250x250 JPEG to 112x112 (a slightly larger face crop);
* HAM-10000: 600x450 JPEG to 112x112;
* CINIC-10: 32x32 PNG, kept at 32x32.

Each case times :func:`fral.datasets._images.decode_image` over its files, ``--rounds``
times after a warm-up pass, and prints the median images per second of wall time with
[min, max] of the rounds, and the median per second of the process's CPU time (the rate of
one free core, little affected by other load on a shared machine). One process, one
thread: ``decode_workers=K`` scales it by up to ``K`` on ``K`` free cores. The figures give
the first load's decode time of a full data set (UTKFace's cropped faces: about 23,700
files; HAM-10000: at most its 10,015 images; CINIC-10: 270,000 images); later loads decode
nothing.

Last, ``utkface()`` on ``--faces`` synthetic 200x200 faces: the first load (listing,
decoding, writing the memory-mapped cache) and the second (listing the folder and mapping
the cache), in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import write_results
from PIL import Image

from fral.datasets import utkface
from fral.datasets._images import decode_image

CASES = (
    ("UTKFace crop 200x200 JPEG -> 112", (200, 200), ".jpg", 112),
    ("face 250x250 JPEG -> 112", (250, 250), ".jpg", 112),
    ("HAM-10000 600x450 JPEG -> 112", (600, 450), ".jpg", 112),
    ("CINIC-10 32x32 PNG -> 32", (32, 32), ".png", 32),
)


def photo(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A smooth random colour field with fine noise: JPEG sizes like photographs'."""
    width, height = size
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))
    noise = rng.normal(0, 8, smooth.shape)
    return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))


def write_files(folder: Path, size: tuple[int, int], suffix: str, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        path = folder / f"{k:05d}{suffix}"
        image = photo(size, rng)
        if suffix == ".jpg":
            image.save(path, quality=90)
        else:
            image.save(path)
        paths.append(path)
    return paths


def throughput(paths: list[Path], image_size: int, rounds: int) -> list[float]:
    for path in paths:  # warm-up: the files in the page cache, Pillow's plugins loaded
        decode_image(path, image_size)
    rates, cpu_rates = [], []
    for _ in range(rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        for path in paths:
            decode_image(path, image_size)
        rates.append(len(paths) / (time.perf_counter() - start))
        cpu_rates.append(len(paths) / (time.process_time() - cpu_start))
    return rates, cpu_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=400, help="files per case")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--faces", type=int, default=3000, help="faces for the utkface() load")
    parser.add_argument("--quick", action="store_true", help="40 files, 2 rounds, 300 faces")
    args = parser.parse_args()
    if args.quick:
        args.files, args.rounds, args.faces = 40, 2, 300
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        for number, (label, size, suffix, image_size) in enumerate(CASES):
            folder = root / f"case{number}"
            folder.mkdir()
            paths = write_files(folder, size, suffix, args.files)
            kib = sum(path.stat().st_size for path in paths) / len(paths) / 1024
            rates, cpu_rates = throughput(paths, image_size, args.rounds)
            print(
                f"{label:34s} {statistics.median(rates):6.0f} images/s wall "
                f"[{min(rates):.0f}, {max(rates):.0f}], "
                f"{statistics.median(cpu_rates):6.0f} per CPU second  ({kib:.1f} KiB per file)"
            )
            rows.append(
                {
                    "case": label,
                    "images/s (wall, median)": round(statistics.median(rates)),
                    "[min, max]": f"[{min(rates):.0f}, {max(rates):.0f}]",
                    "images per CPU second": round(statistics.median(cpu_rates)),
                    "KiB per file": round(kib, 1),
                }
            )
        faces = root / "UTKFace"
        faces.mkdir()
        rng = np.random.default_rng(1)
        for k in range(args.faces):
            name = f"{rng.integers(1, 90)}_{k % 2}_{k % 4}_{20170116174525125 + k}.jpg.chip.jpg"
            photo((200, 200), rng).save(faces / name, quality=90)
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                utkface(data_dir=faces, cache_dir=root / "cache")
            timings.append(time.perf_counter() - start)
        print(
            f"utkface() on {args.faces} faces: first load {timings[0]:.1f} s "
            f"({args.faces / timings[0]:.0f} faces/s), second load {timings[1]:.2f} s"
        )
        rows.append(
            {
                "case": f"utkface() on {args.faces} faces: first load {timings[0]:.1f} s, "
                f"second (cached) load {timings[1]:.2f} s",
                "images/s (wall, median)": round(args.faces / timings[0]),
            }
        )
    write_results("decode-cpu", list(rows[0]), rows, torch.device("cpu"))


if __name__ == "__main__":
    main()
