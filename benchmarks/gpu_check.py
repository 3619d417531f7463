"""Every GPU measurement in one short run, staged for a lease of a few minutes.

Runs from the repository alone (``PYTHONPATH=$PWD python -m benchmarks.gpu_check``; torch,
onnxruntime, opencv and safetensors must be there, nothing is pip-installed). Each stage has its
own deadline and its own try/except, and its result is appended to ``gpu_check.jsonl`` (in
``$OUT`` when set, else ``--out``) the moment it ends, so a CUDA error in one stage loses nothing
measured before it. Stages:

1. ``machine``: CPU, GPU, driver, torch/CUDA versions.
2. ``parity``: the torch path — FP32 with TF32 off and on, FP16, BF16 — against ONNX Runtime
   FP32 on the CPU, on the 16 calibration photos: |Δab| of the model output, and ΔE of the final
   image (made on the device for torch, in numpy for ORT).
3. ``model_only``: images/s of the model with its input already on the device, per precision and
   batch (1 … 256), and the allocator's peak per batch (``max_memory_allocated`` after a reset,
   less what was allocated before: the batch's own working memory).
4. ``cuda_graphs``: FP16 eager against a replayed CUDA graph at batch 1 and 8.
5. ``colour``: the device colour stages on 1024×768 photos: model input (luminance, resize) and
   output (upsample, merge, gamut fit, convert, copy back) in ms per megapixel.
6. ``end_to_end``: 1024×768 JPEGs to JPEGs: nvJPEG decode → model → GPU post-processing → CPU
   encode (16 threads); the file pipeline with ``--backend torch``; the CPU pipeline (ONNX
   Runtime on all cores) on the same files.
7. ``trt_standin``: the TensorRT backend's own slots on the real CUDA runtime with a torch
   stand-in for TensorRT (``benchmarks/trt_standin.py``).

``gpu_check.json`` (the records so far, as one list) is written again after every stage, so a
run stopped by its time limit still leaves it for the projection. Without CUDA it refuses to
start, unless asked for ``--device cpu --quick`` (small sizes: a smoke test, which the default
tests run); the stages that need CUDA then say so.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

PHOTOS = Path(__file__).resolve().parents[1] / "calibration" / "photos"


@dataclass
class Settings:
    device: str
    size: int = 256
    batches: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    precisions: tuple[str, ...] = ("fp16", "bf16", "fp32")
    min_seconds: float = 1.0
    photo_shape: tuple[int, int] = (768, 1024)
    e2e_images: int = 96
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


class StageSkippedError(Exception):
    """A stage that cannot run on this machine (the reason is recorded)."""


def _torch():
    import torch

    return torch


def _sync(settings: Settings) -> None:
    if settings.cuda:
        _torch().cuda.synchronize()


def _gray_photos(count: int | None = None, shape: tuple[int, int] | None = None):
    paths = sorted(PHOTOS.glob("*.jpg"))[:count]
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in paths]
    if shape:
        images = [cv2.resize(i, shape[::-1], interpolation=cv2.INTER_CUBIC) for i in images]
    return images


def _colorizer(settings: Settings, precision: str = "fp32", **extra):
    from engine.backends import BackendOptions
    from engine.colorizer import Colorizer

    options = BackendOptions(
        size=settings.size, device=settings.device, precision=precision,
        tf32=extra.pop("tf32", False), cuda_graphs=extra.pop("cuda_graphs", False),
        max_batch=max(settings.batches),
    )  # fmt: skip
    return Colorizer(backend="torch", options=options, device_resident=True, **extra)


def _timed(run: Callable[[], object], settings: Settings, deadline: float) -> list[float]:
    """Seconds per call of ``run`` (synchronised), at least 5 calls and ``min_seconds``."""
    for _ in range(2):
        run()
    _sync(settings)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 5 or (
        time.perf_counter() - started < settings.min_seconds and time.monotonic() < deadline
    ):
        t0 = time.perf_counter()
        run()
        _sync(settings)
        times.append(time.perf_counter() - t0)
    return times


def stage_machine(settings: Settings, deadline: float) -> dict:
    from benchmarks.machine import machine_info

    torch = _torch()
    facts = {**machine_info(), "torch": torch.__version__, "device": settings.device}
    if settings.cuda:
        props = torch.cuda.get_device_properties(settings.device)
        facts.update(
            gpu=props.name, capability=f"{props.major}.{props.minor}",
            gpu_memory_mib=props.total_memory // 2**20, cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )  # fmt: skip
    return facts


def stage_parity(settings: Settings, deadline: float) -> dict:
    from engine import color
    from engine.colorizer import Colorizer

    photos = _gray_photos()
    reference = Colorizer(size=settings.size)
    inputs = np.stack([reference.preprocess(p)[1] for p in photos])
    expected_ab = reference.infer(inputs)
    expected = reference.colorize_batch(photos)
    cases = [("fp32", {}), ("fp32-tf32", {"tf32": True}), ("fp16", {}), ("bf16", {})]
    results: dict = {}
    torch_fp32_ab = None  # the first case: what the others are also measured against
    for name, extra in cases:
        if not settings.cuda and name in ("fp32-tf32", "fp16"):
            results[name] = {"skipped": "needs CUDA"}
            continue
        if time.monotonic() > deadline:
            results[name] = {"skipped": "stage deadline"}
            continue
        colorizer = _colorizer(settings, name.split("-")[0], **extra)
        ab = colorizer.backend.run(inputs)
        delta_ab = np.abs(ab - expected_ab)
        images = colorizer.colorize_batch(photos)
        delta_e = np.concatenate([
            np.linalg.norm(color.bgr_to_lab(a) - color.bgr_to_lab(b), axis=-1).ravel()
            for a, b in zip(images, expected, strict=True)
        ])  # fmt: skip
        results[name] = {
            "max_abs_ab": float(delta_ab.max()), "mean_abs_ab": float(delta_ab.mean()),
            "image_delta_e_mean": float(delta_e.mean()),
            "image_delta_e_p99": float(np.percentile(delta_e, 99)),
            "image_delta_e_max": float(delta_e.max()),
        }  # fmt: skip
        if torch_fp32_ab is None:
            torch_fp32_ab = ab
        else:
            own = np.abs(ab - torch_fp32_ab)
            results[name]["vs_torch_fp32"] = {
                "max_abs_ab": float(own.max()), "mean_abs_ab": float(own.mean()),
            }  # fmt: skip
    return {
        "photos": len(photos),
        "reference": "onnxruntime fp32 CPU (its graph stores float16 weights); each case also "
        "against torch fp32 (IEEE) on the device",
        "graph_weight_rounding": (
            {"max_abs_ab": results["fp32"]["max_abs_ab"],
             "mean_abs_ab": results["fp32"]["mean_abs_ab"]} if "max_abs_ab" in results["fp32"]
            else None
        ),  # torch fp32 against the graph: the float16 storage of the weights, nothing else
        "cases": results,
    }  # fmt: skip


def stage_model_only(settings: Settings, deadline: float) -> dict:
    torch = _torch()
    rows = []
    precisions = settings.precisions if settings.cuda else ("fp32", "bf16")
    for precision in precisions:
        colorizer = _colorizer(settings, precision)
        backend = colorizer.backend
        for batch in settings.batches:
            if time.monotonic() > deadline:
                rows.append({"precision": precision, "batch": batch, "skipped": "deadline"})
                continue
            x = torch.rand(batch, 1, settings.size, settings.size, device=backend.device) * 100
            row = {"precision": precision, "batch": batch}

            def measure(x=x, backend=backend, batch=batch) -> dict:
                if settings.cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated()
                times = _timed(lambda: backend.run_tensor(x), settings, deadline)
                found = _rate(times, batch)
                if settings.cuda:
                    peak = torch.cuda.max_memory_allocated()
                    found.update(peak_allocated_mib=peak / 2**20,
                                 batch_working_mib=(peak - before) / 2**20,
                                 reserved_mib=torch.cuda.max_memory_reserved() / 2**20)  # fmt: skip
                return found

            rows.append(_captured(row, measure, settings))
            del x
        colorizer = backend = None
        if settings.cuda:
            torch.cuda.empty_cache()
    return {"size": settings.size, "data": "already on the device", "rows": rows}


def _captured(row: dict, measure: Callable[[], dict], settings: Settings) -> dict:
    """``row`` with what ``measure`` returns, or with the one-line error it raised: one row's
    failure (out of memory at a large batch, a CUDA error) never loses the stage's other rows."""
    try:
        row.update(measure())
    except Exception as exc:
        text = str(exc).strip().splitlines()
        row["error"] = f"{type(exc).__name__}: {text[0] if text else ''}"
        if settings.cuda:
            _recover()
    return row


