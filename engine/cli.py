"""``engine`` command line: colorize, report, benchmark, models, export, info."""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
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

import engine
from engine.clitools import console, fail, parse_boost
from engine.system import available_cores, cpu_model

app = typer.Typer(
    help="Colorize grayscale photos with trained U-Net models (ONNX Runtime on any CPU).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
export_app = typer.Typer(
    help="Export trained checkpoints to deployable models.", no_args_is_help=True
)
app.add_typer(export_app, name="export")

EXIT_FAILED_FILES = 1
EXIT_OUTPUT_UNWRITABLE = 3
EXIT_INTERRUPTED = 130

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


@app.command("colorize", cls=_ColorizeCommand)
def colorize_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively) and glob patterns, e.g. 'scans/**/*.tif'."
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
            help="Shipped model name or category (see `engine models`), 'auto' (a small classifier picks the landscape, people or general model for each photo), or a path to a .onnx model. Default: the general model.",
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
        int, typer.Option("--batch-size", min=1, help="Images per backend call.")
    ] = 8,
    size: Annotated[
        int | None,
        typer.Option(
            help="Inference resolution in pixels (square, divisible by 4). Default: the model's training size."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or a shipped model's fp16/int8 variant (int8: about 2× faster on x86 CPUs, slightly less accurate; see README)."
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
    from engine.backends import BackendError, backend_names
    from engine.models import ModelError
    from engine.outputs import OutputUnwritableError, prepare_output_dir
    from engine.pipeline import RunOptions, plan, run

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
    recipe = ColorizerRecipe(model, backend, size, parse_boost(boost), threads, precision)
    try:
        # With --ray the model is checked here and the backend is loaded by the Ray workers.
        colorizer = recipe.build(with_backend=not ray)
    except (ModelError, BackendError, ValueError) as exc:
        fail(str(exc))
    options = RunOptions(
        output, fmt, overwrite, batch_size, workers, quality, skip_color, strip_metadata,
        max_pixels=round(max_pixels * 1e6), all_pages=all_pages,
        memory_budget=memory_budget * 1_000_000 if memory_budget else None,
    )  # fmt: skip
    try:
        planned = plan(inputs, options)
        prepare_output_dir(output)
    except FileNotFoundError as exc:
        fail(str(exc))
    except OutputUnwritableError as exc:
        fail(exc.strerror or str(exc))
    if not planned:
        fail("no images found in the inputs")
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

        described = colorizer.describe()
        try:
            if ray:
                described.update(backend=backend)
                summary, ray_facts = _run_on_ray(
                    recipe, planned, options, ray_address, ray_workers, ray_gpus_per_worker,
                    on_result, described,
                )  # fmt: skip
                described.update(ray=ray_facts)
            else:
                summary = run(
                    colorizer, inputs, options, on_result=on_result, planned=planned,
                    facts=described,
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


def _run_on_ray(recipe, planned, options, address, workers, gpus, on_result, described):
    """The run on Ray (see :mod:`engine.distributed`); one line and exit 2 when Ray fails.

    ``described`` (model, backend) goes into the run's summary file, as a local run's does.
    """
    from dataclasses import asdict

    from engine.distributed import RayRunError, run_on_ray

    try:
        summary, placement = run_on_ray(
            recipe, planned, options, address, workers, gpus, on_result, facts=described
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
    console.print(f"log: {escape(str(summary.log_path))}", highlight=False)


def _csv(text: str, cast=str) -> list:
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{text!r}: expected a comma-separated list")


@app.command("benchmark")
def benchmark_command(
    mode: Annotated[
        str,
        typer.Option(
            help="Comma-separated: compute (backend alone on pre-made batches), e2e (the whole colorize pipeline on a folder)."
        ),
    ] = "compute",
    backend: Annotated[
        str, typer.Option(help="Comma-separated backends, e.g. ort or ort,torch.")
    ] = "ort",
    precision: Annotated[
        str,
        typer.Option(
            help="Comma-separated precisions: fp32, fp16, int8 (this release ships fp32 models)."
        ),
    ] = "fp32",
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes, e.g. 1,8,32.")] = "1,8",
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name, category or .onnx path. Default: the default model."
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Model input size in pixels. Default: the model's training size."),
    ] = None,
    min_runs: Annotated[
        int, typer.Option(min=1, help="compute: timed runs at least (after warm-up).")
    ] = 20,
    min_seconds: Annotated[
        float, typer.Option(min=0, help="compute: timed seconds at least.")
    ] = 2.0,
    warmup: Annotated[int, typer.Option(min=0, help="compute: untimed runs first.")] = 3,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Backend threads. Default: all cores.")
    ] = None,
    input_dir: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="e2e: folder of photos to colorize. Default: a generated folder of real gray photos.",
        ),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="e2e: photos in the generated folder.")] = 48,
    width: Annotated[int, typer.Option(min=8, help="e2e: width of the generated photos.")] = 1024,
    height: Annotated[int, typer.Option(min=8, help="e2e: height of the generated photos.")] = 768,
    vs: Annotated[
        str | None,
        typer.Option(
            help="Pairs A/B of backend:precision to compare back to back in this process, e.g. 'torch:fp32/ort:fp32,ort:fp32/ort:int8'."
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json", help="Write the report (machine, model, results, comparisons) as JSON here."
        ),
    ] = None,
    markdown_path: Annotated[
        Path | None,
        typer.Option(
            "--markdown", help="Write the report as a markdown table here (for the README)."
        ),
    ] = None,
    plot_path: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write a PNG: throughput vs batch, and e2e stage shares (needs matplotlib).",
        ),
    ] = None,
    min_images_per_s: Annotated[
        float | None, typer.Option(help="Exit 1 when any result is below this many images/s.")
    ] = None,
    max_vram_mb: Annotated[
        float | None,
        typer.Option(help="Exit 1 when any result's peak GPU memory (NVML) is above this."),
    ] = None,
    max_p99_ms: Annotated[
        float | None, typer.Option(help="Exit 1 when any result's p99 latency is above this.")
    ] = None,
    rtx3060: Annotated[
        bool,
        typer.Option(
            "--rtx3060",
            help="Bounds for an RTX 3060 12 GB deployment (see README): ≥200 images/s, ≤2048 MB VRAM, p99 ≤250 ms; explicit bounds override them.",
        ),
    ] = False,
    matmul_peak: Annotated[
        bool,
        typer.Option(
            "--matmul-peak/--no-matmul-peak",
            help="Also measure this CPU's fp32 matmul GFLOP/s (about 1 s).",
        ),
    ] = True,
) -> None:
    """Measure throughput, latency percentiles, GFLOP/s and peak memory; check bounds."""
    from benchmarks import report as reports
    from benchmarks.harness import BenchmarkConfig, BenchmarkError, Harness, parse_vs

    try:
        config = BenchmarkConfig(
            modes=_csv(mode), backends=_csv(backend), precisions=_csv(precision),
            batches=_csv(batch, int), model=model, size=size, min_runs=min_runs,
            min_seconds=min_seconds, warmup=warmup, threads=threads, e2e_input=input_dir,
            e2e_count=count, e2e_width=width, e2e_height=height, vs=parse_vs(vs),
            matmul_peak=matmul_peak,
        )  # fmt: skip
        if input_dir is not None and not input_dir.is_dir():
            fail(f"--input {input_dir}: not a folder")
        harness = Harness(config)
        with console.status("measuring…") as status:

            def on_result(r: dict) -> None:
                status.update(
                    f"measured {r['mode']} {r['backend']}:{r['precision']} batch {r['batch']}"
                )

            report = harness.run(on_result)
    except BenchmarkError as exc:
        fail(str(exc))
    console.print(reports.table(report))
    for line in reports.e2e_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    for c in report["comparisons"]:
        console.print(
            f"{c['a']} vs {c['b']} (batch {c['batch']}): {c['ratio']:.2f}×", highlight=False
        )
    if json_path:
        reports.write_json(report, json_path)
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(reports.markdown(report))
    if plot_path:
        try:
            reports.plot(report, plot_path)
        except ValueError as exc:
            fail(str(exc))
    base = reports.PROFILES["rtx3060"] if rtx3060 else reports.Bounds()
    bounds = reports.Bounds(
        min_images_per_s if min_images_per_s is not None else base.min_images_per_s,
        max_vram_mb if max_vram_mb is not None else base.max_vram_mb,
        max_p99_ms if max_p99_ms is not None else base.max_p99_ms,
    )
    misses = reports.check(report, bounds)
    for line in misses:
        console.print(f"[red]bound missed:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    if misses:
        raise typer.Exit(EXIT_FAILED_FILES)


@app.command("report")
def report_command(
    output: Annotated[
        Path, typer.Argument(help="The output folder of a run (`engine colorize … -o OUTPUT`).")
    ],
    page: Annotated[
        Path | None,
        typer.Option(
            "--page", help="Where to write the page. Default: OUTPUT/colorize-report.html."
        ),
    ] = None,
    thumb_size: Annotated[
        int, typer.Option("--thumb-size", min=32, help="Long side of the thumbnails, in pixels.")
    ] = 240,
    max_pairs: Annotated[
        int,
        typer.Option(
            "--max-pairs",
            min=1,
            help="Most before/after pairs on the page (thumbnails are inline; every failed file is listed regardless).",
        ),
    ] = 1000,
    embed: Annotated[
        bool,
        typer.Option(
            "--embed",
            help="Put the full-size images inside the page too: one file to send on, as large as the images (default: the page links the files beside it).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what the page holds as JSON.")
    ] = False,
) -> None:
    """Write an HTML page of a run: before/after pairs (click: full size with a slider), each
    file's status and time, and the run's summary. Self-contained and offline; works during a
    run too (it reads the run logs), so rerun it to refresh."""
    from engine.report import build_report

    try:
        report = build_report(output, page, thumb_size, max_pairs, embed)
    except FileNotFoundError as exc:
        fail(str(exc))
    if as_json:
        facts = {"page": str(report.path), "pairs": report.pairs, "runs": len(report.runs),
                 **report.counts}  # fmt: skip
        typer.echo(json.dumps(facts, indent=2))
        return
    console.print(
        f"wrote {escape(str(report.path))}: {report.pairs} before/after pairs; "
        f"{report.counts['done']} done, {report.counts['skipped']} skipped, "
        f"{report.counts['failed']} failed, from {len(report.runs)} run log(s)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip


@app.command("models")
def models_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the manifest entries as JSON.")
    ] = False,
) -> None:
    """List the shipped models with their evaluation figures."""
    from engine.models import ModelError, auto_table, default_model_name, shipped_models

    models = shipped_models()
    default = default_model_name()
    if as_json:
        entries = [
            {"name": m.name, "category": m.category, "file": str(m.path), "sha256": m.sha256,
             "default": m.name == default, **m.summary}
            for m in models
        ]  # fmt: skip
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table(title="shipped models (figures: validation photos never trained on, no boost)")
    for column in (
        "name",
        "category",
        "params",
        "size",
        "boost",
        "PSNR",
        "gray PSNR",
        "AuC",
        "gray AuC",
    ):
        table.add_column(column)
    for m in models:
        figures = m.summary.get("evaluation", {}).get("no boost", {})
        model_fig, gray_fig = figures.get("model", {}), figures.get("gray", {})

        def fmt(d: dict, key: str, digits: int) -> str:
            return f"{d[key]:.{digits}f}" if key in d else "-"

        table.add_row(
            m.name + (" (default)" if m.name == default else ""), m.category,
            f"{m.summary.get('parameters', 0):,}", str(m.summary.get("input_size", "")),
            ",".join(str(b) for b in m.summary.get("boost", [])),
            fmt(model_fig, "psnr", 2), fmt(gray_fig, "psnr", 2),
            fmt(model_fig, "auc", 4), fmt(gray_fig, "auc", 4),
        )  # fmt: skip
    Console().print(table)
    try:
        table_auto, _ = auto_table()
    except ModelError:
        return
    Console().print(
        "--model auto: " + ", ".join(f"{c} → {m}" for c, m in table_auto.items()), highlight=False
    )


