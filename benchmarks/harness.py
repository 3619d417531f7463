"""The benchmark harness behind ``engine benchmark``.

Every combination of mode × backend × precision × batch asked for runs in one process:

* ``compute``: the backend alone on pre-made batches of real photos at the model's input size:
  warm-up, then timed runs until both ``min_runs`` and ``min_seconds`` are reached; p50/p90/p99
  latency per batch, images/s from the median, achieved GFLOP/s from the model's MAC count.
* ``e2e``: the real ``engine colorize`` pipeline on a folder (given, or generated from real photos
  at a chosen size): images/s, megapixels/s, per-image latency percentiles, the share of each
  stage, and the ratio to ``compute`` measured in the same run.

Peak process RSS (and NVML device memory on NVIDIA GPUs) is sampled during each measurement.
With ``fresh_process`` (the command line's default) each row runs in a new Python process, so its
RSS is its own: memory an earlier, larger batch left allocated is not counted again. Each row
also reports the RSS at its start and its increase.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import fp32_matmul_peak_gflops, machine_info
from benchmarks.memory import PeakMemory, rss_bytes
from benchmarks.stats import latency_summary
from engine.colorizer import Colorizer
from engine.models import file_sha256
from engine.pipeline import RunOptions, run

SAMPLES = Path(__file__).with_name("samples")
CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "calibration" / "photos"
MODES = ("compute", "e2e")
RESULT_KEYS = (
    "mode", "backend", "precision", "batch", "images_per_s", "p50_ms", "p90_ms", "p99_ms",
    "gflops", "peak_rss_mb", "peak_vram_mb",
)  # fmt: skip
"""Keys every result has (the JSON schema's contract); results carry more."""


class BenchmarkError(ValueError):
    """A combination cannot be measured here; the message says why."""


@dataclass
class BenchmarkConfig:
    """What to measure. Lists run as all their combinations."""

    modes: list[str] = field(default_factory=lambda: ["compute"])
    backends: list[str] = field(default_factory=lambda: ["ort"])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    batches: list[int] = field(default_factory=lambda: [8])
    model: str | None = None
    size: int | None = None
    min_runs: int = 20
    min_seconds: float = 2.0
    warmup: int = 3
    threads: int | None = None
    e2e_input: Path | None = None
    e2e_count: int = 48
    e2e_width: int = 1024
    e2e_height: int = 768
    vs: list[tuple[str, str]] = field(default_factory=list)
    matmul_peak: bool = True
    fresh_process: bool = False
    """Measure each row in a new process (its RSS is then its own)."""


def sample_photos(directory: Path | None = None) -> list[Path]:
    """The colour photos in ``directory`` (recursively); when it has none (an install without
    the samples), the calibration photos that ship with the package."""
    directory = directory or SAMPLES
    for folder in (directory, CALIBRATION_PHOTOS):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        if found:
            return found
    raise BenchmarkError(f"{directory}: no sample photos (nor any in {CALIBRATION_PHOTOS})")


def make_gray_folder(
    dest: Path, count: int, width: int, height: int, source: Path | None = None
) -> Path:
    """``count`` grayscale JPEGs of ``width×height`` made from the real photos in ``source``."""
    photos = sample_photos(source)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = cv2.imread(str(photos[i % len(photos)]), cv2.IMREAD_GRAYSCALE)
        if (i // len(photos)) % 2:
            image = image[:, ::-1]  # every other pass mirrored, so files differ
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(dest / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return dest


class Harness:
    """Runs a :class:`BenchmarkConfig`; one colorizer per backend × precision, made once."""

    def __init__(self, config: BenchmarkConfig) -> None:
        self.config = config
        self._colorizers: dict[tuple[str, str], Colorizer] = {}
        self._inputs: dict[int, np.ndarray] = {}

    def colorizer(self, backend: str, precision: str) -> Colorizer:
        key = (backend, precision)
        if key not in self._colorizers:
            try:
                self._colorizers[key] = Colorizer(
                    self.config.model, backend, size=self.config.size,
                    threads=self.config.threads, precision=precision,
                )  # fmt: skip
            except Exception as exc:  # backend/model errors are one line for the user
                raise BenchmarkError(f"{backend}:{precision}: {exc}") from None
        return self._colorizers[key]

    def batch_input(self, colorizer: Colorizer, batch: int) -> np.ndarray:
        """``batch`` real photos, preprocessed as the engine does (cycled when too few)."""
        if batch not in self._inputs:
            photos = sample_photos()
            inputs = []
            for i in range(batch):
                image = cv2.imread(str(photos[i % len(photos)]), cv2.IMREAD_GRAYSCALE)
                inputs.append(colorizer.preprocess(image)[1])
            self._inputs[batch] = np.stack(inputs)
        return self._inputs[batch]

    def model_facts(self, colorizer: Colorizer) -> dict:
        raw = colorizer.config.raw
        gmacs_256 = raw.get("gmacs_256")
        gmacs = gmacs_256 * (colorizer.size / 256) ** 2 if gmacs_256 else None
        return {
            "name": colorizer.spec.name,
            "path": str(colorizer.spec.path),
            "sha256": colorizer.spec.sha256 or file_sha256(colorizer.spec.path),
            "preset": raw.get("preset"),
            "parameters": raw.get("parameters"),
            "input_size": colorizer.size,
            "gmacs_per_image": gmacs,
        }

    def _gflops(self, colorizer: Colorizer, images_per_s: float) -> float | None:
        gmacs = self.model_facts(colorizer)["gmacs_per_image"]
        return 2 * gmacs * images_per_s if gmacs else None

    def compute(self, backend: str, precision: str, batch: int) -> dict:
        colorizer = self.colorizer(backend, precision)
        x = self.batch_input(colorizer, batch)
        for _ in range(self.config.warmup):
            colorizer.infer(x)
        times: list[float] = []
        before = rss_bytes()
        with PeakMemory() as peak:
            started = time.perf_counter()
            while (
                len(times) < self.config.min_runs
                or time.perf_counter() - started < self.config.min_seconds
            ):
                t0 = time.perf_counter()
                colorizer.infer(x)
                times.append(time.perf_counter() - t0)
        stats = latency_summary(times, batch)
        return {
            "mode": "compute", "backend": backend, "precision": precision, "batch": batch,
            **stats, "gflops": self._gflops(colorizer, stats["images_per_s"]),
            "peak_rss_mb": peak.rss_mb, "peak_vram_mb": peak.vram_mb,
            "rss_before_mb": before / 2**20, "rss_increase_mb": peak.rss_mb - before / 2**20,
            "size": colorizer.size, "transfer_ms": None,
        }  # fmt: skip

    def e2e(self, backend: str, precision: str, batch: int, folder: Path) -> dict:
        colorizer = self.colorizer(backend, precision)
        work = Path(tempfile.mkdtemp(prefix="engine-bench-out-"))
        try:
            warm = sorted(folder.glob("*"))[: 2 * batch]
            run(colorizer, warm, RunOptions(work / "warm", batch_size=batch))
            before = rss_bytes()
            with PeakMemory() as peak:
                summary = run(colorizer, [folder], RunOptions(work / "out", batch_size=batch))
            records = [json.loads(line) for line in Path(summary.log_path).read_text().splitlines()]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if summary.failed or not summary.done:
            raise BenchmarkError(f"e2e run failed on {summary.failed} of {summary.total} files")
        latencies = [r["seconds"] for r in records if r["status"] == "done"]
        stats = latency_summary(latencies, 1)
        stats["images_per_s"] = summary.images_per_s  # throughput of the run, not 1/latency
        return {
            "mode": "e2e", "backend": backend, "precision": precision, "batch": batch,
            **stats, "gflops": self._gflops(colorizer, summary.images_per_s),
            "peak_rss_mb": peak.rss_mb, "peak_vram_mb": peak.vram_mb,
            "rss_before_mb": before / 2**20, "rss_increase_mb": peak.rss_mb - before / 2**20,
            "size": colorizer.size, "images": summary.done,
            "megapixels_per_s": summary.megapixels / summary.seconds,
            "stage_shares": {k: round(v, 4) for k, v in summary.stage_shares.items()},
            "ratio_to_compute": None,
        }  # fmt: skip

    def row(self, mode: str, backend: str, precision: str, batch: int, folder: Path | None):
        """One measurement: ``compute`` or ``e2e`` (on ``folder``)."""
        if mode == "compute":
            return self.compute(backend, precision, batch)
        return self.e2e(backend, precision, batch, folder)

    def compare(self, a: str, b: str, batch: int, rounds: int = 3) -> dict:
        """images/s of ``a`` over ``b`` (``backend:precision``), measured back to back in turns."""
        rates: dict[str, list[float]] = {a: [], b: []}
        for _ in range(rounds):
            for spec in (a, b):
                backend, precision = _split_spec(spec)
                rates[spec].append(self.compute(backend, precision, batch)["images_per_s"])
        med = {k: float(np.median(v)) for k, v in rates.items()}
        return {
            "a": a, "b": b, "batch": batch, "a_images_per_s": med[a], "b_images_per_s": med[b],
            "ratio": med[a] / med[b] if med[b] else None, "rounds": rounds,
        }  # fmt: skip

    def run(self, on_result=None) -> dict:
        """Measure everything the config asks for; returns the report (see ``RESULT_KEYS``)."""
        cfg = self.config
        for mode in cfg.modes:
            if mode not in MODES:
                raise BenchmarkError(f"unknown mode {mode!r}; use compute or e2e")
        combos = [(b, p) for b in cfg.backends for p in cfg.precisions]
        for backend, precision in combos:  # fail fast, before minutes of measuring
            self.colorizer(backend, precision)
        results: list[dict] = []
        folder_tmp = None
        try:
            if "e2e" in cfg.modes:
                folder = cfg.e2e_input
                if folder is None:
                    folder_tmp = Path(tempfile.mkdtemp(prefix="engine-bench-in-"))
                    folder = make_gray_folder(
                        folder_tmp, cfg.e2e_count, cfg.e2e_width, cfg.e2e_height
                    )
            for backend, precision in combos:
                for batch in cfg.batches:
                    for mode in cfg.modes:
                        row = (mode, backend, precision, batch, folder if mode == "e2e" else None)
                        fresh = cfg.fresh_process
                        result = _in_fresh_process(cfg, row) if fresh else self.row(*row)
                        results.append(result)
                        if on_result:
                            on_result(result)
            _link_ratios(results)
            comparisons = [self.compare(a, b, batch) for a, b in cfg.vs for batch in cfg.batches]
        finally:
            if folder_tmp:
                shutil.rmtree(folder_tmp, ignore_errors=True)
        first = self._colorizers[combos[0]]
        machine = machine_info()
        machine["backend"] = first.backend.describe()
        if cfg.matmul_peak:
            machine["fp32_matmul_peak_gflops"] = fp32_matmul_peak_gflops(threads=cfg.threads)
        return {
            "machine": machine,
            "model": self.model_facts(first),
            "settings": _settings(cfg),
            "results": results,
            "comparisons": comparisons,
        }


def _measure_row(config: BenchmarkConfig, row: tuple) -> dict:
    """A row measured by a new harness (run in a fresh process by :func:`_in_fresh_process`)."""
    return Harness(config).row(*row)


def _in_fresh_process(config: BenchmarkConfig, row: tuple) -> dict:
    """``row`` measured in a new Python interpreter (``spawn``), so its memory is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # not a daemon: it starts decode workers
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_measure_row, config, row).result()


def _link_ratios(results: list[dict]) -> None:
    compute = {
        (r["backend"], r["precision"], r["batch"]): r["images_per_s"]
        for r in results
        if r["mode"] == "compute"
    }
    for r in results:
        if r["mode"] == "e2e":
            base = compute.get((r["backend"], r["precision"], r["batch"]))
            r["ratio_to_compute"] = r["images_per_s"] / base if base else None


def _split_spec(spec: str) -> tuple[str, str]:
    backend, _, precision = spec.partition(":")
    return backend, precision or "fp32"


def parse_vs(text: str | None) -> list[tuple[str, str]]:
    """``"ort:fp32/ort:int8,torch:fp32/ort:fp32"`` → pairs."""
    pairs = []
    for item in filter(None, (text or "").split(",")):
        a, sep, b = item.partition("/")
        if not sep or not a or not b:
            raise BenchmarkError(f"--vs {item!r}: expected A/B, e.g. torch:fp32/ort:fp32")
        pairs.append((a.strip(), b.strip()))
    return pairs


def _settings(cfg: BenchmarkConfig) -> dict:
    data = dict(cfg.__dict__)
    data["e2e_input"] = str(cfg.e2e_input) if cfg.e2e_input else None
    data["vs"] = [f"{a}/{b}" for a, b in cfg.vs]
    return data
