"""Peak memory of ``engine colorize`` on one very large scan, against the documented bound.

Runs the real command line twice in child processes — on a small image and on a gray JPEG of
``--width×--height`` made from a real photo — and reports each child's peak RSS (``wait4``). The
difference is what the large image itself costs; ``engine.memory`` bounds it by
``BYTES_PER_PIXEL_IN_FLIGHT`` bytes per pixel.

    python -m benchmarks.large_image --width 20000 --height 15000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks.harness import sample_photos
from benchmarks.machine import provenance
from engine.memory import BYTES_PER_PIXEL_IN_FLIGHT

RESULTS = Path(__file__).with_name("results")


def make_scan(path: Path, width: int, height: int) -> Path:
    """A gray JPEG of ``width×height`` cut from a real photo (stretched to fit)."""
    photo = cv2.imread(str(sample_photos()[0]), cv2.IMREAD_GRAYSCALE)
    image = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def peak_rss_of_colorize(source: Path, output: Path, *options: str) -> tuple[int, float, int]:
    """(peak RSS in bytes, seconds, exit status) of ``engine colorize source -o output``."""
    command = [sys.executable, "-m", "engine", "colorize", str(source), "-o", str(output)]
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.perf_counter() - started, process.returncode


def measure(width: int, height: int, workdir: Path, *options: str) -> dict:
    small = make_scan(workdir / "small.jpg", 640, 480)
    large = make_scan(workdir / "large.jpg", width, height)
    base, _, base_status = peak_rss_of_colorize(small, workdir / "out-small", *options)
    peak, seconds, status = peak_rss_of_colorize(large, workdir / "out-large", *options)
    pixels = width * height
    return {
        "width": width,
        "height": height,
        "megapixels": round(pixels / 1e6, 1),
        "exit_status": [base_status, status],
        "seconds": round(seconds, 1),
        "peak_rss_mb": {"small_image_run": round(base / 1e6), "large_image_run": round(peak / 1e6)},
        "large_image_bytes_per_pixel": round((peak - base) / pixels, 2),
        "bound_bytes_per_pixel": BYTES_PER_PIXEL_IN_FLIGHT,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=20000)
    parser.add_argument("--height", type=int, default=15000)
    parser.add_argument("--json", type=Path, help="default: results/large-image-WxH.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="large-image-") as workdir:
        result = {**provenance(), **measure(args.width, args.height, Path(workdir))}
    out = args.json or RESULTS / f"large-image-{args.width}x{args.height}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
