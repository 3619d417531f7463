"""``engine colorize --ray``: the local run's work as a Ray Data pipeline, on one machine or many.

Ray Data streams the inputs through three stages::

    file list ─► decode (tasks, CPU) ─► colorize (actor pool: the model loaded once per actor,
    num_gpus per actor where the cluster has GPUs) ─► write (tasks, CPU) ─► records to the driver

The stages call the same functions as the local pipeline (:func:`engine.pipeline.prepare_image`,
:func:`engine.pipeline.write_image`), and the driver keeps the same run log, summary and rules:
outputs that exist are skipped before anything starts (reruns resume), each output is written
atomically and at most once (a task that Ray retries after its worker died finds it written and
logs it as skipped), every input ends as one record. Ray retries the work of a worker that died;
temporary files of writers killed mid-write are removed at the end of the run. Each task decodes
through its process's decode workers (:mod:`engine.decode_workers`), so a decoder that crashes
fails its file, not the task.

Every node needs this package (``pip install 'colorization-engine[ray]'``) and the inputs and the
output folder at the same paths (a shared file system); see the README's cluster recipe.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.auto import ColorizerRecipe
from engine.io import Job, failure_reason
from engine.outputs import OutputUnwritableError, remove_stale_temps
from engine.pipeline import (
    STAGES,
    FileResult,
    PreparedImage,
    RunOptions,
    RunSummary,
    _result,
    is_out_of_memory,
    isolated_read_job,
    prepare_image,
    start_run,
    unprepared_result,
    write_image,
    written_result,
)
from engine.system import available_cores

RAY_MISSING = "--ray needs Ray Data: pip install 'colorization-engine[ray]'"
LOCAL = "local"
"""The address that starts a Ray instance on this machine for the run (the default)."""


class RayRunError(RuntimeError):
    """Ray could not start, reach the cluster or run the pipeline; the message says why."""


@dataclass
class RayPlacement:
    """How many colorize actors, what each reserves, and what Ray took to start."""

    workers: int
    gpus_per_worker: float
    cluster_cpus: int = 1
    cluster_gpus: float = 0.0
    cpus_per_worker: float = 1.0
    address: str = LOCAL
    startup_seconds: float = 0.0
    """Seconds to start (or join) Ray; in the run's ``seconds`` too."""

    @classmethod
    def for_cluster(
        cls, resources: dict, workers: int | None = None, gpus_per_worker: float | None = None
    ) -> RayPlacement:
        """Defaults from the cluster's resources: one actor per GPU (or per ``gpus_per_worker``
        share of one); without GPUs, one actor per 8 CPUs (at least one)."""
        gpus = float(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 1))
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if gpus >= 1 else 0.0
        if gpus_per_worker > gpus:
            raise RayRunError(
                f"--ray-gpus-per-worker {gpus_per_worker:g}: the cluster has {gpus:g} GPUs"
            )
        if workers is None:
            if gpus_per_worker > 0:
                workers = max(1, math.floor(gpus / gpus_per_worker + 1e-9))
            else:
                workers = max(1, int(cpus // 8))
        return cls(workers, gpus_per_worker, int(cpus), gpus)


# ------------------------------------------------------------------------------ the stages


@functools.lru_cache(maxsize=4)
def _cpu_colorizer(recipe: ColorizerRecipe):
    """The colorizer without a backend, built once per worker process (pre/post-processing)."""
    return recipe.build(with_backend=False)


def _job(row_source: str, row_relative: str, page: int) -> Job:
    return Job(Path(row_source), Path(row_relative), None if page < 0 else int(page))


def decode_stage(batch: dict, recipe: ColorizerRecipe, options: RunOptions) -> dict:
    """Ray task: file rows → decoded images (``item``), or their records (``record``)."""
    colorizer = _cpu_colorizer(recipe)
    items: list[PreparedImage | None] = []
    records: list[FileResult | None] = []
    for source, relative, page, target in zip(
        batch["source"], batch["relative"], batch["page"], batch["target"], strict=True
    ):
        job = _job(source, relative, page)
        try:
            item = prepare_image(colorizer, job, Path(target), options, read=isolated_read_job)
            item.pixels = item.alpha = item.metadata = None  # see reload_pixels
            items.append(item)
            records.append(None)
        except Exception as exc:  # one bad file is a record, not a failed task
            items.append(None)
            records.append(unprepared_result(job, exc))
    return {"item": items, "record": records}


def _objects(column, kind: type) -> list:
    """A column of Python objects or gaps as a list (a column that is all gaps reaches a stage
    as nulls of some other type: NaN floats, say)."""
    return [value if isinstance(value, kind) else None for value in column]


class ColorizeStage:
    """Ray actor: loads the model once, then colorizes batches of decoded images.

    Images are grouped per model (``--model auto``); a batch that runs out of memory is split in
    halves until it fits, and an image that still fails is recorded as failed.
    """

    def __init__(self, recipe: ColorizerRecipe) -> None:
        self.colorizer = recipe.build()

    def __call__(self, batch: dict) -> dict:
        items = _objects(batch["item"], PreparedImage)
        records = _objects(batch["record"], FileResult)
        ab: list[np.ndarray | None] = [None] * len(items)
        routes: dict[str | None, list[int]] = {}
        for i, item in enumerate(items):
            if item is not None:
                routes.setdefault(item.route, []).append(i)
        for route, indexes in routes.items():
            self._infer(items, indexes, route, ab, records)
        return {"item": items, "record": records, "ab": ab}

    def _infer(self, items, indexes: list[int], route, ab: list, records: list) -> None:
        t0 = time.perf_counter()
        try:
            out = self.colorizer.infer(np.stack([items[i].x for i in indexes]), route=route)
        except Exception as exc:
            if is_out_of_memory(exc) and len(indexes) > 1:
                half = len(indexes) // 2
                self._infer(items, indexes[:half], route, ab, records)
                self._infer(items, indexes[half:], route, ab, records)
                return
            for i in indexes:
                records[i] = _result(items[i].job, None, "failed", failure_reason(exc))
                items[i] = None
            return
        share = (time.perf_counter() - t0) / len(indexes)
        for i, value in zip(indexes, out, strict=True):
            ab[i] = value
            items[i].stage_seconds["inference"] = share


def reload_pixels(item: PreparedImage, options: RunOptions) -> None:
    """Decode ``item``'s file again for its output.

    Only the model input (256² floats) and the ab (2×256²) travel between the stages: a
    full-resolution image through the object store costs more than decoding it twice (measured:
    see the README's Ray section), and a write task may run on another node anyway.
    """
    t0 = time.perf_counter()
    decoded = isolated_read_job(item.job, options)
    item.pixels, item.alpha, item.metadata = decoded.pixels, decoded.alpha, decoded.metadata
    item.stage_seconds["decode"] = item.stage_seconds.get("decode", 0.0) + (
        time.perf_counter() - t0
    )


def write_stage(batch: dict, recipe: ColorizerRecipe, options: RunOptions) -> dict:
    """Ray task: decoded images and their ab → output files; returns one record per input."""
    colorizer = _cpu_colorizer(recipe)
    out: dict[str, list] = {key: [] for key in RECORD_COLUMNS}
    columns = (
        _objects(batch["item"], PreparedImage), _objects(batch["record"], FileResult),
        _objects(batch["ab"], np.ndarray),
    )  # fmt: skip
    for item, record, ab in zip(*columns, strict=True):
        stop, pixels, seconds = "", 0, {}
        if item is not None:
            error = None
            try:
                reload_pixels(item, options)
                write_image(colorizer, item, ab, options)
                pixels = item.pixel_count
            except Exception as exc:
                error = exc
                if isinstance(exc, OutputUnwritableError):
                    stop = str(exc)
            record = written_result(colorizer, item, error)
            seconds = item.stage_seconds
        _add_record(out, record, pixels, seconds, stop)
    return out


FILE_RESULT_COLUMNS = ("source", "output", "status", "reason", "seconds", "page", "model")
STAGE_COLUMNS = tuple(f"s_{stage}" for stage in STAGES)
RECORD_COLUMNS = (*FILE_RESULT_COLUMNS, "pixels", "stop", *STAGE_COLUMNS)
"""The final rows: flat columns of plain types (a record, its pixels and stage seconds)."""


def _add_record(out: dict, record: FileResult, pixels: int, seconds: dict, stop: str) -> None:
    for key in FILE_RESULT_COLUMNS:
        value = getattr(record, key)
        out[key].append(value if value is not None else ("" if key != "page" else -1))
    out["pixels"].append(pixels)
    out["stop"].append(stop)
    for key in STAGE_COLUMNS:
        out[key].append(float(seconds.get(key.removeprefix("s_"), 0.0)))


def _record_from_row(row: dict) -> tuple[FileResult, int, dict[str, float], str]:
    record = FileResult(
        row["source"], row["output"] or None, row["status"], row["reason"] or None,
        float(row["seconds"]), None if row["page"] < 0 else int(row["page"]),
        row["model"] or None,
    )  # fmt: skip
    seconds = {key.removeprefix("s_"): float(row[key]) for key in STAGE_COLUMNS if row[key]}
    return record, int(row["pixels"]), seconds, row["stop"]


# ------------------------------------------------------------------------------ the driver


def require_ray():
    """The ``ray`` module with Ray Data, or :class:`RayRunError` naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayRunError(RAY_MISSING) from exc
    return ray


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` or ``ray://host:port`` that does not answer (Ray itself
    retries for minutes); ``auto`` is left to Ray, which looks for a cluster on this node."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", address)
    if not match:
        return
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayRunError(f"cannot reach Ray at {address}: {reason}") from exc


@contextlib.contextmanager
def _quiet_stderr():
    """Send this process's file descriptor 2 to /dev/null for a while (C++ writes included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def connect(address: str | None) -> dict:
    """Start a local Ray instance (``local``/None) or join a cluster; returns its resources."""
    ray = require_ray()
    # Ray's loggers stay quiet: what goes wrong reaches the user as one line (RayRunError).
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Ray's C++ core logs at error level about its own defaults (actor constructor arguments
    # in the object store); RAY_BACKEND_LOG_LEVEL=info brings its logs back for debugging.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs: dict = {
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address in (None, LOCAL):
        # One CPU token more than the cores: the colorize actor holds one for its lifetime, and
        # decode and write tasks must still run side by side on a 2-core laptop.
        kwargs.update(address="local", num_cpus=available_cores() + 1, include_dashboard=False)
    else:
        check_reachable(address)
        kwargs.update(address=address)
    try:
        with _quiet_stderr():  # Ray's C++ core announces its log level there, whatever it is
            ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from Ray's own checks
        where = "a local Ray instance" if address in (None, LOCAL) else f"Ray at {address}"
        raise RayRunError(f"cannot start {where}: {str(exc).splitlines()[0]}") from exc
    # The driver prints the raylet's error messages (a failing actor's remote traceback, retries)
    # on stdout, which --json owns; their substance reaches the user as one line (RayRunError).
    # Ray's debugger turns the printing off with this flag; there is no public switch.
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if worker is not None and hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    return ray.cluster_resources()


def run_on_ray(
    recipe: ColorizerRecipe,
    planned: list[tuple[Job, Path]],
    options: RunOptions,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    facts: dict | None = None,
    ignored: Sequence[Path] = (),
) -> tuple[RunSummary, RayPlacement]:
    """Colorize ``planned`` (from :func:`engine.pipeline.plan`) on Ray; see the module docstring.

    ``facts`` (model, backend, …) go into the run's summary file, with the placement;
    ``ignored`` (from ``plan``) is counted and logged.

    Raises :class:`RayRunError` when Ray cannot start or the pipeline itself fails.
    """
    ray = require_ray()
    recorder, todo = start_run(planned, options, on_result, ignored)
    started = time.perf_counter()
    placement = RayPlacement(0, 0.0, address=address or LOCAL)
    try:
        if todo:  # a rerun with every output written starts no Ray
            resources = connect(address)
            placement = RayPlacement.for_cluster(resources, workers, gpus_per_worker)
            placement.address = address or LOCAL
            placement.startup_seconds = round(time.perf_counter() - started, 3)
            _stream(ray, recipe, list(todo), options, placement, recorder)
    except KeyboardInterrupt:
        recorder.stop("interrupted (Ctrl-C)")
    finally:
        if ray.is_initialized():
            ray.shutdown()  # ends a local instance's workers, and with them any write in flight
        recorder.summary.seconds = time.perf_counter() - started
        recorder.summary.batch_size = options.batch_size
        recorder.summary.removed_temps += _remove_dead_writers_temps(Path(options.output_dir))
        recorder.close({**(facts or {}), "ray": asdict(placement)})
    return recorder.summary, placement


def _stream(ray, recipe, todo, options: RunOptions, placement: RayPlacement, recorder) -> None:
    rows = [
        {"source": str(job.source), "relative": str(job.relative),
         "page": -1 if job.page is None else job.page, "target": str(target)}
        for job, target in todo
    ]  # fmt: skip
    per_block = max(1, min(options.batch_size, 4))
    blocks = max(1, math.ceil(len(rows) / per_block))
    stage_kwargs = {"recipe": recipe, "options": options}
    # CPU tasks in flight: the cluster's CPUs. A task pool's size that differs from the actor
    # pool's also keeps Ray Data from fusing the decode tasks into the colorize actors, which
    # would serialise decoding behind the model.
    tasks = max(2, placement.cluster_cpus)
    if tasks == placement.workers:
        tasks += 1
    cpu_task = {"num_cpus": 1, "concurrency": tasks, "batch_format": "numpy"}
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = ds.map_batches(decode_stage, fn_kwargs=stage_kwargs, batch_size=per_block, **cpu_task)
    actors = ray.data.ActorPoolStrategy(min_size=1, max_size=placement.workers)
    ds = ds.map_batches(
        ColorizeStage, fn_constructor_kwargs={"recipe": recipe}, batch_size=options.batch_size,
        batch_format="numpy", compute=actors, num_gpus=placement.gpus_per_worker or None,
        num_cpus=placement.cpus_per_worker,
    )  # fmt: skip
    ds = ds.map_batches(write_stage, fn_kwargs=stage_kwargs, batch_size=None, **cpu_task)
    # Ray Data warns when a stage gets fewer blocks than it may run tasks (small runs): harmless.
    warnings.filterwarnings("ignore", "The maximum number of concurrent tasks", UserWarning)
    try:
        for row in ds.iter_rows():
            record, pixels, seconds, stop = _record_from_row(row)
            recorder.add_times(seconds)
            recorder.add(record, pixels=pixels)
            if stop:
                recorder.stop(stop)
            if recorder.summary.stopped:
                break
    except Exception as exc:  # the pipeline failed as a whole (a stage's code, actor creation)
        raise RayRunError(f"the Ray pipeline failed: {_root_error(exc)}") from exc


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception)): (.+)$")


