"""``engine models``: the shipped models, their figures, and their variants made on first use."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.app import app


@app.command("models", short_help="The shipped models, their figures and FP16/INT8 variants.")
def models_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the manifest entries as JSON.")
    ] = False,
    make: Annotated[
        str | None,
        typer.Option(
            "--make",
            help="Make (or check) the --precision variant of this shipped model now, into the user cache, instead of on its first use.",
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="With --make: fp16 or int8.")] = "int8",
) -> None:
    """List the shipped models with their evaluation figures and their FP16/INT8 variants (made on first use into the user cache)."""
    from engine.clitools import fail, print_table
    from engine.models import (
        ModelError,
        auto_table,
        default_model_name,
        resolve_model,
        shipped_models,
        variant_record,
        verified_variant,
    )

    if make is not None:
        try:
            spec = resolve_model(make, precision)
        except ModelError as exc:
            fail(str(exc))
        record = variant_record(spec.path) or {}
        accuracy = record.get("accuracy_vs_fp32", {})
        print_line = f"{spec.name}: {spec.path}"
        if accuracy:
            print_line += f" (RGB PSNR vs fp32 {accuracy['psnr_vs_fp32']:.1f} dB)"
        Console().print(print_line, highlight=False, soft_wrap=True)
        return
    models = shipped_models()
    default = default_model_name()

    def variants(info) -> dict:
        return {
            p: "cached" if verified_variant(info, p) else "made on first use"
            for p in ("fp16", "int8")
        }

    def made_variants(info) -> dict[str, str]:
        """Each variant's RGB PSNR against its FP32 model; '-' where not made yet."""
        cells = {}
        for precision in ("fp16", "int8"):
            found = verified_variant(info, precision)
            record = (variant_record(found.path) or {}) if found else {}
            psnr = record.get("accuracy_vs_fp32", {}).get("psnr_vs_fp32")
            cells[precision] = "-" if not found else f"{psnr:.1f} dB" if psnr else "made"
        return cells

    if as_json:
        entries = [
            {"name": m.name, "category": m.category, "file": str(m.path), "sha256": m.sha256,
             "default": m.name == default, "variants": variants(m), **m.summary}
            for m in models
        ]  # fmt: skip
        typer.echo(json.dumps(entries, indent=2))
        return
    made = [made_variants(m) for m in models]  # hashes each variant file: once
    rows = []
    for m, variants in zip(models, made, strict=True):
        figures = m.summary.get("evaluation", {}).get("no boost", {})
        model_fig, gray_fig = figures.get("model", {}), figures.get("gray", {})

        def fmt(d: dict, key: str, digits: int) -> str:
            return f"{d[key]:.{digits}f}" if key in d else "-"

        rows.append({
            "name": m.name + (" (default)" if m.name == default else ""), "category": m.category,
            "params": f"{m.summary.get('parameters', 0):,}",
            "size": str(m.summary.get("input_size", "")),
            "boost": ",".join(str(b) for b in m.summary.get("boost", [])),
            "PSNR": fmt(model_fig, "psnr", 2), "gray PSNR": fmt(gray_fig, "psnr", 2),
            "AuC": fmt(model_fig, "auc", 4), "gray AuC": fmt(gray_fig, "auc", 4),
            "hue": fmt(model_fig, "hue", 3), "fp16 / int8": " / ".join(variants.values()),
        })  # fmt: skip
    console = Console()
    title = "shipped models (figures: validation photos never trained on, no boost)"
    table = Table(title=title)
    for column in rows[0] if rows else ():
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row.values())

    def blocks():  # a narrow terminal: one block per model
        for row, variants in zip(rows, made, strict=True):
            made_text = "".join(f"  {p} {v}" for p, v in variants.items() if v != "-")
            yield (
                f"[bold]{row['name']}[/bold]  {row['category']}, {row['params']} parameters, "
                f"{row['size']} px, boost {row['boost']}\n"
                f"  PSNR {row['PSNR']} (gray {row['gray PSNR']})  AuC {row['AuC']} "
                f"(gray {row['gray AuC']})  hue {row['hue']}{made_text}"
            )

    print_table(console, table, blocks())
    Console().print(
        "fp16 / int8: each made variant's RGB PSNR against its FP32 model; a variant not made "
        "yet ('-' in the table) is made once, on first use of --precision, into the user cache; "
        "`engine models --make NAME --precision int8` makes one now.",
        highlight=False,
    )
    try:
        table_auto, _ = auto_table()
    except ModelError:
        return
    Console().print(
        "--model auto: " + ", ".join(f"{c} → {m}" for c, m in table_auto.items()), highlight=False
    )
