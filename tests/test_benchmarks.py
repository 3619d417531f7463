"""The benchmark harness: statistics, the JSON schema, bounds and the CLI's exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import report as reports
from benchmarks.harness import RESULT_KEYS, BenchmarkConfig, BenchmarkError, Harness, parse_vs
from benchmarks.memory import PeakMemory
from benchmarks.stats import latency_summary, percentile
from engine.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--min-runs", "2", "--min-seconds", "0", "--warmup", "0", "--no-matmul-peak"]


def test_percentiles_on_known_samples():
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 90) == pytest.approx(90.1)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_summary_uses_the_median_run():
    summary = latency_summary([0.1, 0.2, 0.3, 10.0], items_per_run=8)
    assert summary["p50_ms"] == pytest.approx(250.0)
    assert summary["images_per_s"] == pytest.approx(8 / 0.25)
    assert summary["p99_ms"] == pytest.approx(np.percentile([0.1, 0.2, 0.3, 10.0], 99) * 1000)
    assert summary["runs"] == 4


def test_peak_memory_sees_an_allocation():
    with PeakMemory(interval_s=0.001) as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block.sum()
        del block
    assert peak.rss_mb > 64 and peak.vram_mb is None  # no GPU here


@pytest.fixture(scope="module")
def report() -> dict:
    config = BenchmarkConfig(
        modes=["compute", "e2e"], batches=[1, 2], min_runs=2, min_seconds=0, warmup=0,
        e2e_count=4, e2e_width=96, e2e_height=64, vs=[("ort:fp32", "ort:fp32")],
        matmul_peak=False,
    )  # fmt: skip
    return Harness(config).run()


def test_report_follows_the_schema(report):
    assert set(report) >= {"machine", "model", "results"}
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    assert len(report["model"]["sha256"]) == 64
    assert [(r["mode"], r["batch"]) for r in report["results"]] == [
        ("compute", 1), ("e2e", 1), ("compute", 2), ("e2e", 2),
    ]  # fmt: skip
    for r in report["results"]:
        assert set(RESULT_KEYS) <= set(r)
        assert isinstance(r["batch"], int) and r["images_per_s"] > 0
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["gflops"] > 0 and r["peak_rss_mb"] > 0 and r["peak_vram_mb"] is None
    e2e = report["results"][1]
    assert e2e["images"] == 4 and sum(e2e["stage_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert e2e["ratio_to_compute"] > 0
    (comparison,) = [c for c in report["comparisons"] if c["batch"] == 1]
    assert 0.3 < comparison["ratio"] < 3  # the same thing against itself
    json.dumps(report)  # serialisable as is
    assert "| compute | ort:fp32 | 1 |" in reports.markdown(report)
    lines = reports.row_lines(report)  # what a terminal too narrow for the table shows
    assert len(lines) == 4 and lines[0].startswith("compute ort:fp32 batch 1: ")
    assert " images/s, p50/p90/p99 " in lines[0] and "VRAM" not in lines[0]  # no GPU


def test_tables_too_wide_for_the_terminal_become_lines():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = {}
    for columns in ("80", "200"):
        shown[columns] = subprocess.run(
            [sys.executable, "-m", "engine", "models"], capture_output=True, text=True,
            env={**env, "COLUMNS": columns}, check=True,
        ).stdout  # fmt: skip
        assert "…" not in shown[columns]
    assert "gray PSNR" in shown["200"] and "┃" in shown["200"]  # the table
    assert "┃" not in shown["80"]
    assert re.search(r"\neffunet-general \(default\)  general, [\d,]+ parameters", shown["80"])
    assert re.search(r"\n  PSNR \d+\.\d\d \(gray \d+\.\d\d\)  AuC ", shown["80"])


def test_bounds_report_each_miss(report):
    assert reports.check(report, reports.Bounds()) == []
    misses = reports.check(report, reports.Bounds(min_images_per_s=1e9, max_p99_ms=0.0))
    assert len(misses) == 2 * len(report["results"])
    assert "images/s < 1e+09 (--min-images-per-s)" in misses[0]
    no_gpu = reports.check(report, reports.Bounds(max_vram_mb=2048))
    assert all("no GPU memory reading" in line for line in no_gpu)


def test_missed_bound_exits_1_and_says_which(tmp_path):
    out = tmp_path / "r.json"
    args = ["benchmark", "--batch", "1", *FAST, "--json", str(out)]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text())["results"][0]["mode"] == "compute"
    missed = runner.invoke(app, [*args, "--min-images-per-s", "1000000"])
    assert missed.exit_code == 1
    assert "bound missed: compute ort:fp32 batch 1" in missed.output


def test_unavailable_combinations_are_usage_errors():
    result = runner.invoke(app, ["benchmark", "--precision", "int4", *FAST])
    assert result.exit_code == 2 and "unknown precision 'int4'" in result.output
    result = runner.invoke(app, ["benchmark", "-m", "mine.onnx", *FAST])
    assert result.exit_code == 2 and "no such model file" in result.output
    result = runner.invoke(app, ["benchmark", "--backend", "trt", *FAST])
    assert result.exit_code == 2 and "trt:fp32: backend 'trt' cannot run here" in result.output
    result = runner.invoke(app, ["benchmark", "--mode", "fast", *FAST])
    assert result.exit_code == 2 and "unknown mode" in result.output
    with pytest.raises(BenchmarkError, match="expected A/B"):
        parse_vs("ort:fp32")


def test_readme_section_is_generated_from_results(tmp_path, report, monkeypatch):
    from benchmarks import readme

    results = tmp_path / "results"
    results.mkdir()
    (results / "cpu.json").write_text(json.dumps({**report, "command": "engine benchmark -x"}))
    monkeypatch.setattr(readme, "RESULTS", results)
    page = tmp_path / "README.md"
    start, end = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
    page.write_text(f"# T\n\n{start}\nold figures\n{end}\n\nrest\n")
    readme.update((page,))
    text = page.read_text()
    assert "old figures" not in text and "`engine benchmark -x`" in text
    assert "| compute | ort:fp32 | 1 |" in text and text.endswith("rest\n")
