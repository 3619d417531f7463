"""The batch pipeline: decode in threads → batch → backend → post-process and write in threads.

Decoding runs ahead of the backend by a bounded number of images and writing lags behind it by a
bounded number, so memory stays flat however many files a run has. Every file ends as one record
(done, skipped or failed, with the reason) in ``colorize-log-<time>-<pid>.jsonl`` in the output
folder. A run stops early, after finishing the writes in flight, on Ctrl-C or when the output
folder cannot take more files (full, read-only); ``RunSummary.stopped`` says why, and rerunning
the same command resumes. A backend out of memory halves the batch and retries.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engine.color import bgr_to_lab, is_grayscale
from engine.crash_journal import CrashJournal
from engine.decode_workers import (
    DEFAULT_DECODE_TIMEOUT,
    DecoderCrashedError,
    can_isolate,
    shared_workers,
)
from engine.interfaces import ColorizerProtocol
from engine.io import (
    ALPHA_FORMATS,
    EIGHT_BIT_ONLY,
    Decoded,
    Job,
    discover,
    encode_image,
    failure_reason,
    read_image,
    resolved,
)
from engine.memory import DEFAULT_MAX_PIXELS, MemoryBudget, default_memory_budget, image_cost
from engine.metadata import Metadata
from engine.outputs import (
    LOG_PREFIX,
    OutputAlreadyWrittenError,
    OutputUnwritableError,
    output_path,
    prepare_output_dir,
    previous_outputs,
    remove_stale_temps,
    summary_path,
    write_atomic,
)
from engine.probe import count_pages
from engine.system import available_cores


@dataclass
class RunOptions:
    """How a run writes its outputs."""

    output_dir: Path
    fmt: str | None = None
    """``jpg``, ``png`` or ``tif``; None keeps each input's format."""
    overwrite: bool = False
    batch_size: int = 8
    workers: int | None = None
    """Decode and encode threads each (default: the number of cores)."""
    quality: int = 95
    skip_color: bool = False
    """Skip inputs that already carry colour (archives mix colour files in)."""
    strip_metadata: bool = False
    """Leave out the inputs' ICC profile, EXIF, XMP and DPI (kept by default)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Larger inputs are refused before decoding (decompression bombs)."""
    all_pages: bool = False
    """Every page of multi-page TIFFs (outputs ``name_page001.tif``, …); default: the first."""
    memory_budget: int | None = None
    """Bytes of images in flight (decoded, waiting, being written); default: a quarter of RAM.
    One image larger than the budget still runs, alone."""
    retry_crashed: bool = False
    """Decode again the files an earlier run died decoding (:mod:`engine.crash_journal`)."""
    decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT
    """Seconds one file may take to decode before its worker is stopped and the file fails."""


@dataclass
class FileResult:
    """What happened to one input."""

    source: str
    output: str | None
    status: str  # done | skipped | failed
    reason: str | None = None
    seconds: float = 0.0
    page: int | None = None
    """The page (1-based) of a multi-page file under ``--all-pages``."""
    model: str | None = None
    """The model that colorized it (with ``--model auto``, the one its category chose)."""
    stages: dict[str, float] | None = None
    """Seconds of this file's own work per stage (its share of its batch's inference); their
    sum is ``seconds``. Time spent waiting in queues is not the file's and is not counted."""

    def __str__(self) -> str:
        return self.source if self.page is None else f"{self.source} (page {self.page})"


def _result(
    job: Job, output, status: str, reason: str | None = None, seconds: float = 0.0, model=None,
    stages: dict[str, float] | None = None,
) -> FileResult:  # fmt: skip
    page = None if job.page is None else job.page + 1
    return FileResult(
        str(job.source), output and str(output), status, reason, seconds, page, model, stages
    )


STAGES = ("decode", "preprocess", "inference", "postprocess", "encode")


