"""Local pipeline vs Ray Data on one folder, and the per-image costs behind a scale-out plan.

``python -m benchmarks.ray_scaling [--count 160] [--width 2048 --height 1536] [--rounds 2]``

1. Makes a folder of gray JPEG scans from the sample photos.
2. Runs ``engine colorize`` and ``engine colorize --ray`` (a local Ray instance) on it, alternating,
   ``rounds`` times each, each into a fresh output folder; records images/s of the whole command
   (start-up included) and of the run itself, and Ray's start-up.
3. Times each stage of one image in one thread, with nothing else running: decode and
   preprocess (``prepare_image``), inference (the backend, batch 8, per image), postprocess and
   encode+write (``write_image``) — the same functions the Ray tasks and actors call.
4. Writes ``benchmarks/results/ray-scaling.json`` and prints the figures and the plan's arithmetic
   (:func:`plans`); ``--replan`` redoes only the plan from that file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import make_gray_folder
from benchmarks.machine import provenance
from engine.auto import create_colorizer
from engine.io import Job
from engine.pipeline import RunOptions, prepare_image, write_image

RESULTS = Path(__file__).parent / "results" / "ray-scaling.json"
GPU_IMAGES_PER_S = 200.0  # one RTX 3060-class worker: the --rtx3060 target, not measured
CPUS_PER_GPU = 8


def colorize(folder: Path, out: Path, ray: bool) -> dict:
    """One ``engine colorize`` command; its JSON summary plus the command's wall seconds."""
    command = [sys.executable, "-m", "engine", "colorize", str(folder), "-o", str(out), "--json"]
    if ray:
        command.insert(4, "--ray")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    summary["command_seconds"] = wall
    return summary


def stage_costs(folder: Path, out: Path, count: int = 16) -> dict[str, float]:
    """Median seconds per image of each stage, one thread, nothing else running."""
    colorizer = create_colorizer(threads=None)
    options = RunOptions(out)
    files = sorted(folder.glob("*.jpg"))[:count]
    stages = ("decode", "preprocess", "inference", "postprocess", "encode", "write")
    times: dict[str, list[float]] = {k: [] for k in stages}
    items = [prepare_image(colorizer, Job(f, Path(f.name)), out / f.name, options) for f in files]
    batch = np.stack([item.x for item in items[:8]])
    colorizer.infer(batch)  # warm-up
    for _ in range(3):
        t0 = time.perf_counter()
        ab = colorizer.infer(batch)
        times["inference"].append((time.perf_counter() - t0) / len(batch))
    for f, item in zip(files, items, strict=True):
        again = prepare_image(colorizer, Job(f, Path(f.name)), out / f"again-{f.name}", options)
        times["decode"].append(again.stage_seconds["decode"])
        times["preprocess"].append(again.stage_seconds["preprocess"])
        t0 = time.perf_counter()
        write_image(colorizer, item, ab[0], options)
        times["write"].append(time.perf_counter() - t0)
        times["postprocess"].append(item.stage_seconds["postprocess"])
        times["encode"].append(item.stage_seconds["encode"])
    return {k: statistics.median(v) for k, v in times.items()}


def plan_archive(
    cpu_seconds: float,
    images: int = 1_000_000,
    gpu_images_per_s: float = GPU_IMAGES_PER_S,
    cpus_per_gpu: int = CPUS_PER_GPU,
    bytes_per_image: float = 3e6,
    storage_bytes_per_s: float = 1.0e9,
    workers: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
) -> list[dict]:
    """Hours for ``images`` with N GPU workers, at ``cpu_seconds`` of CPU per image.

    Each GPU worker colorizes ``gpu_images_per_s`` (the RTX 3060 target of the benchmark's
    ``--rtx3060`` bounds; not measured: no GPU ran this) and comes with ``cpus_per_gpu`` cores
    for the decode and write tasks; the shared storage moves ``storage_bytes_per_s``, and each
    image moves ``bytes_per_image`` (input read plus output written). The run goes at the
    slowest of the three.
    """
    rows = []
    for n in workers:
        rates = {
            "gpu": n * gpu_images_per_s,
            "cpu": n * cpus_per_gpu / cpu_seconds,
            "storage": storage_bytes_per_s / bytes_per_image,
        }
        bottleneck = min(rates, key=rates.get)
        rows.append({
            "gpu_workers": n, **{f"{k}_images_per_s": round(v, 1) for k, v in rates.items()},
            "bottleneck": bottleneck, "hours": round(images / rates[bottleneck] / 3600, 2),
        })  # fmt: skip
    return rows


