"""Soak: one ``engine colorize`` run over thousands of files, with the process's RSS sampled after
every file. Memory must stay flat: the RSS after the last file may exceed the RSS after the first
``--warmup`` files by at most ``--max-growth`` (default 10 %).

The files are grayscale JPEGs and PNGs of four sizes (300×400 … 1600×1200) cut from the real photos
in ``benchmarks/samples``, so decode, resize and encode buffers of every size are exercised.

    python -m benchmarks.soak --files 2000            # writes benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks.harness import sample_photos
from benchmarks.machine import machine_info, provenance
from benchmarks.memory import rss_bytes
from engine.colorizer import Colorizer
from engine.pipeline import RunOptions, run

RESULTS = Path(__file__).with_name("results")
SIZES = ((400, 300), (1024, 768), (640, 480), (1600, 1200))


def make_files(dest: Path, count: int) -> Path:
    """``count`` gray images (JPEG, every fifth a PNG) of the sizes in ``SIZES``."""
    photos = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sample_photos()]
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        image = cv2.resize(photos[i % len(photos)], (width, height), interpolation=cv2.INTER_AREA)
        folder = dest / f"box{i // 500:02d}"
        folder.mkdir(exist_ok=True)
        suffix = ".png" if i % 5 == 4 else ".jpg"
        cv2.imwrite(str(folder / f"scan{i:05d}{suffix}"), image)
    return dest


def soak(files: int, warmup: int, workdir: Path, batch_size: int = 8) -> dict:
    """Run the pipeline once over ``files`` files; RSS after each file, in MB."""
    inputs = make_files(workdir / "in", files)
    colorizer = Colorizer()
    samples: list[float] = []
    start_mb = rss_bytes() / 1e6

    def on_result(_result) -> None:
        samples.append(rss_bytes() / 1e6)

    started = time.perf_counter()
    summary = run(
        colorizer, [inputs], RunOptions(workdir / "out", batch_size=batch_size),
        on_result=on_result,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    after_warmup = samples[min(warmup, len(samples)) - 1]
    peak_after_warmup = max(samples[warmup:] or [after_warmup])
    end_mb = samples[-1]
    return {
        "files": files,
        "done": summary.done,
        "failed": summary.failed,
        "seconds": round(seconds, 1),
        "images_per_s": round(summary.done / seconds, 2),
        "batch_size": batch_size,
        "rss_mb": {
            "start": round(start_mb, 1),
            f"after_{warmup}": round(after_warmup, 1),
            "peak": round(max(samples), 1),
            "peak_after_warmup": round(peak_after_warmup, 1),
            "end": round(end_mb, 1),
        },
        "growth_after_warmup": round(end_mb / after_warmup - 1, 4),
        "peak_growth_after_warmup": round(
            max(samples[warmup:] or [after_warmup]) / after_warmup - 1, 4
        ),
        "rss_every_100_files_mb": [round(v, 1) for v in samples[99::100]],
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        result = soak(args.files, args.warmup, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {**provenance(), **result}
    result["max_growth"] = args.max_growth
    result["passed"] = result["growth_after_warmup"] < args.max_growth and result["failed"] == 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
