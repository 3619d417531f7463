"""The ``engine`` Typer application and its sub-apps; the commands register on them."""

from __future__ import annotations

import typer

from engine.clitools import help_markup_mode

app = typer.Typer(
    help="Colorize grayscale photos with trained U-Net models (ONNX Runtime on any CPU).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=help_markup_mode(),
)
export_app = typer.Typer(
    help="Export trained checkpoints to deployable models.",
    no_args_is_help=True,
    rich_markup_mode=help_markup_mode(),
)
app.add_typer(export_app, name="export")

EXIT_FAILED_FILES = 1
"""Some files failed (or a benchmark bound was missed); the rest were done."""
EXIT_OUTPUT_UNWRITABLE = 3
EXIT_INTERRUPTED = 130
