"""All GPU checks in one short run (for a session that has a GPU for a few minutes).

On whatever device torch sees (a CUDA GPU, else the CPU, so the script itself is tested here):

1. parity of the torch backend, FP32 and FP16 (CUDA only), against the CPU FP32 reference
   (ONNX Runtime) on real photos: max and mean |Δab| in LAB units;
2. images/s and p50/p99 per batch size through the torch backend (host → device → host
   included), plus the split of host→device, compute and device→host time from CUDA events;
3. peak device memory from NVML while measuring;
4. TensorRT: whether a runtime imports, an FP16 engine build from the shipped model, and where
   the trt backend can run (NVIDIA GPU + TensorRT + cuda-python) its parity and images/s.

It prints a short table last and writes JSON (``--json``, default ``$OUT/gpu_check.json`` when
``OUT`` is set, else ``gpu_check.json``).

    python -m benchmarks.gpu_check --batches 1,8,32,64
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchmarkConfig, Harness
from benchmarks.machine import machine_info
from benchmarks.memory import PeakMemory
from benchmarks.stats import latency_summary
from engine.colorizer import Colorizer


def _split_ms(backend, batch: np.ndarray, runs: int = 10) -> dict | None:
    """Median host→device, compute and device→host ms of one batch (CUDA events)."""
    torch = backend._torch
    if backend.device.type != "cuda":
        return None
    host = torch.from_numpy(batch).pin_memory()
    events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    h2d, compute, d2h = [], [], []
    for _ in range(runs):
        events[0].record()
        x = host.to(backend.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        events[1].record()
        with (
            torch.inference_mode(),
            torch.autocast("cuda", torch.float16, enabled=backend.precision == "fp16"),
        ):
            y = backend.model(x)
        events[2].record()
        y.float().cpu()
        events[3].record()
        torch.cuda.synchronize()
        h2d.append(events[0].elapsed_time(events[1]))
        compute.append(events[1].elapsed_time(events[2]))
        d2h.append(events[2].elapsed_time(events[3]))
    return {k: float(np.median(v)) for k, v in (("h2d", h2d), ("compute", compute), ("d2h", d2h))}


def check(batches: list[int], min_seconds: float) -> dict:
    harness = Harness(BenchmarkConfig(batches=batches, matmul_peak=False))
    reference = harness.colorizer("ort", "fp32")
    probe = harness.batch_input(reference, 8)
    expected = reference.infer(probe)
    scale = reference.config.normalization.ab_scale
    report: dict = {"machine": machine_info(), "parity": {}, "throughput": [], "tensorrt": None}
    precisions = ["fp32", "fp16"] if _cuda() else ["fp32"]
    for precision in precisions:
        colorizer = Colorizer(backend="torch", precision=precision)
        got = colorizer.infer(probe)
        delta = np.abs(got - expected) * scale
        report["parity"][precision] = {
            "max_abs_ab": float(delta.max()),
            "mean_abs_ab": float(delta.mean()),
        }
        for batch in batches:
            x = harness.batch_input(colorizer, batch)
            for _ in range(3):
                colorizer.infer(x)
            times: list[float] = []
            with PeakMemory() as peak:
                started = time.perf_counter()
                while len(times) < 20 or time.perf_counter() - started < min_seconds:
                    t0 = time.perf_counter()
                    colorizer.infer(x)
                    times.append(time.perf_counter() - t0)
            report["throughput"].append(
                {
                    "backend": "torch",
                    "precision": precision,
                    "batch": batch,
                    "device": colorizer.backend.describe()["device"],
                    **latency_summary(times, batch),
                    "peak_vram_mb": peak.vram_mb,
                    "peak_rss_mb": peak.rss_mb,
                    "split_ms": _split_ms(colorizer.backend, x),
                }
            )
    report["tensorrt"] = _tensorrt(reference, probe)
    return report


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _tensorrt(reference: Colorizer, probe: np.ndarray) -> dict:
    """TensorRT: the runtime found, an FP16 build, and — where it can run — parity and images/s."""
    from engine.backends import BackendError
    from engine.models import resolve_model
    from engine.tensorrt import BuildOptions, TensorRTError, build_engine, load_runtime

    try:
        name, module = load_runtime()
    except TensorRTError as exc:
        return {"available": False, "reason": str(exc)}
    result: dict = {"available": True, "runtime": f"{name} {module.__version__}"}
    try:
        result["fp16_build"] = build_engine(
            resolve_model(None, "fp16").path, None, name, BuildOptions()
        ).message
        colorizer = Colorizer(backend="trt", precision="fp16")
    except (TensorRTError, BackendError) as exc:
        result["error"] = str(exc)
        return result
    expected = reference.infer(probe)
    delta = np.abs(colorizer.infer(probe) - expected) * reference.config.normalization.ab_scale
    result["parity_fp16"] = {"max_abs_ab": float(delta.max()), "mean_abs_ab": float(delta.mean())}
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        colorizer.infer(probe)
        times.append(time.perf_counter() - t0)
    result["batch8"] = latency_summary(times, len(probe))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    default_out = Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    parser.add_argument("--json", type=Path, default=default_out)
    args = parser.parse_args()
    report = check([int(b) for b in args.batches.split(",")], args.min_seconds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    gpus = ", ".join(g["name"] for g in report["machine"]["gpus"]) or "no GPU"
    print(f"\n{gpus}; {report['machine']['cpu']}")
    for precision, p in report["parity"].items():
        print(
            f"parity torch {precision} vs ORT CPU fp32: max |Δab| {p['max_abs_ab']:.3g},"
            f" mean {p['mean_abs_ab']:.3g}"
        )
    header = ("precision", "batch", "img/s", "p50 ms", "p99 ms", "VRAM MB")
    print("{:>9} {:>5} {:>9} {:>8} {:>8} {:>8}  split ms".format(*header))
    for r in report["throughput"]:
        vram = "-" if r["peak_vram_mb"] is None else f"{r['peak_vram_mb']:.0f}"
        split = r["split_ms"] and " / ".join(f"{k} {v:.2f}" for k, v in r["split_ms"].items())
        print(f"{r['precision']:>9} {r['batch']:>5} {r['images_per_s']:>9.1f} {r['p50_ms']:>8.2f}"
              f" {r['p99_ms']:>8.2f} {vram:>8}  {split or '-'}")  # fmt: skip
    print(f"TensorRT: {report['tensorrt']}")


if __name__ == "__main__":
    main()