def _rate(times: list[float], batch: int) -> dict:
    median = float(np.median(times))
    return {"runs": len(times), "median_ms": median * 1000, "images_per_s": batch / median}


def stage_cuda_graphs(settings: Settings, deadline: float) -> dict:
    if not settings.cuda:
        raise StageSkippedError("CUDA graphs need CUDA")
    torch = _torch()
    rows = []
    for graphs in (False, True):
        backend = _colorizer(settings, "fp16", cuda_graphs=graphs).backend
        for batch in (1, 8):
            x = torch.rand(batch, 1, settings.size, settings.size, device=backend.device) * 100

            def measure(x=x, backend=backend, batch=batch) -> dict:
                times = _timed(lambda: backend.run_tensor(x), settings, deadline)
                return _rate(times, batch)

            rows.append(_captured({"cuda_graphs": graphs, "batch": batch}, measure, settings))
        backend.close()
    return {"precision": "fp16", "rows": rows}


def stage_colour(settings: Settings, deadline: float) -> dict:
    torch = _torch()
    stages = _colorizer(settings, "fp16" if settings.cuda else "fp32").device_stages
    photos = _gray_photos(8, settings.photo_shape)
    on_device = [stages.upload(p) for p in photos]
    ab = torch.zeros(2, settings.size, settings.size, device=stages.device)
    megapixels = sum(p.size for p in photos) / 1e6

    def inputs():
        return [stages.model_input(p) for p in on_device]

    def outputs():
        return [stages.postprocess(p, ab, np.uint8) for p in on_device]

    upload = _timed(lambda: [stages.upload(p) for p in photos], settings, deadline)
    pre = _timed(inputs, settings, deadline)
    post = _timed(outputs, settings, deadline)
    per_mp = 1000 / megapixels
    return {
        "photos": len(photos), "shape": list(settings.photo_shape),
        "upload_ms_per_mp": float(np.median(upload)) * per_mp,
        "model_input_ms_per_mp": float(np.median(pre)) * per_mp,
        "output_ms_per_mp": float(np.median(post)) * per_mp,
        "note": "output includes upsampling, merge with L, gamut fit, conversion and the copy back",
    }  # fmt: skip