def derived(result: dict) -> dict:
    """The measurements in the units the README quotes: milliseconds per image, hours for a
    million images on this machine."""
    return {
        "stage_ms_per_image": {k: v * 1e3 for k, v in result["stage_seconds_per_image"].items()},
        "ray_overhead_ms_per_image": result["ray_overhead_s_per_image"] * 1e3,
        "hours_per_million_here": {
            kind: 1e6 / result[kind]["run_images_per_s"] / 3600 for kind in ("local", "ray")
        },
    }


def plans(result: dict) -> dict:
    """The plan twice: CPU per image from the stages alone (the Ray path decodes twice), and
    with the Ray overhead measured here added (its wall seconds per image × this machine's
    cores: an upper bound, as Ray's own daemons share these 2 cores)."""
    costs = result["stage_seconds_per_image"]
    stages = 2 * costs["decode"] + costs["preprocess"] + costs["write"]
    overhead = max(0.0, result["ray_overhead_s_per_image"]) * result["machine"]["cores"]
    moved = result["mean_input_bytes"] + result["mean_output_bytes"]
    gpu_rate, cores = GPU_IMAGES_PER_S, CPUS_PER_GPU
    return {
        "cpu_seconds_per_image": {"stages": stages, "stages_plus_ray_overhead": stages + overhead},
        "cpu_ms_per_image": {
            "stages": stages * 1e3,
            "stages_plus_ray_overhead": (stages + overhead) * 1e3,
        },
        # Share of one GPU worker's images/s that its cores feed, and the cores that would
        # keep it busy: the two ways the prose states the CPU bottleneck.
        "gpu_share_fed": {
            "stages": cores / stages / gpu_rate,
            "stages_plus_ray_overhead": cores / (stages + overhead) / gpu_rate,
        },
        "cores_per_gpu_needed": {
            "stages": gpu_rate * stages,
            "stages_plus_ray_overhead": gpu_rate * (stages + overhead),
        },
        "stages": plan_archive(stages, bytes_per_image=moved),
        "stages_plus_ray_overhead": plan_archive(stages + overhead, bytes_per_image=moved),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=160)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument(
        "--replan", action="store_true", help="Only redo the plan from the JSON's measurements."
    )
    args = parser.parse_args()
    if args.replan:
        result = json.loads(args.json.read_text())
        result.update(derived(result))
        result["plan"] = plans(result)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result["plan"], indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_gray_folder(Path(tmp) / "scans", args.count, args.width, args.height)
        runs: dict[str, list[dict]] = {"local": [], "ray": []}
        for r in range(args.rounds):
            for kind in ("local", "ray"):
                summary = colorize(folder, Path(tmp) / f"out-{kind}-{r}", kind == "ray")
                runs[kind].append(summary)
                print(f"{kind} round {r + 1}: {summary['done']} done in {summary['seconds']:.1f} s"
                      f" (command {summary['command_seconds']:.1f} s)", flush=True)  # fmt: skip
        costs = stage_costs(folder, Path(tmp) / "stages")
        read_bytes = statistics.mean(p.stat().st_size for p in folder.glob("*.jpg"))
        written_bytes = statistics.mean(
            p.stat().st_size for p in (Path(tmp) / "out-local-0").glob("*.jpg")
        )

    def median(kind: str, key: str) -> float:
        return statistics.median(s[key] for s in runs[kind])

    n = args.count
    local_run, ray_run = median("local", "seconds"), median("ray", "seconds")
    startup = statistics.median(s["ray"]["startup_seconds"] for s in runs["ray"])
    result = {
        **provenance(),
        "images": n, "size": [args.width, args.height], "rounds": args.rounds,
        "mean_input_bytes": round(read_bytes), "mean_output_bytes": round(written_bytes),
        "local": {"run_images_per_s": n / local_run,
                  "command_images_per_s": n / median("local", "command_seconds"),
                  "run_seconds": local_run},
        "ray": {"run_images_per_s": n / ray_run,
                "command_images_per_s": n / median("ray", "command_seconds"),
                "run_seconds": ray_run, "startup_seconds": startup,
                "images_per_s_after_startup": n / (ray_run - startup),
                "workers": runs["ray"][0]["ray"]["workers"]},
        "ray_over_local": (n / ray_run) / (n / local_run),
        "ray_overhead_s_per_image": (ray_run - startup - local_run) / n,
        "stage_seconds_per_image": costs,
        "runs": runs,
    }  # fmt: skip
    result.update(derived(result))
    result["plan"] = plans(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