@export_app.command("onnx")
def export_onnx_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="Trained checkpoint (.safetensors from `trainer train`).")
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the ONNX model.")
    ] = Path("model.onnx"),
) -> None:
    """Export a checkpoint to ONNX (opset 17, BN folded, dynamic axes) and check parity with PyTorch."""
    onnx_export = _export_module("onnx")
    try:
        report = onnx_export.export_onnx(checkpoint, out)
    except (onnx_export.ExportError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(
        f"wrote {report.path} (sha256 {report.sha256[:16]}…); parity with PyTorch on "
        f"{report.parity_images} photos: max |Δab| {report.parity_max_abs_ab:.1e}",
        highlight=False,
    )


@export_app.command("fp16")
def export_fp16_command(
    model: Annotated[
        Path, typer.Argument(help="FP32 ONNX model (e.g. from `engine export onnx`).")
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the FP16 model.")
    ] = Path("model-fp16.onnx"),
) -> None:
    """FP16 graph (float32 input/output, head in float32) and its accuracy against FP32."""
    _convert_and_compare(model, out, lambda: _precision().convert_fp16(model, out))


@export_app.command("int8")
def export_int8_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model.")],
    calib: Annotated[
        Path,
        typer.Option(
            "--calib", help="Folder of representative photos (the archive's own scans are best)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the INT8 Q/DQ model.")
    ] = Path("model-int8.onnx"),
    count: Annotated[
        int, typer.Option(min=1, help="Photos used for calibration (chosen deterministically).")
    ] = 64,
    method: Annotated[
        str, typer.Option(help="Calibration method: minmax, entropy or percentile.")
    ] = "percentile",
    flavour: Annotated[
        str,
        typer.Option(
            help="cpu (uint8 activations: fast on ONNX Runtime x86) or trt (symmetric int8, zero point 0: TensorRT)."
        ),
    ] = "cpu",
    percentile: Annotated[
        float,
        typer.Option(
            min=50,
            max=100,
            help="percentile method: the share of each tensor's values its range covers.",
        ),
    ] = 99.9,
    cache_dir: Annotated[
        Path,
        typer.Option(
            help="Calibration cache folder (tensor ranges, reused for the same model, photos and method)."
        ),
    ] = Path(".calibration-cache"),
) -> None:
    """INT8 Q/DQ graph calibrated on real photos, and its accuracy against FP32."""
    from calibration.dataset import build_set

    def convert() -> Path:
        calibration_set = build_set(calib, count, size=_model_size(model))
        console.print(
            f"calibration set: {len(calibration_set)} photos, sha256 {calibration_set.sha256[:16]}…"
        )
        return _precision().convert_int8(
            model, out, calibration_set, cache_dir, method, flavour, percentile
        )

    _convert_and_compare(model, out, convert)