def _root_error(exc: BaseException) -> str:
    """The root error of a failed pipeline, on one line.

    Ray wraps a stage's error (an actor that cannot load its backend, say) in several
    exceptions whose text is the remote traceback; its last ``Type: message`` line is the error.
    """
    found = None
    chain: BaseException | None = exc
    for _ in range(16):
        if chain is None:
            break
        for line in str(chain).splitlines():
            match = _ERROR_LINE.match(line.strip())
            if match:
                found = match
        chain = chain.__cause__ or chain.__context__
    if found is None:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:] or ''}"
    kind, message = found.groups()
    return message if kind in ("BackendError", "ModelError") else f"{kind}: {message}"


def _remove_dead_writers_temps(output_dir: Path, wait_s: float = 5.0) -> int:
    """Remove temporary files of writers that died (a killed worker, the Ray instance shut down
    mid-write); waits a little for the shut-down workers' processes to end."""
    deadline = time.monotonic() + wait_s
    removed = remove_stale_temps(output_dir)
    while time.monotonic() < deadline and _temps_left(output_dir):
        time.sleep(0.2)
        removed += remove_stale_temps(output_dir)
    return removed


def _temps_left(output_dir: Path) -> bool:
    from engine.io import TEMP_MARKER

    return any(TEMP_MARKER in name for _, _, files in os.walk(output_dir) for name in files)