@dataclass
class RunSummary:
    """Counts, time and the log of a run."""

    planned: int = 0
    """Inputs the run was given (``total`` is how many of them it got to)."""
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    log_path: str | None = None
    failures: list[FileResult] = field(default_factory=list)
    stopped: str | None = None
    """Why the run stopped before the end (Ctrl-C, output folder full or read-only), or None."""
    batch_size: int = 0
    """The batch size at the end (smaller than asked for after the backend ran out of memory)."""
    removed_temps: int = 0
    """Temporary files of earlier, killed runs removed from the output folder at the start."""
    ignored: dict[str, int] = field(default_factory=dict)
    """Files in the input folders not taken as images, by extension (each one is in the log)."""
    megapixels: float = 0.0
    """Pixels of the images done, in millions."""
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    """Thread-seconds spent in each stage (stages overlap in time, so they add up to more than
    ``seconds`` when threads run in parallel)."""

    @property
    def images_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def stage_shares(self) -> dict[str, float]:
        """Each stage's share of the thread-seconds of all stages."""
        total = sum(self.stage_seconds.values())
        return {k: (v / total if total else 0.0) for k, v in self.stage_seconds.items()}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["images_per_s"] = round(self.images_per_s, 3)
        data["stage_shares"] = {k: round(v, 4) for k, v in self.stage_shares.items()}
        return data


@dataclass
class PreparedImage:
    """One decoded input on its way to the backend and on to its output."""

    job: Job
    target: Path
    pixels: np.ndarray
    x: np.ndarray
    dtype: np.dtype
    alpha: np.ndarray | None
    metadata: Metadata | None
    started: float
    """When its decoding began (``time.time()``: comparable across the processes of a machine)."""
    cost: int = 0
    route: str | None = None
    """Which of the colorizer's models takes it (``--model auto``); None: the only one."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds this image spent in each stage so far."""

    @property
    def pixel_count(self) -> int:
        return self.pixels.shape[0] * self.pixels.shape[1]


class AlreadyInColourError(Exception):
    """Raised by the decode stage for a colour input under ``skip_color``."""


def read_job(job: Job, options: RunOptions) -> Decoded:
    """Decode ``job``'s file (its page) as the run's options say: metadata, pixel limit."""
    return read_image(job.source, not options.strip_metadata, options.max_pixels, job.page)


def isolated_read_job(job: Job, options: RunOptions, workers: int = 1) -> Decoded:
    """:func:`read_job` in this process's decode workers (:mod:`engine.decode_workers`, at least
    ``workers`` of them), or here where this process may not start any (a daemonic one)."""
    if not can_isolate():
        return read_job(job, options)
    metadata = not options.strip_metadata
    pool = shared_workers(workers)
    return pool.read(job, metadata, options.max_pixels, options.decode_timeout)


class JournaledReader:
    """:func:`isolated_read_job` with each file written down in the run's crash journal while
    it is decoded; call it as ``read_job``."""

    def __init__(self, workers: int, journal: CrashJournal) -> None:
        self.workers = workers
        self.journal = journal

    def __call__(self, job: Job, options: RunOptions) -> Decoded:
        self.journal.started(job)
        try:
            decoded = isolated_read_job(job, options, self.workers)
        except DecoderCrashedError as exc:
            self.journal.crashed(job, str(exc))
            raise
        except BaseException:
            self.journal.ended(job)
            raise
        self.journal.ended(job)
        return decoded


def leave_out_suspects(
    todo: deque[tuple[Job, Path]], journal: CrashJournal, recorder: _Recorder, retry: bool
) -> deque[tuple[Job, Path]]:
    """The jobs of ``todo`` that no earlier run died decoding (all of them with ``retry``); the
    others are recorded as failed with the journal's reason."""
    if retry or not journal.suspects:
        return todo
    kept: deque[tuple[Job, Path]] = deque()
    for job, target in todo:
        reason = journal.reason(job)
        if reason is None:
            kept.append((job, target))
        else:
            recorder.add(_result(job, None, "failed", reason))
    return kept


def prepare_image(
    colorizer: ColorizerProtocol,
    job: Job,
    target: Path,
    options: RunOptions,
    cost: int = 0,
    read: Callable[[Job, RunOptions], Decoded] = read_job,
) -> PreparedImage:
    """Decode stage: read ``job``'s file (by ``read``) and make its model input (and route, for
    ``auto``). The colorizer's backend is not used: one built with ``backend=None`` will do.
    """
    started, t0 = time.time(), time.perf_counter()
    decoded = read(job, options)
    if options.skip_color and has_colour(decoded.pixels):
        raise AlreadyInColourError
    t1 = time.perf_counter()
    pixels, x = colorizer.preprocess(decoded.pixels)
    route = colorizer.route(decoded.pixels)
    times = {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}
    return PreparedImage(
        job, target, pixels, x, decoded.dtype, decoded.alpha, decoded.metadata, started, cost,
        route, times,
    )  # fmt: skip


