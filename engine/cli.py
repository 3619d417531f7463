"""``engine`` command line."""

from __future__ import annotations

import json
import os
import platform
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import engine

app = typer.Typer(
    help="Colorize grayscale photos with trained U-Net models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Colorize grayscale photos with trained U-Net models."""


@app.command("info")
def info_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the facts as JSON for machines.")
    ] = False,
) -> None:
    """Show the engine's version, the machine and the inference runtimes installed."""
    import cv2
    import numpy

    facts: dict[str, object] = {
        "engine": engine.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_cores": os.cpu_count(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        facts["onnxruntime"] = None
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    table = Table(show_header=False)
    for key, value in facts.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    Console().print(table)