@export_app.command("trt")
def export_trt_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="ONNX model: FP32, FP16 (`engine export fp16`) or INT8 with --flavour trt."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Plan file. Default: the engine cache (~/.cache/colorization-engine/trt), keyed by model, runtime, GPU, precision and profile.",
        ),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="tensorrt or tensorrt-rtx. Default: whichever is installed.")
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, help="Batch size the profile is tuned for (opt).")
    ] = 8,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the engine accepts.")] = 32,
    size: Annotated[
        int, typer.Option(min=4, help="Input size in pixels (square, divisible by 4).")
    ] = 256,
    workspace_mb: Annotated[
        int, typer.Option(min=16, help="Builder workspace memory limit in MB.")
    ] = 1024,
) -> None:
    """Build (or find in the cache) a TensorRT engine; no GPU is needed with tensorrt-rtx."""
    from export.tensorrt import BuildOptions, TensorRTError, build_engine

    try:
        report = build_engine(
            model, out, runtime, BuildOptions(batch, max_batch, size, workspace_mb)
        )
    except TensorRTError as exc:
        fail(str(exc))
    console.print(report.message, highlight=False, soft_wrap=True)


def _export_module(name: str):
    """``export.<name>``, or a one-line error naming the extra to install."""
    try:
        return importlib.import_module(f"export.{name}")
    except ImportError as exc:
        fail(
            f"export needs the train extra ({exc.name} missing): pip install 'colorization-engine[train]'"
        )


