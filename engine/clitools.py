"""Pieces shared by the ``engine`` and ``trainer`` command lines."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from typing import Literal, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

EXIT_USAGE = 2
console = Console(stderr=True)
RICH_HELP_COLUMNS = 120
"""Narrowest terminal for rich's help panels; below it, rich cuts option names and words short
("--no-matmul-pe…"), so click's plain help, which wraps and never cuts, is shown instead."""


def help_markup_mode() -> Literal["rich"] | None:
    """``rich_markup_mode`` for a Typer app: rich help panels on a wide terminal, else plain."""
    return "rich" if shutil.get_terminal_size().columns >= RICH_HELP_COLUMNS else None


def fits(target: Console, renderable: RenderableType) -> bool:
    """Whether ``renderable`` (a table) shows at ``target``'s width with no cell cut short."""
    unbounded = target.options.update_width(10_000)
    return Measurement.get(target, unbounded, renderable).maximum <= target.width


def print_table(
    target: Console, table: Table, lines: Iterable[str], soft_wrap: bool = False
) -> None:
    """``table`` where it fits ``target``'s width; on a narrower terminal its title and then
    ``lines`` (the command's line or block per row, made only then) instead of a table of "…"."""
    if fits(target, table):
        target.print(table)
        return
    target.print(table.title, highlight=False, soft_wrap=True)
    for line in lines:
        target.print(line, highlight=False, soft_wrap=soft_wrap)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on one line (stderr) and exit with status 2."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def parse_boost(text: str | None) -> tuple[float, float] | None:
    """``--boost``: None or 'model' → the model's own (None); 'none' → (1, 1); '1.6'; 'A,B'."""
    if text is None or text == "model":
        return None
    if text == "none":
        return (1.0, 1.0)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        fail(f"--boost {text!r}: expected 'model', 'none', a factor like 1.6, or 'A,B'")
    return values[0], values[1]


def csv_list(text: str, cast=str) -> list:
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{text!r}: expected a comma-separated list")
