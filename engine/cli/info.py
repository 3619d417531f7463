"""``engine info``: this machine, its runtimes and what each backend can do here."""

from __future__ import annotations

import json
import platform
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import engine
from engine.cli.app import app
from engine.system import available_cores, cpu_model


@app.command("info", short_help="Versions, the machine, and which backends run here.")
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
        table.add_row(escape(key), escape(str(value)))  # "[trt]" in hints is text, not markup
    Console().print(table)
