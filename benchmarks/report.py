"""Benchmark reports: bounds to check, a terminal table, markdown, and a plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table


@dataclass(frozen=True)
class Bounds:
    """Limits every result must meet (None: not checked)."""

    min_images_per_s: float | None = None
    max_vram_mb: float | None = None
    max_p99_ms: float | None = None


PROFILES = {
    # For `--backend trt --precision fp16 --batch 32` on a 12 GB RTX 3060: the engine must leave
    # most of the card to other work, keep a batch under a quarter second and beat real time
    # for a scanning station by far.
    "rtx3060": Bounds(min_images_per_s=200.0, max_vram_mb=2048.0, max_p99_ms=250.0),
}


def check(report: dict, bounds: Bounds) -> list[str]:
    """One line per result that misses a bound (empty when all pass)."""
    misses = []
    for r in report["results"]:
        name = f"{r['mode']} {r['backend']}:{r['precision']} batch {r['batch']}"
        if bounds.min_images_per_s is not None and r["images_per_s"] < bounds.min_images_per_s:
            misses.append(
                f"{name}: {r['images_per_s']:.2f} images/s < {bounds.min_images_per_s:g}"
                " (--min-images-per-s)"
            )
        if bounds.max_p99_ms is not None and r["p99_ms"] > bounds.max_p99_ms:
            misses.append(
                f"{name}: p99 {r['p99_ms']:.1f} ms > {bounds.max_p99_ms:g} (--max-p99-ms)"
            )
        if bounds.max_vram_mb is not None:
            if r["peak_vram_mb"] is None:
                misses.append(f"{name}: no GPU memory reading (NVML), cannot check --max-vram-mb")
            elif r["peak_vram_mb"] > bounds.max_vram_mb:
                misses.append(
                    f"{name}: peak VRAM {r['peak_vram_mb']:.0f} MB > {bounds.max_vram_mb:g}"
                    " (--max-vram-mb)"
                )
    return misses


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


COLUMNS = ("mode", "backend", "batch", "images/s", "p50 ms", "p90 ms", "p99 ms", "GFLOP/s",
           "RSS MB", "VRAM MB")  # fmt: skip


def _row(r: dict) -> list[str]:
    return [
        r["mode"], f"{r['backend']}:{r['precision']}", str(r["batch"]),
        _fmt(r["images_per_s"], 2), _fmt(r["p50_ms"]), _fmt(r["p90_ms"]), _fmt(r["p99_ms"]),
        _fmt(r["gflops"], 0), _fmt(r["peak_rss_mb"], 0), _fmt(r["peak_vram_mb"], 0),
    ]  # fmt: skip


def e2e_lines(report: dict) -> list[str]:
    """One line per e2e result: megapixels/s, stage shares, ratio to compute."""
    lines = []
    for r in report["results"]:
        if r["mode"] != "e2e":
            continue
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r["stage_shares"].items())
        ratio = r.get("ratio_to_compute")
        lines.append(
            f"e2e {r['backend']}:{r['precision']} batch {r['batch']}: {r['images']} images, "
            f"{r['megapixels_per_s']:.1f} MP/s; time shares: {shares}"
            + (f"; {ratio:.0%} of compute's images/s" if ratio else "")
        )
    return lines


def table(report: dict) -> Table:
    m = report["machine"]
    gpus = ", ".join(g["name"] for g in m["gpus"]) or "no GPU"
    out = Table(title=f"{report['model']['name']} on {m['cpu']} ({m['cores']} cores), {gpus}")
    for column in COLUMNS:
        out.add_column(column, justify="left" if column in ("mode", "backend") else "right")
    for r in report["results"]:
        out.add_row(*_row(r))
    return out


def row_lines(report: dict) -> list[str]:
    """The table's rows as lines, for a terminal too narrow for the table."""
    return [
        f"{r['mode']} {r['backend']}:{r['precision']} batch {r['batch']}: "
        f"{_fmt(r['images_per_s'], 2)} images/s, p50/p90/p99 {_fmt(r['p50_ms'])}/"
        f"{_fmt(r['p90_ms'])}/{_fmt(r['p99_ms'])} ms, {_fmt(r['gflops'], 0)} GFLOP/s, "
        f"RSS {_fmt(r['peak_rss_mb'], 0)} MB"
        + ("" if r["peak_vram_mb"] is None else f", VRAM {_fmt(r['peak_vram_mb'], 0)} MB")
        for r in report["results"]
    ]


def markdown(report: dict) -> str:
    m = report["machine"]
    gpus = ", ".join(f"{g['name']} (cc {g['compute_capability']})" for g in m["gpus"]) or "no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [
        f"**{m['cpu']}**, {m['cores']} cores, {gpus}; {versions}.",
        f"Model `{report['model']['name']}` ({report['model']['gmacs_per_image']:.2f} GMAC/image at"
        f" {report['model']['input_size']}²).",
    ]
    if "fp32_matmul_peak_gflops" in m:
        peak = m["fp32_matmul_peak_gflops"]
        lines.append(f"Measured fp32 matmul peak (ONNX Runtime's GEMM): {peak:.0f} GFLOP/s.")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in report["results"]]
    lines += [""] + [f"- {line}" for line in e2e_lines(report)]
    for c in report.get("comparisons", []):
        lines.append(
            f"\n`{c['a']}` vs `{c['b']}` at batch {c['batch']}, back to back "
            f"({c['rounds']} rounds): **{c['ratio']:.2f}×**"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Throughput vs batch per backend/precision, and the e2e stage shares (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in report["results"]:
        series.setdefault(f"{r['mode']} {r['backend']}:{r['precision']}", []).append(
            (r["batch"], r["images_per_s"])
        )
    for name, points in series.items():
        points.sort()
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    left.set(xlabel="batch", ylabel="images/s", title="throughput", xscale="log")
    left.legend()
    e2e = [r for r in report["results"] if r["mode"] == "e2e"]
    bottoms = [0.0] * len(e2e)
    labels = [f"{r['backend']}:{r['precision']} b{r['batch']}" for r in e2e]
    for stage in e2e[0]["stage_shares"] if e2e else {}:
        values = [r["stage_shares"][stage] for r in e2e]
        right.bar(labels, values, bottom=bottoms, label=stage)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    right.set(title="e2e time share per stage", ylabel="share of thread time")
    if e2e:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