def write_image(
    colorizer: ColorizerProtocol, item: PreparedImage, ab: np.ndarray, options: RunOptions
) -> None:
    """Write stage: ``item``'s pixels and predicted ``ab`` → its output file, atomically.

    Adds the ``postprocess`` and ``encode`` seconds to ``item.stage_seconds``. The colorizer's
    backend is not used.
    """
    t0 = time.perf_counter()
    suffix = item.target.suffix.lower()
    alpha = item.alpha if suffix in ALPHA_FORMATS else None
    dtype = np.uint8 if suffix in EIGHT_BIT_ONLY else item.dtype
    image = colorizer.postprocess(item.pixels, ab, dtype, alpha, route=item.route)
    t1 = time.perf_counter()
    data = encode_image(image, None, suffix, options.quality, item.metadata)
    write_atomic(item.target, data, root=Path(options.output_dir), replace=options.overwrite)
    item.stage_seconds["postprocess"] = t1 - t0
    item.stage_seconds["encode"] = time.perf_counter() - t1


def written_result(
    colorizer: ColorizerProtocol, item: PreparedImage, error: BaseException | None
) -> FileResult:
    """The record of ``item`` after its write stage ended with ``error`` (None: written)."""
    stages = {k: round(v, 4) for k, v in item.stage_seconds.items()}
    seconds = round(sum(item.stage_seconds.values()), 4)
    if error is None:
        model = colorizer.model_name(item.route)
        return _result(item.job, item.target, "done", None, seconds, model, stages)
    if isinstance(error, OutputAlreadyWrittenError):
        return _result(item.job, None, "skipped", str(error), seconds)
    return _result(item.job, None, "failed", failure_reason(error), seconds)


def unprepared_result(job: Job, error: BaseException) -> FileResult:
    """The record of an input whose decode stage raised ``error``."""
    if isinstance(error, AlreadyInColourError):
        return _result(job, None, "skipped", "already in colour")
    return _result(job, None, "failed", failure_reason(error))


class _Recorder:
    """Collects results from any thread and appends them to the JSON-lines log."""

    def __init__(self, log_path: Path, on_result: Callable[[FileResult], None] | None) -> None:
        self.lock = threading.Lock()
        self.summary = RunSummary(log_path=str(log_path))
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.on_result = on_result
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_path.open("a", encoding="utf-8")

    def add_times(self, seconds: dict[str, float]) -> None:
        with self.lock:
            for stage, value in seconds.items():
                self.summary.stage_seconds[stage] += value

    def add(self, result: FileResult, pixels: int = 0) -> None:
        with self.lock:
            s = self.summary
            s.total += 1
            setattr(s, result.status, getattr(s, result.status) + 1)
            s.megapixels += pixels / 1e6
            if result.status == "failed":
                s.failures.append(result)
            try:
                self.log.write(json.dumps(asdict(result)) + "\n")
                self.log.flush()
            except OSError as exc:  # a full disk: the outputs already written stay valid
                self.stop(f"cannot write the run log {self.summary.log_path}: {exc.strerror}")
        if self.on_result:
            self.on_result(result)

    def ignore(self, paths: Sequence[Path]) -> None:
        """Count and log the files of the input folders that are not taken as images."""
        with self.lock:
            for path in paths:
                kind = ignored_kind(path)
                self.summary.ignored[kind] = self.summary.ignored.get(kind, 0) + 1
                record = {"source": str(path), "output": None, "status": "ignored",
                          "reason": f"not an image file name ({kind})"}  # fmt: skip
                with contextlib.suppress(OSError):
                    self.log.write(json.dumps(record) + "\n")
            with contextlib.suppress(OSError):
                self.log.flush()

    def stop(self, reason: str) -> None:
        """Ask the run to stop after the work in flight (the first reason is kept)."""
        if self.summary.stopped is None:
            self.summary.stopped = reason

    def close(self, facts: dict | None = None) -> None:
        """Close the log and write the run's summary beside it (:func:`summary_path`)."""
        with contextlib.suppress(OSError):  # a full disk: the log's last lines may be lost
            self.log.close()
        record = {
            **self.summary.to_dict(), "started_at": self.started_at,
            "ended_at": datetime.now(UTC).isoformat(timespec="seconds"), **(facts or {}),
        }  # fmt: skip
        path = summary_path(Path(self.summary.log_path))
        with contextlib.suppress(OSError):
            write_atomic(path, json.dumps(record, indent=2, default=str).encode(), replace=True)