def stage_end_to_end(settings: Settings, deadline: float) -> dict:
    from engine.colorizer import Colorizer
    from engine.device_colorizer import decode_jpegs
    from engine.pipeline import RunOptions, run

    photos = _gray_photos(None, settings.photo_shape)
    datas = [
        cv2.imencode(".jpg", photos[i % len(photos)], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        for i in range(settings.e2e_images)
    ]
    colorizer = _colorizer(settings, "fp16" if settings.cuda else "fp32")
    stages = colorizer.device_stages
    batch = 32
    results: dict = {"images": len(datas), "shape": list(settings.photo_shape), "batch": batch}

    def in_memory() -> None:
        with ThreadPoolExecutor(settings.workers) as encoder:
            pending = []
            for start in range(0, len(datas), batch):
                decoded = decode_jpegs(datas[start : start + batch], stages.device)
                x = stages.stack([stages.model_input(p) for p in decoded])
                ab = stages.infer(x)
                for pixels, a in zip(decoded, ab, strict=True):
                    image = stages.postprocess(pixels, a, np.uint8)
                    pending.append(encoder.submit(cv2.imencode, ".jpg", image))
            for future in pending:
                future.result()

    def gpu_in_memory() -> dict:
        in_memory()  # warm-up (nvJPEG handles, cuDNN plans)
        _sync(settings)
        t0 = time.perf_counter()
        in_memory()
        _sync(settings)
        return {"images_per_s": len(datas) / (time.perf_counter() - t0)}

    results["gpu_in_memory"] = _captured({}, gpu_in_memory, settings)
    results["gpu_decode"] = "nvJPEG" if _has_nvjpeg(settings) else "OpenCV (CPU) + upload"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in"
        source.mkdir()
        for i, data in enumerate(datas):
            (source / f"{i:04d}.jpg").write_bytes(data)
        for name, chosen in (("torch_file_pipeline", colorizer), ("cpu_ort_pipeline", None)):
            if time.monotonic() > deadline:
                results[name] = {"skipped": "deadline"}
                continue

            def pipeline(name=name, chosen=chosen) -> dict:
                chosen = chosen or Colorizer(size=settings.size)
                options = RunOptions(Path(folder) / name, batch_size=batch,
                                     workers=settings.workers)  # fmt: skip
                summary = run(chosen, [source], options)
                return {"images_per_s": summary.done / summary.seconds, "failed": summary.failed}

            results[name] = _captured({}, pipeline, settings)
    return results


def _has_nvjpeg(settings: Settings) -> bool:
    if not settings.cuda:
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True


def stage_trt_standin(settings: Settings, deadline: float) -> dict:
    if not settings.cuda:
        raise StageSkippedError("the stand-in runs on the real CUDA runtime: needs CUDA")
    from benchmarks.trt_standin import run_standin

    return run_standin(size=settings.size)


STAGES: dict[str, tuple[Callable[[Settings, float], dict], float]] = {
    "machine": (stage_machine, 30),
    "parity": (stage_parity, 90),
    "model_only": (stage_model_only, 150),
    "cuda_graphs": (stage_cuda_graphs, 40),
    "colour": (stage_colour, 40),
    "end_to_end": (stage_end_to_end, 120),
    "trt_standin": (stage_trt_standin, 40),
}
"""Each stage and its deadline in seconds (its loops stop measuring when it passes)."""


TRACEBACK_FRAMES = 8
"""Frames kept of a failed stage's traceback: the innermost, where a CUDA error arises."""


def deadline_scale(names: list[str], timeout: float | None, share: float = 0.8) -> float:
    """The factor on the stages' deadlines that makes them add up to at most ``share`` of the
    command's ``timeout`` (1 when they fit, or without a timeout)."""
    total = sum(STAGES[name][1] for name in names)
    return 1.0 if not timeout or total <= share * timeout else share * timeout / total


def run_stages(
    settings: Settings, names: list[str], journal: Path, scale: float = 1.0
) -> list[dict]:
    """Run ``names`` in order (each within its deadline × ``scale``), appending each stage's
    record to ``journal`` as it ends and writing every record so far to ``journal`` with the
    suffix ``.json``."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for name in names:
        function, seconds = STAGES[name]
        started = time.monotonic()
        record: dict = {"stage": name}
        try:
            record["result"] = function(settings, started + seconds * scale)
            record["status"] = "ok"
        except StageSkippedError as exc:
            record.update(status="skipped", reason=str(exc))
        except Exception as exc:  # one stage's failure must not lose the others
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=-TRACEBACK_FRAMES))  # fmt: skip
            if settings.cuda:
                _recover()
        record["seconds"] = round(time.monotonic() - started, 2)
        with journal.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        records.append(record)
        summary = journal.with_suffix(".json")
        tmp = summary.with_name(f".{summary.name}.tmp")
        tmp.write_text(json.dumps(records, indent=2) + "\n")
        tmp.replace(summary)  # the records so far, whole, after every stage
        print(f"[{name}] {record['status']} in {record['seconds']} s", flush=True)
    return records


def _recover() -> None:
    try:
        torch = _torch()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    except Exception:  # a sticky CUDA error: later stages will record their own failure
        pass


def quick(device: str = "cpu") -> Settings:
    """Small settings for a CPU or a smoke run: a few batches, 96² inputs, small photos."""
    return Settings(
        device=device, size=96, batches=(1, 4), min_seconds=0.0, photo_shape=(120, 160),
        e2e_images=6, workers=2,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--device", default=None, help="cuda, cuda:N or cpu (default: cuda if seen)"
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU, smoke test)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument(
        "--timeout", type=float, default=480.0,
        help="seconds the command is given (as by `timeout 480`): the stages' deadlines are "
        "scaled to 80%% of it, and every thread's traceback is written to stderr 10 s before it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if _torch().cuda.is_available() else "cpu")
    if not device.startswith("cuda") and not args.quick:
        parser.error(
            "no CUDA device: the full check would run for minutes on the CPU and measure "
            "nothing the GPU figures need; for a smoke test: --device cpu --quick"
        )
    settings = quick(device) if args.quick else Settings(device=device)
    names = [s for s in args.stages.split(",") if s]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    if args.timeout > 20:
        faulthandler.dump_traceback_later(args.timeout - 10, exit=False)  # where a hang sits
    scale = deadline_scale(names, args.timeout)
    records = run_stages(settings, names, args.out / "gpu_check.jsonl", scale)
    faulthandler.cancel_dump_traceback_later()
    for record in records:
        print(json.dumps({k: v for k, v in record.items() if k != "traceback"})[:2000])


if __name__ == "__main__":
    main()