def _precision():
    return _export_module("precision")


def _model_size(model: Path) -> int:
    from engine.models import read_model_config

    return read_model_config(model).input_size


def _convert_and_compare(model: Path, out: Path, convert) -> None:
    from engine.models import ModelError

    if not model.is_file():
        fail(f"{model}: no such model file")
    try:
        path = convert()
        from export.onnx import PARITY_PHOTOS

        accuracy = _precision().compare(path, model, sorted(PARITY_PHOTOS.glob("*.jpg")))
    except (ValueError, ModelError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(
        f"wrote {path}; against FP32 on {accuracy.photos} photos: max |Δab| {accuracy.max_abs_ab:.2f},"
        f" mean {accuracy.mean_abs_ab:.3f}, RGB PSNR {accuracy.psnr_vs_fp32:.1f} dB",
        highlight=False,
        soft_wrap=True,
    )


@app.command("info")
def info_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the facts as JSON for machines.")
    ] = False,
) -> None:
    """Show versions, the machine, and which backends can run here (and why not)."""
    import cv2
    import numpy

    from engine.backends import availability

    facts: dict[str, object] = {
        "engine": engine.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_cores": available_cores(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }
    try:
        import onnxruntime

        from engine.backends.ort import working_providers

        facts["onnxruntime"] = onnxruntime.__version__
        facts["onnxruntime_providers"] = working_providers()
    except ImportError:
        facts["onnxruntime"] = None
    facts["backends"] = {name: reason or "available" for name, reason in availability().items()}
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    table = Table(show_header=False)
    for key, value in facts.items():
        if isinstance(value, dict):
            value = "\n".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(value)
        table.add_row(key, str(value))
    Console().print(table)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