def ignored_kind(path: Path) -> str:
    """How an ignored file is counted: its extension, lower-case (or the name of a dot-file)."""
    return path.suffix.lower() or (path.name if path.name.startswith(".") else "(none)")


def plan(
    inputs: Sequence[str | Path], options: RunOptions, ignored: list[Path] | None = None
) -> list[tuple[Job, Path]]:
    """Jobs with their output paths (earlier runs' outputs in the output folder left out);
    files of the input folders that are not images are appended to ``ignored``."""
    output_dir = Path(options.output_dir)
    jobs = discover(inputs, exclude=previous_outputs(output_dir), ignored=ignored)
    sources = {resolved(job.source) for job in jobs}
    planned = []
    for job in jobs:
        pages = count_pages(job.source) if options.all_pages and is_tiff(job.source) else 1
        if pages == 1:
            planned.append((job, output_path(job, output_dir, options.fmt, sources)))
            continue
        for page in range(pages):
            paged = replace(job, page=page)
            suffix = f"_page{page + 1:03d}"
            planned.append((paged, output_path(paged, output_dir, options.fmt, sources, suffix)))
    return planned


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def start_run(
    planned: list[tuple[Job, Path]],
    options: RunOptions,
    on_result: Callable[[FileResult], None] | None = None,
    ignored: Sequence[Path] = (),
) -> tuple[_Recorder, deque[tuple[Job, Path]]]:
    """Open a run: check the output folder, remove dead runs' temporary files, open the log and
    record the inputs that need no work (output exists, two inputs with one output).

    Returns the recorder and the jobs left to do. Shared by the local and the Ray pipeline.
    """
    output_dir = Path(options.output_dir)
    prepare_output_dir(output_dir)
    removed_temps = remove_stale_temps(output_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    recorder = _Recorder(output_dir / f"{LOG_PREFIX}{stamp}-{os.getpid()}.jsonl", on_result)
    recorder.summary.planned = len(planned)
    recorder.summary.removed_temps = removed_temps
    recorder.ignore(ignored)
    claimed: dict[Path, Path] = {}
    todo: deque[tuple[Job, Path]] = deque()
    for job, target in planned:
        key = resolved(target)
        if key in claimed:
            other = claimed[key]
            formats = options.fmt and other.suffix.lower() != job.source.suffix.lower()
            advice = " or leave out --format (each then keeps its own format)" if formats else ""
            reason = f"output {target} is also the output of {other}; rename one{advice}"
            recorder.add(_result(job, None, "failed", reason))
        elif target.exists() and not options.overwrite:
            claimed[key] = job.source
            recorder.add(_result(job, target, "skipped", "output exists"))
        else:
            claimed[key] = job.source
            todo.append((job, target))
    return recorder, todo


def run(
    colorizer: ColorizerProtocol,
    inputs: Sequence[str | Path],
    options: RunOptions,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    planned: list[tuple[Job, Path]] | None = None,
    facts: dict | None = None,
    ignored: Sequence[Path] | None = None,
) -> RunSummary:
    """Colorize every input into ``options.output_dir``; see the module docstring.

    ``planned`` and ``ignored`` (from :func:`plan`) save scanning the inputs again when the
    caller already did; ``facts`` (model, backend, …) go into the run's summary file.
    """
    if planned is None:
        ignored = []
        planned = plan(inputs, options, ignored)
    if on_start:
        on_start(len(planned))
    recorder, todo = start_run(planned, options, on_result, ignored or ())
    journal = CrashJournal(Path(options.output_dir))
    todo = leave_out_suspects(todo, journal, recorder, options.retry_crashed)
    started = time.perf_counter()
    workers = options.workers or available_cores()
    read = JournaledReader(workers, journal)

    def prepare(job: Job, target: Path, cost: int) -> PreparedImage:
        item = prepare_image(colorizer, job, target, options, cost, read)
        recorder.add_times(item.stage_seconds)
        return item

    lookahead = 2 * options.batch_size + workers  # images decoded ahead, and written behind
    slots = threading.BoundedSemaphore(lookahead)

    working = (getattr(colorizer, "working_mb_per_image", None) or 0) * 2**20
    budget = MemoryBudget(
        options.memory_budget or default_memory_budget(int(working * options.batch_size))
    )

    def on_written(item: PreparedImage, future: Future) -> None:
        slots.release()
        budget.give(item.cost)
        error = future.exception()
        if isinstance(error, OutputUnwritableError):
            recorder.stop(str(error))
        if error is None:
            recorder.add_times({k: item.stage_seconds[k] for k in ("postprocess", "encode")})
        result = written_result(colorizer, item, error)
        recorder.add(result, pixels=item.pixel_count if error is None else 0)

    decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
    encode_pool = ThreadPoolExecutor(workers, thread_name_prefix="encode")
    pending: deque[tuple[Job, int, Future]] = deque()
    batches: dict[str | None, list[PreparedImage]] = {}
    """Decoded images waiting for the backend, per model (one list unless ``--model auto``)."""

    batch_limit = options.batch_size

    def infer(items: list[PreparedImage]) -> None:
        """Run ``items`` through the backend and queue their writes; halve on out-of-memory."""
        nonlocal batch_limit
        try:
            t0 = time.perf_counter()
            batch = colorizer.batch_inputs([item.x for item in items])
            ab = colorizer.infer(batch, route=items[0].route)
            elapsed = time.perf_counter() - t0
            recorder.add_times({"inference": elapsed})
            for item in items:
                item.stage_seconds["inference"] = elapsed / len(items)
        except Exception as exc:  # a backend failure fails this batch's files, not the run
            if is_out_of_memory(exc) and len(items) > 1:
                batch_limit = min(batch_limit, len(items) // 2)
                run_in_batches(items)
                return
            for item in items:
                budget.give(item.cost)
                recorder.add(_result(item.job, None, "failed", failure_reason(exc)))
            return
        for item, item_ab in zip(items, ab, strict=True):
            slots.acquire()
            future = encode_pool.submit(write_image, colorizer, item, item_ab, options)
            future.add_done_callback(lambda f, item=item: on_written(item, f))

    def run_in_batches(items: list[PreparedImage]) -> None:
        start = 0
        while start < len(items):
            size = batch_limit  # read each time: a smaller batch after out-of-memory
            infer(items[start : start + size])
            start += size

    def flush(route=..., full_only: bool = False) -> None:
        """Send waiting images to the backend: one model's (``route``) or all."""
        for key in list(batches) if route is ... else [route]:
            if not full_only or len(batches[key]) >= batch_limit:
                run_in_batches(batches.pop(key))

    try:
        while (todo or pending) and recorder.summary.stopped is None:
            while todo and len(pending) < lookahead:
                job, target = todo[0]
                cost = image_cost(job.source)
                if not budget.try_take(cost):
                    if pending:
                        break  # the images being decoded move on first
                    flush()  # batched images go on to be written, which frees memory
                    budget.take(cost)
                todo.popleft()
                pending.append((job, cost, decode_pool.submit(prepare, job, target, cost)))
            job, cost, future = pending.popleft()
            try:
                item = future.result()
                batches.setdefault(item.route, []).append(item)
                flush(item.route, full_only=True)
            except Exception as exc:
                budget.give(cost)
                recorder.add(unprepared_result(job, exc))
            if not (todo or pending):
                flush()
        if recorder.summary.stopped is None:
            flush()
    except KeyboardInterrupt:
        recorder.stop("interrupted (Ctrl-C)")
    finally:
        decode_pool.shutdown(wait=True, cancel_futures=True)
        journal.close()
        encode_pool.shutdown(wait=True)
        recorder.summary.seconds = time.perf_counter() - started
        recorder.summary.batch_size = batch_limit
        recorder.close(facts)
    return recorder.summary


def has_colour(pixels: np.ndarray, threshold: float = 1.8) -> bool:
    """True when an image is in colour (mean LAB chroma of a ≤256-px preview above threshold)."""
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        return False
    step = max(1, max(pixels.shape[:2]) // 256)
    return not is_grayscale(bgr_to_lab(pixels[::step, ::step]), threshold)


_OUT_OF_MEMORY = re.compile(
    r"out of memory|failed to allocate|memoryallocation|bad_alloc|OUT_OF_MEMORY", re.IGNORECASE
)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a backend error is an allocation failure (ONNX Runtime, CUDA, PyTorch, host)."""
    return isinstance(error, MemoryError) or bool(_OUT_OF_MEMORY.search(str(error)))
