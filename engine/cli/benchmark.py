"""``engine benchmark``: throughput, latency and memory of the backends, as ratios in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from engine.cli.app import EXIT_FAILED_FILES, app
from engine.clitools import console, csv_list, fail, print_table


@app.command("benchmark", short_help="Measure images/s, latency and peak memory; check bounds.")
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
            help="Comma-separated precisions: fp32, or fp16/int8 (the variants, made on first use); with --backend torch: fp32, fp16 (CUDA), bf16."
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
    fresh_process: Annotated[
        bool,
        typer.Option(
            "--fresh-process/--same-process",
            help="Measure each row in a new process, so its peak RSS is its own (default); --same-process is faster but a row's RSS then includes what earlier rows left allocated.",
        ),
    ] = True,
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
    from benchmarks.machine import provenance

    try:
        config = BenchmarkConfig(
            modes=csv_list(mode), backends=csv_list(backend), precisions=csv_list(precision),
            batches=csv_list(batch, int), model=model, size=size, min_runs=min_runs,
            min_seconds=min_seconds, warmup=warmup, threads=threads, e2e_input=input_dir,
            e2e_count=count, e2e_width=width, e2e_height=height, vs=parse_vs(vs),
            matmul_peak=matmul_peak, fresh_process=fresh_process,
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
    print_table(console, reports.table(report), reports.row_lines(report), soft_wrap=True)
    for line in reports.e2e_lines(report):
        console.print(line, highlight=False, soft_wrap=True)
    for c in report["comparisons"]:
        console.print(
            f"{c['a']} vs {c['b']} (batch {c['batch']}): {c['ratio']:.2f}×", highlight=False
        )
    report = {**provenance(report["model"]["name"]), **report}  # command, model, when
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
