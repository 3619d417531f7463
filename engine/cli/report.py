"""``engine report``: the HTML before/after page of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from engine.cli.app import app
from engine.clitools import console, fail


@app.command("report", short_help="An HTML page of a run's before/after pairs.")
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
    from engine.console import NativeMessages
    from engine.report import build_report

    native = NativeMessages()  # what image libraries print while the images are read
    try:
        with native:
            report = build_report(output, page, thumb_size, max_pairs, embed)
    except FileNotFoundError as exc:
        fail(str(exc))
    if as_json:
        facts = {"page": str(report.path), "pairs": report.pairs, "runs": len(report.runs),
                 **report.counts, "decoder_messages": native.lines}  # fmt: skip
        typer.echo(json.dumps(facts, indent=2))
        return
    console.print(
        f"wrote {escape(str(report.path))}: {report.pairs} before/after pairs; "
        f"{report.counts['done']} done, {report.counts['skipped']} skipped, "
        f"{report.counts['failed']} failed, from {len(report.runs)} run log(s)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
