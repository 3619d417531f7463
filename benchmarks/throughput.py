"""Throughput of the engine on this machine, all measured in one process.

1. ``compute``: the ORT backend alone on pre-resized 256² batches of real photos.
2. ``torch``: PyTorch eager FP32 on the same batch (the trainer's U-Net with the same weights),
   in the default (NCHW) and channels-last layouts — only when torch is installed.
3. ``e2e``: ``engine colorize`` on a folder of grayscale photos (decode → … → write), after a
   warm-up run on two batches of it.

Every figure is the median of ``--repeats`` timed runs after a warm-up; the ratios are the
point (absolute numbers depend on the machine, which is recorded).

    python -m benchmarks.throughput --source PHOTOS_DIR --count 200 --width 1024 --height 768
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engine import Colorizer
from engine.pipeline import RunOptions, run
from engine.system import available_cores, cpu_model

RESULTS = Path(__file__).with_name("results")


def make_folder(source: Path, dest: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` grayscale JPEGs of ``width×height`` cut from the colour photos under ``source``."""
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise SystemExit(f"{source}: no photos")
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        image = cv2.imread(str(photos[i % len(photos)]), cv2.IMREAD_GRAYSCALE)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        path = dest / f"{i:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        made.append(path)
    return made


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def torch_rates(batch: np.ndarray, repeats: int) -> dict[str, float]:
    """images/s of PyTorch eager FP32 on ``batch``, NCHW and channels-last (empty without torch)."""
    try:
        import torch

        from trainer.checkpoint import load_checkpoint
    except ImportError:
        return {}
    torch.set_num_threads(available_cores())
    import trainer

    ckpt = Path(trainer.__file__).parent / "checkpoints" / "seed-general.safetensors"
    model = load_checkpoint(ckpt).build_model()
    rates = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = model.to(memory_format=fmt)
        x = torch.from_numpy(batch).to(memory_format=fmt)
        with torch.inference_mode():
            times = timed(lambda net=net, x=x: net(x), repeats)
        rates[layout] = len(batch) / statistics.median(times)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--source", type=Path, required=True, help="folder of colour photos")
    parser.add_argument("--count", type=int, default=200, help="photos in the e2e folder")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed e2e runs (compute: 10)")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()

    colorizer = Colorizer()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        files = make_folder(args.source, work / "in", args.count, args.width, args.height)
        batch = np.stack(
            [
                colorizer.preprocess(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))[1]
                for p in files[: args.batch]
            ]
        )
        compute = timed(lambda: colorizer.infer(batch), 10, warmup=2)
        ort_rate = args.batch / statistics.median(compute)
        run(colorizer, files[: 2 * args.batch], RunOptions(work / "warmup", batch_size=args.batch))
        e2e_rates = []
        for i in range(args.repeats):
            summary = run(
                colorizer, [work / "in"], RunOptions(work / f"out{i}", batch_size=args.batch)
            )
            assert summary.failed == 0 and summary.done == args.count
            e2e_rates.append(summary.images_per_s)
        torch = torch_rates(batch, 10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    e2e_rate = statistics.median(e2e_rates)
    result = {
        "machine": {
            "cpu": cpu_model(), "cores": available_cores(), "python": platform.python_version(),
            **colorizer.describe(),
        },
        "settings": vars(args) | {"source": str(args.source), "out": str(args.out)},
        "ort_compute_images_per_s": round(ort_rate, 2),
        "e2e_images_per_s": round(e2e_rate, 2),
        "e2e_runs": [round(r, 2) for r in e2e_rates],
        "e2e_over_compute": round(e2e_rate / ort_rate, 3),
        "torch_eager_fp32_images_per_s": {k: round(v, 2) for k, v in torch.items()},
        "ort_over_torch": {k: round(ort_rate / v, 2) for k, v in torch.items()},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
