"""What each CPU stage of ``engine colorize`` costs per image, one at a time, on one thread.

    python -m benchmarks.cpu_stages [--json benchmarks/results/cpu-stages.json]

For a 1024×768 and a 3-megapixel gray JPEG made from a real photo: decoding in this process
and in a decode worker (:mod:`engine.decode_workers`; the difference is what isolation costs),
pre-processing, post-processing (the model's ab → the colour image) and JPEG encoding, each the
median of ``--repeats`` runs, with OpenCV on one thread; and the model's own time per image at
batch 8 on every core. Since every stage takes CPU from the same cores, the end-to-end rate can
reach at most ``inference core-ms ÷ (inference core-ms + stage ms)`` of the compute rate: the
bound printed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.harness import sample_photos
from benchmarks.machine import provenance
from engine import Colorizer
from engine.decode_workers import DecodeWorkers
from engine.io import Job, encode_image, read_image
from engine.system import available_cores

RESULTS = Path(__file__).with_name("results") / "cpu-stages.json"
SIZES = {"1024x768": (1024, 768), "3MP": (2048, 1536)}


def _median_ms(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e3, 2)


def stage_costs(colorizer: Colorizer, path: Path, repeats: int) -> dict[str, float]:
    """Median ms of each CPU stage for the image at ``path``."""
    job = Job(path, Path(path.name))
    decoded = read_image(path, True)
    pixels, x = colorizer.preprocess(decoded.pixels)
    ab = colorizer.infer(x[None])[0]
    image = colorizer.postprocess(pixels, ab, np.uint8)
    with DecodeWorkers(1) as workers:
        isolated = _median_ms(lambda: workers.read(job, True, None), repeats)
    return {
        "decode_in_process": _median_ms(lambda: read_image(path, True), repeats),
        "decode_isolated": isolated,
        "preprocess": _median_ms(lambda: colorizer.preprocess(decoded.pixels), repeats),
        "postprocess": _median_ms(lambda: colorizer.postprocess(pixels, ab, np.uint8), repeats),
        "encode_jpeg": _median_ms(lambda: encode_image(image, None, ".jpg", 95), repeats),
    }


def inference_ms(colorizer: Colorizer, repeats: int, batch: int = 8) -> float:
    """Wall ms per image of the backend at ``batch`` (every core)."""
    inputs = np.zeros((batch, 1, colorizer.size, colorizer.size), np.float32)
    colorizer.infer(inputs)  # warm-up
    return round(_median_ms(lambda: colorizer.infer(inputs), repeats) / batch, 2)


def measure(repeats: int) -> dict:
    colorizer = Colorizer()
    cores = available_cores()
    per_image = inference_ms(colorizer, max(5, repeats // 4))
    cv2.setNumThreads(1)  # the stages run one image per thread in the pipeline
    photo = cv2.imread(str(sample_photos()[0]), cv2.IMREAD_GRAYSCALE)
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (width, height) in SIZES.items():
            path = Path(folder) / f"{name}.jpg"
            gray = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(path), gray, [cv2.IMWRITE_JPEG_QUALITY, 90])
            costs = stage_costs(colorizer, path, repeats)
            stages = costs["decode_isolated"] + sum(
                v for k, v in costs.items() if not k.startswith("decode")
            )
            bound = per_image * cores / (per_image * cores + stages)
            sizes[name] = {**costs, "stages_ms": round(stages, 2), "e2e_bound": round(bound, 3)}
    return {
        **provenance(),
        "cores": cores,
        "inference_ms_per_image_batch8": per_image,
        "sizes": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.repeats)
    print(f"inference at batch 8: {result['inference_ms_per_image_batch8']} ms per image "
          f"on {result['cores']} cores")  # fmt: skip
    for name, costs in result["sizes"].items():
        listed = ", ".join(f"{k} {v}" for k, v in costs.items())
        print(f"{name}: {listed}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
