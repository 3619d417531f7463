"""``engine colorize``: a folder (or files) of photos → colorized copies, locally or on Ray."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperCommand

from engine.cli.app import EXIT_FAILED_FILES, EXIT_INTERRUPTED, EXIT_OUTPUT_UNWRITABLE, app
from engine.clitools import console, fail, parse_boost
from engine.models import default_model_name

MODEL_HELP = (
    "Shipped model name or category (see `engine models`), 'auto' (a small classifier picks the "
    "landscape, people or general model for each photo), or a path to a .onnx model. Default: "
    f"{default_model_name()}."
)

RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.-]+:\d+)$")
"""What ``--ray`` takes as an address when it follows the flag (an existing path is an input)."""


def split_ray_address(args: list[str]) -> list[str]:
    """``--ray ADDRESS`` and ``--ray=ADDRESS`` → ``--ray --ray-address ADDRESS``; a bare ``--ray``
    (followed by an input or another option) stays a flag, so ``--ray folder/`` works."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        if arg.startswith("--ray="):
            out += ["--ray", "--ray-address", arg.split("=", 1)[1]]
        elif (
            arg == "--ray"
            and i + 1 < len(args)
            and RAY_ADDRESS.match(args[i + 1])
            and not os.path.exists(args[i + 1])
        ):
            out += ["--ray", "--ray-address", args[i + 1]]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


