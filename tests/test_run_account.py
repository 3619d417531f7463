"""Runs that say what they did (issue: what an archivist meets, section 2): a rerun with another
model says so, the report's summary and per-file times come from the files' own records, the
compute benchmark needs no photos, and the texts a user reads are right."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.models import ModelError, default_model_name, resolve_model
from engine.report import _summary_rows, read_runs
from tests.conftest import photo_paths

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _folder(path: Path, count: int = 3) -> Path:
    path.mkdir(parents=True)
    for i, photo in enumerate(photo_paths()[:count]):
        gray = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(path / f"scan{i}.jpg"), cv2.resize(gray, (120, 90)))
    return path


def test_a_rerun_with_another_model_says_so_then_the_report_tells_each_files_model(tmp_path):
    scans, out = _folder(tmp_path / "scans"), tmp_path / "out"
    first = runner.invoke(app, ["colorize", str(scans), "-o", str(out)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["colorize", str(scans), "-o", str(out), "-m", "seed-general"])
    assert again.exit_code == 0, again.output
    default = default_model_name()
    assert f"3 outputs in {out} were made with {default} (fp32, 256 px" in again.output
    assert "--overwrite to redo them with seed-general (fp32, 256 px" in again.output
    same = runner.invoke(app, ["colorize", str(scans), "-o", str(out)])
    assert "were made with" not in same.output  # the same settings: nothing to say

    cv2.imwrite(str(scans / "new.jpg"), cv2.imread(str(photo_paths()[5]), cv2.IMREAD_GRAYSCALE))
    runner.invoke(app, ["colorize", str(scans), "-o", str(out), "-m", "seed-general"])
    runs, entries = read_runs(out)
    done = [e for e in entries if e.status == "done"]
    assert sorted(e.model for e in done) == sorted([default] * 3 + ["seed-general"])  # per file
    rows = dict(_summary_rows(runs, {"done": 4, "skipped": 0, "failed": 0}, entries))
    assert rows["model"] == f"{default} (3), seed-general (1)"
    # the last run skipped all but one file: the shares come from the files' records
    shares = rows["stage shares (files done)"]
    assert "inference" in shares and "decode 0%, preprocess 0%, inference 0%" not in shares
    run_seconds = sum((r.summary or {}).get("seconds", 0) for r in runs)
    for entry in done:
        assert 0 < entry.seconds < run_seconds  # the file's own work, not time since the start
        assert entry.seconds == pytest.approx(sum(entry.stages.values()), abs=1e-3)


def test_compute_benchmark_needs_no_sample_photos(tmp_path, monkeypatch):
    import benchmarks.harness as harness

    monkeypatch.setattr(harness, "SAMPLES", tmp_path / "none")
    result = runner.invoke(app, [
        "benchmark", "--mode", "compute", "--batch", "1", "--min-runs", "1", "--min-seconds", "0",
        "--warmup", "0", "--same-process", "--no-matmul-peak", "--json", str(tmp_path / "r.json"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model_name"] == default_model_name() and report["command"]
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = data["tool"]["setuptools"]["package-data"]["benchmarks"]
    assert any(list((ROOT / "benchmarks").glob(pattern)) for pattern in packaged)


def test_the_texts_a_user_reads(tmp_path, monkeypatch):
    import engine.backends as backends

    monkeypatch.setattr(backends, "availability",
                        lambda: {"trt": "pip install 'colorization-engine[trt]'"})  # fmt: skip
    info = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert "colorization-engine[trt]" in info.output  # an extra is text, not rich markup
    listed = json.loads(runner.invoke(app, ["models", "--json"]).output)
    assert all(entry["parameters"] > 0 for entry in listed)
    assert "ships fp32 models" not in runner.invoke(app, ["benchmark", "--help"]).output
    with pytest.raises(ModelError, match=r"auto .*--precision fp16\|int8"):
        resolve_model("no-such-model")
    colorize_help = runner.invoke(app, ["colorize", "--help"], env={"COLUMNS": "300"}).output
    assert f"Default: {default_model_name()}" in " ".join(colorize_help.split())
    a_file = tmp_path / "out.txt"
    a_file.write_text("")
    scans = _folder(tmp_path / "scans", 1)
    refused = runner.invoke(app, ["colorize", str(scans), "-o", str(a_file)])
    assert refused.exit_code != 0 and "is a file, not a folder" in refused.output
