"""``engine`` command line: colorize, models, export, info."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

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


@app.command("colorize")
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
            help="Shipped model name or category (see `engine models`), or a path to a .onnx model. Default: the general model.",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            "-b",
            help="Inference backend: ort (ONNX Runtime, CPU), auto (best available); trt and torch are planned.",
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
            min=1, help="Decode and encode threads each. Default: the number of CPU cores."
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
) -> None:
    """Colorize grayscale photos; writes one colour image per input and a JSON-lines log."""
    from engine.backends import BackendError
    from engine.colorizer import Colorizer
    from engine.models import ModelError
    from engine.pipeline import RunOptions, plan, run

    if fmt is not None and fmt not in ("jpg", "png", "tif"):
        fail(f"--format {fmt!r}: use jpg, png or tif")
    if size is not None and size % 4:
        fail(f"--size {size}: must be divisible by 4")
    try:
        colorizer = Colorizer(model, backend, size=size, boost=parse_boost(boost), threads=threads)
    except (ModelError, BackendError, ValueError) as exc:
        fail(str(exc))
    options = RunOptions(output, fmt, overwrite, batch_size, workers, quality)
    try:
        planned = plan(inputs, options)
    except FileNotFoundError as exc:
        fail(str(exc))
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
                    f"[red]failed[/red] {result.source}: {result.reason}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
            done = progress.tasks[0].completed + 1
            progress.update(task, advance=1, rate=done / max(1e-9, time.perf_counter() - started))

        summary = run(colorizer, inputs, options, on_result=on_result, planned=planned)
    _print_summary(summary, colorizer.describe())
    if as_json:
        sys.stdout.write(json.dumps({**summary.to_dict(), **colorizer.describe()}, indent=2) + "\n")
    if summary.failed:
        raise typer.Exit(EXIT_FAILED_FILES)


def _print_summary(summary, described: dict) -> None:
    table = Table(title=f"{described['model']} on {described['backend']}", show_header=True)
    for column in ("done", "skipped", "failed", "seconds", "images/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.done), str(summary.skipped), str(summary.failed),
        f"{summary.seconds:.1f}", f"{summary.images_per_s:.2f}",
    )  # fmt: skip
    console.print(table)
    console.print(f"log: {summary.log_path}", highlight=False)


@app.command("models")
def models_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the manifest entries as JSON.")
    ] = False,
) -> None:
    """List the shipped models with their evaluation figures."""
    from engine.models import default_model_name, shipped_models

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
    try:
        from export.onnx import ExportError, export_onnx
    except ImportError as exc:
        fail(
            f"export needs the training extra ({exc.name} missing): pip install 'colorization-engine[train]'"
        )
    try:
        report = export_onnx(checkpoint, out)
    except (ExportError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(
        f"wrote {report.path} (sha256 {report.sha256[:16]}…); parity with PyTorch on "
        f"{report.parity_images} photos: max |Δab| {report.parity_max_abs_ab:.1e}",
        highlight=False,
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

        facts["onnxruntime"] = onnxruntime.__version__
        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
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