class _ColorizeCommand(TyperCommand):
    """The colorize command, reading ``--ray [ADDRESS]`` (see :func:`split_ray_address`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_ray_address(args))


@app.command(
    "colorize", cls=_ColorizeCommand, short_help="Colorize gray photos: files, folders, globs."
)
def colorize_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively) and glob patterns, e.g. 'scans/**/*.tif'. Formats: JPEG, PNG, TIFF, JPEG 2000, PNM, BMP, WebP, AVIF, MPO, APNG, GIF, TGA, PCX, SGI, PSD (README: Inputs); other files in a folder are counted as ignored."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output folder; the input tree is mirrored inside it. Inputs are never overwritten.",
        ),
    ] = Path("colorized"),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=MODEL_HELP,
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            "-b",
            help="Inference backend: ort (ONNX Runtime; CPU, or CUDA/TensorRT with onnxruntime-gpu), trt (TensorRT engine, NVIDIA RTX GPU), torch (PyTorch reference, needs the trainer checkpoint), auto (best available).",
        ),
    ] = "ort",
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Images per backend call. Default: the largest of 8, 4, 2, 1 whose working memory (measured per model, see README: Memory) fits an eighth of this machine's RAM.",
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Inference resolution in pixels (square, divisible by 4). Default: the model's training size."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or a shipped model's fp16/int8 variant (made on first use; see README). With --backend torch: fp32, fp16 (CUDA) or bf16, as autocast of the FP32 checkpoint."
        ),
    ] = "fp32",
    boost: Annotated[
        str | None,
        typer.Option(
            help="Post-boost of a/b: 'model' (the model's own, default), 'none', one factor (1.6) or two (A,B)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format: jpg, png or tif. Default: the input's format (and bit depth).",
        ),
    ] = None,
    quality: Annotated[
        int, typer.Option(min=1, max=100, help="JPEG/WebP quality of outputs.")
    ] = 95,
    skip_color: Annotated[
        bool,
        typer.Option(
            "--skip-color", help="Skip inputs that are already in colour (logged as skipped)."
        ),
    ] = False,
    all_pages: Annotated[
        bool,
        typer.Option(
            "--all-pages",
            help="Colorize every page of multi-page TIFFs, each to its own file (scan_page001.tif, scan_page002.tif, …). Default: the first page, to scan.tif.",
        ),
    ] = False,
    strip_metadata: Annotated[
        bool,
        typer.Option(
            "--strip-metadata",
            help="Do not copy the inputs' ICC profile, EXIF (orientation reset, as it is applied), XMP and DPI to the outputs (copied by default where the output format holds them).",
        ),
    ] = False,
    max_pixels: Annotated[
        float,
        typer.Option(
            "--max-pixels",
            min=0.001,
            help="Refuse inputs larger than this many megapixels (read from the header, before decoding: decompression bombs). Default 600 (30000×20000); OpenCV's own ceiling is 1073.",
        ),
    ] = 600.0,
    memory_budget: Annotated[
        int | None,
        typer.Option(
            "--memory-budget",
            min=64,
            help="MB that the images in flight (decoded, waiting, being written) may take; each counts 8 bytes per pixel (16 for 16-bit). An image larger than the budget runs alone. Default: a quarter of RAM. Local runs; with --ray, Ray's object store bounds what is in flight.",
        ),
    ] = None,
    retry_crashed: Annotated[
        bool,
        typer.Option(
            "--retry-crashed",
            help="Decode again the files that an earlier run into this output folder died decoding (by default they are failed at once with that reason, so one such file cannot stop a folder from finishing). Local runs.",
        ),
    ] = False,
    decode_timeout: Annotated[
        float | None,
        typer.Option(
            "--decode-timeout",
            min=1.0,
            help="Seconds one file may take to decode (each is decoded in a worker process) before the worker is stopped and the file fails. Default: 600.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Redo outputs that already exist (default: skip them, so a rerun resumes).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Decode and encode threads each. Default: the number of CPU cores. Local runs; with --ray, Ray runs one decode or write task per CPU of the cluster.",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Backend threads. Default: the number of CPU cores.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the run summary as JSON on stdout (the table goes to stderr)."
        ),
    ] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run as a Ray Data pipeline (needs the ray extra): decode tasks → an actor pool that loads the model once per actor → write tasks; same outputs, log and resume. `--ray` alone starts a local Ray instance; `--ray ADDRESS` (auto, ray://head:10001, host:port) joins a cluster whose nodes see the same paths.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="The Ray cluster to join (same as `--ray ADDRESS`). Default: a local instance.",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            "--ray-workers",
            min=1,
            help="Most colorize actors (each loads the model once). Default: one per GPU share (--ray-gpus-per-worker), without GPUs one per 8 CPUs.",
        ),
    ] = None,
    ray_gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--ray-gpus-per-worker",
            min=0.0,
            help="GPUs each colorize actor reserves; fractions share a GPU (0.5: two actors per GPU). Default: 1 where the cluster has GPUs, else 0.",
        ),
    ] = None,
) -> None:
    """Colorize grayscale photos; writes one colour image per input and a JSON-lines log.

    Exit status: 0 all done (or skipped), 1 some files failed (each named, with its reason, and in
    the log), 2 nothing could start (bad option, model, input or output folder), 3 stopped because
    the output folder became full or read-only, 130 interrupted (Ctrl-C). Writes in flight are
    finished before stopping; rerunning the same command resumes where the run stopped.
    """
    from engine.auto import ColorizerRecipe
    from engine.backends import BackendError, BackendOptions, backend_names
    from engine.console import NativeMessages
    from engine.memory import default_batch_size
    from engine.models import ModelError, working_mb_per_image
    from engine.outputs import OutputUnwritableError, prepare_output_dir
    from engine.pipeline import RunOptions, plan

    if fmt is not None and fmt not in ("jpg", "png", "tif"):
        fail(f"--format {fmt!r}: use jpg, png or tif")
    if size is not None and size % 4:
        fail(f"--size {size}: must be divisible by 4")
    ray = ray or ray_address is not None
    if ray:
        from engine.distributed import RayRunError, require_ray

        try:
            require_ray()  # before anything is created
        except RayRunError as exc:
            fail(str(exc))
        if backend not in backend_names():
            fail(f"unknown backend {backend!r}; choose one of: {', '.join(backend_names())}")
    if batch_size is None:
        batch_size = default_batch_size(working_mb_per_image(model))
    backend_options = BackendOptions(
        size=size, batch=batch_size, max_batch=max(32, batch_size), threads=threads,
        precision=precision,
    )  # fmt: skip
    recipe = ColorizerRecipe(model, backend, parse_boost(boost), backend_options)
    try:
        # With --ray the model is checked here and the backend is loaded by the Ray workers.
        colorizer = recipe.build(with_backend=not ray)
    except (ModelError, BackendError, ValueError) as exc:
        fail(str(exc))
    options = RunOptions(
        output, fmt, overwrite, batch_size, workers, quality, skip_color, strip_metadata,
        max_pixels=round(max_pixels * 1e6), all_pages=all_pages,
        memory_budget=memory_budget * 1_000_000 if memory_budget else None,
        retry_crashed=retry_crashed,
    )  # fmt: skip
    if decode_timeout is not None:
        options.decode_timeout = decode_timeout
    ignored: list[Path] = []
    try:
        planned = plan(inputs, options, ignored)
        prepare_output_dir(output)
    except FileNotFoundError as exc:
        fail(str(exc))
    except OutputUnwritableError as exc:
        fail(exc.strerror or str(exc))
    if not planned:
        fail("no images found in the inputs")
    described = colorizer.describe()
    if not overwrite:
        _say_what_earlier_runs_made(planned, output, described)
    columns = (
        TextColumn("[bold]colorize"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("colorize", total=len(planned), rate=0.0)
        started = time.perf_counter()

        def on_result(result) -> None:
            if result.status == "failed":
                progress.console.print(
                    f"[red]failed[/red] {escape(str(result))}: {escape(result.reason or '')}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - started))

        native = NativeMessages()
        # the summary file keeps what image libraries printed themselves (never the console)
        described["decoder_messages"] = native.lines
        try:
            with native:
                summary, described = _run(
                    ray, recipe, colorizer, inputs, (planned, ignored), options, on_result,
                    described, (backend, ray_address, ray_workers, ray_gpus_per_worker),
                )  # fmt: skip
        except OutputUnwritableError as exc:
            fail(exc.strerror or str(exc))
    _print_summary(summary, described, batch_size)
    if as_json:
        sys.stdout.write(json.dumps({**summary.to_dict(), **described}, indent=2) + "\n")
    if summary.stopped:
        left = summary.planned - summary.total
        console.print(
            f"[red]stopped:[/red] {escape(summary.stopped)}; {left} files not processed. "
            "Rerun the same command to resume.", highlight=False, soft_wrap=True,
        )  # fmt: skip
        interrupted = summary.stopped.startswith("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED if interrupted else EXIT_OUTPUT_UNWRITABLE)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def _say_what_earlier_runs_made(planned, output: Path, described: dict) -> None:
    """One line per kind of existing output made with other settings, before the run."""
    from engine.history import describe_settings, made_otherwise

    found = made_otherwise([target for _, target in planned], output, described)
    now = describe_settings(described)
    for settings, count in found.most_common():
        console.print(
            f"[yellow]{count} output{'s' if count != 1 else ''} in {escape(str(output))} "
            f"{'were' if count != 1 else 'was'} made with {escape(settings)}[/yellow]; they are "
            f"skipped — --overwrite to redo them with {escape(now)}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def _run(ray, recipe, colorizer, inputs, found, options, on_result, described, ray_args):
    """The run, local or on Ray; returns its summary and the facts described. ``found``:
    (planned, ignored) from ``plan``."""
    from engine.pipeline import run

    planned, ignored = found
    if ray:
        backend, address, workers, gpus = ray_args
        described.update(backend=backend)
        summary, ray_facts = _run_on_ray(
            recipe, planned, options, address, workers, gpus, on_result, described, ignored
        )
        described.update(ray=ray_facts)
        return summary, described
    summary = run(colorizer, inputs, options, on_result=on_result, planned=planned,
                  facts=described, ignored=ignored)  # fmt: skip
    return summary, described


def _run_on_ray(recipe, planned, options, address, workers, gpus, on_result, described, ignored):
    """The run on Ray (see :mod:`engine.distributed`); one line and exit 2 when Ray fails.

    ``described`` (model, backend) goes into the run's summary file, as a local run's does.
    """
    from dataclasses import asdict

    from engine.distributed import RayRunError, run_on_ray

    try:
        summary, placement = run_on_ray(
            recipe,
            planned,
            options,
            address,
            workers,
            gpus,
            on_result,
            facts=described,
            ignored=ignored,
        )
    except RayRunError as exc:
        fail(str(exc))
    return summary, asdict(placement)


def _print_summary(summary, described: dict, batch_size: int = 0) -> None:
    where = described["backend"] + (" on Ray" if "ray" in described else "")
    table = Table(title=f"{described['model']} on {where}", show_header=True)
    for column in ("done", "skipped", "failed", "seconds", "images/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.done), str(summary.skipped), str(summary.failed),
        f"{summary.seconds:.1f}", f"{summary.images_per_s:.2f}",
    )  # fmt: skip
    console.print(table)
    if summary.batch_size and summary.batch_size < batch_size:
        console.print(f"the backend ran out of memory: batch size lowered to {summary.batch_size}")
    if summary.ignored:
        console.print(ignored_line(summary.ignored), highlight=False)
    console.print(f"log: {escape(str(summary.log_path))}", highlight=False)


def ignored_line(ignored: dict[str, int]) -> str:
    """``ignored: 12 files (.txt 10, .xml 2), listed in the log`` (most common kind first)."""
    kinds = sorted(ignored.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(ignored.values())
    counts = ", ".join(f"{escape(kind)} {n}" for kind, n in kinds)
    return f"ignored: {total} file{'s' if total != 1 else ''} ({counts}), listed in the log"
