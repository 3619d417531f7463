"""Issue-3 figures in one process: ORT compute vs ``engine colorize`` end to end vs PyTorch eager.

1. ``compute`` and ``e2e`` come from the harness (``benchmarks.harness``) on a folder of
   ``--count`` grayscale photos of ``--width×--height`` cut from the real photos in ``--source``;
   e2e is repeated ``--repeats`` times (median), each after the harness's warm-up.
2. PyTorch eager FP32 runs the trainer's U-Net with the same weights on the same batch, in the
   default (NCHW) and channels-last layouts (only when torch is installed).

    python -m benchmarks.throughput --source PHOTOS_DIR --count 200 --width 1024 --height 768
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchmarkConfig, Harness, make_gray_folder
from engine.system import available_cores

RESULTS = Path(__file__).with_name("results")


def torch_rates(batch: np.ndarray, runs: int = 10) -> dict[str, float]:
    """images/s of PyTorch eager FP32 on ``batch``, NCHW and channels-last (empty without torch)."""
    try:
        import torch

        import trainer
        from trainer.checkpoint import load_checkpoint
    except ImportError:
        return {}
    torch.set_num_threads(available_cores())
    ckpt = Path(trainer.__file__).parent / "checkpoints" / "seed-general.safetensors"
    model = load_checkpoint(ckpt).build_model()
    rates = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = model.to(memory_format=fmt)
        x = torch.from_numpy(batch).to(memory_format=fmt)
        times = []
        with torch.inference_mode():
            net(x)
            for _ in range(runs):
                start = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - start)
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
    parser.add_argument("--repeats", type=int, default=3, help="e2e runs (median)")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        folder = make_gray_folder(work / "in", args.count, args.width, args.height, args.source)
        config = BenchmarkConfig(
            modes=["compute"], batches=[args.batch], min_runs=10, e2e_input=folder,
            matmul_peak=False,
        )  # fmt: skip
        harness = Harness(config)
        report = harness.run()
        compute = report["results"][0]
        e2e = [harness.e2e("ort", "fp32", args.batch, folder) for _ in range(args.repeats)]
        colorizer = harness.colorizer("ort", "fp32")
        torch = torch_rates(harness.batch_input(colorizer, args.batch))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ort_rate = compute["images_per_s"]
    e2e_rates = [r["images_per_s"] for r in e2e]
    e2e_rate = statistics.median(e2e_rates)
    result = {
        "machine": report["machine"],
        "settings": vars(args) | {"source": str(args.source), "out": str(args.out)},
        "ort_compute_images_per_s": round(ort_rate, 2),
        "e2e_images_per_s": round(e2e_rate, 2),
        "e2e_runs": [round(r, 2) for r in e2e_rates],
        "e2e_over_compute": round(e2e_rate / ort_rate, 3),
        "e2e_stage_shares": e2e[len(e2e) // 2]["stage_shares"],
        "torch_eager_fp32_images_per_s": {k: round(v, 2) for k, v in torch.items()},
        "ort_over_torch": {k: round(ort_rate / v, 2) for k, v in torch.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
