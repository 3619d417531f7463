"""``engine colorize --ray``: a local Ray instance (this machine's CPUs) runs the Ray Data pipeline.

The outputs must be the local pipeline's, byte for byte; a rerun resumes; a colorize actor
killed mid-run is restarted by Ray and every input still ends with exactly one complete output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app, split_ray_address
from engine.io import TEMP_MARKER, read_image
from tests.conftest import interruptible, photo_paths, scan_folder
from tests.corpus import make_corpus

pytest.importorskip("ray.data", reason="needs the ray extra: pip install -e '.[ray]'")

runner = CliRunner()


def _records(out: Path) -> dict[str, dict]:
    """Source → its record, from every run log in ``out`` (the last record wins)."""
    records = {}
    for log in sorted(out.glob("colorize-log-*.jsonl")):
        for line in log.read_text().splitlines():
            record = json.loads(line)
            records[record["source"]] = record
    return records


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith("colorize-log-")
    }


def test_ray_outputs_equal_the_local_pipelines_and_a_rerun_resumes(tmp_path):
    corpus = tmp_path / "archive"
    good, bad = make_corpus(corpus)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    result = runner.invoke(app, ["colorize", str(corpus), "-o", str(local)])
    assert result.exit_code == 1, result.output
    result = runner.invoke(
        app, ["colorize", "--ray", str(corpus), "-o", str(distributed), "--json"]
    )
    assert result.exit_code == 1, result.output  # the same bad files fail
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["done"], summary["failed"]) == (len(good), len(bad))
    assert summary["ray"]["workers"] >= 1 and summary["ray"]["address"] == "local"
    # The summary file names the model and backend as a local run's does (the report reads it).
    (summary_file,) = distributed.glob("colorize-log-*.summary.json")
    (local_summary,) = local.glob("colorize-log-*.summary.json")
    written, expected = json.loads(summary_file.read_text()), json.loads(local_summary.read_text())
    for key in ("model", "precision", "backend", "size"):
        assert written[key] == expected[key], key
    assert written["ray"]["address"] == "local" and written["done"] == len(good)
    for name in bad:
        assert f"failed {corpus / name}: " in result.output  # one line per bad file
    assert "Traceback" not in result.output

    # Same records (status and reason per input) and the same output files, byte for byte.
    ray_records, local_records = _records(distributed), _records(local)
    assert set(ray_records) == set(local_records)
    for source, record in local_records.items():
        other = ray_records[source]
        reason = other["reason"] and other["reason"].replace(str(distributed), str(local))
        assert (other["status"], reason) == (record["status"], record["reason"]), source
    local_files, ray_files = _files(local), _files(distributed)
    assert sorted(ray_files) == sorted(local_files) and len(ray_files) == len(good)
    differing = [name for name in local_files if local_files[name] != ray_files[name]]
    assert not differing
    assert not [p for p in distributed.rglob("*") if TEMP_MARKER in p.name]

    # A rerun resumes: nothing is written again, every good input is skipped.
    mtimes = {p: p.stat().st_mtime_ns for p in distributed.rglob("*") if p.is_file()}
    result = runner.invoke(
        app, ["colorize", "--ray", str(corpus), "-o", str(distributed), "--json"]
    )
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["done"], summary["skipped"]) == (0, len(good)), result.output
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())


def _colorize_actor_pids() -> list[int]:
    """Processes of this machine whose title names the colorize stage's Ray actor."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::") and "ColorizeStage" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_killed_colorize_worker_is_replaced_and_no_output_is_lost_or_doubled(tmp_path):
    folder = tmp_path / "scans"
    sources = scan_folder(folder, 36)  # the committed photos, 1.5 times over
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "engine", "colorize", "--ray", str(folder), "-o", str(out),
        "--batch-size", "2", "--json",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        written = [p for p in out.rglob("*.jpg") if TEMP_MARKER not in p.name]
        actors = _colorize_actor_pids()
        if actors and 4 <= len(written) < len(sources) // 2:
            killed = actors[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert killed is not None, "the run ended before a colorize actor could be killed"
    assert process.poll() is None  # killed mid-run
    replacements: set[int] = set()
    while process.poll() is None and time.monotonic() < deadline + 120:
        replacements.update(set(_colorize_actor_pids()) - {killed})
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=300)
    assert replacements, "Ray did not start a new colorize actor"
    assert process.returncode == 0, stderr[-3000:]
    assert not Path(f"/proc/{killed}").exists()
    summary = json.loads(stdout[stdout.index("{") :])
    assert summary["failed"] == 0
    assert summary["done"] + summary["skipped"] == len(sources)

    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(str(s) for s in sources)  # once each
    outputs = sorted(out.glob("*.jpg"))
    assert [p.name for p in outputs] == [s.name for s in sources]  # no duplicate, none missing
    for path in outputs:  # every output complete: decodes to the input's size
        assert read_image(path).pixels.shape[:2] == read_image(folder / path.name).pixels.shape[:2]
    assert not [p for p in out.rglob("*") if TEMP_MARKER in p.name]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ray", "in/", "-o", "out"], ["--ray", "in/", "-o", "out"]),
        (["--ray", "auto", "in/"], ["--ray", "--ray-address", "auto", "in/"]),
        (["--ray=ray://head:10001", "in/"], ["--ray", "--ray-address", "ray://head:10001", "in/"]),
        (["--ray", "head.local:6379", "in/"], ["--ray", "--ray-address", "head.local:6379", "in/"]),
        (["in/", "--ray"], ["in/", "--ray"]),
        (["--", "--ray", "auto"], ["--", "--ray", "auto"]),
    ],
)
def test_ray_option_reads_an_address_only_when_one_follows(args, expected):
    assert split_ray_address(args) == expected


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(
        app,
        ["colorize", "--ray", "127.0.0.1:1", str(photo_paths()[0]), "-o", str(tmp_path / "o")],
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0], result.output


def test_ctrl_c_stops_the_ray_run_cleanly_and_a_rerun_completes(tmp_path):
    folder = tmp_path / "scans"
    scan_folder(folder, 36)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine", "colorize", "--ray", str(folder), "-o", str(out),
               "--batch-size", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=interruptible,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(out.glob("scan*.jpg"))) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    assert "interrupted (Ctrl-C)" in output and "Traceback" not in output
    assert not [p for p in out.rglob("*") if TEMP_MARKER in p.name]
    written = len(list(out.glob("scan*.jpg")))
    assert written < 36
    result = runner.invoke(app, ["colorize", "--ray", str(folder), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["skipped"], summary["done"]) == (written, 36 - written)
    for path in sorted(out.glob("scan*.jpg")):
        assert read_image(path).pixels.shape[:2] == read_image(folder / path.name).pixels.shape[:2]


def test_a_backend_that_cannot_load_on_the_workers_is_one_line_and_exit_2(tmp_path):
    from engine.backends import availability

    if availability()["trt"] is None:
        pytest.skip("TensorRT runs here: this test needs a backend that cannot load")
    result = runner.invoke(
        app, ["colorize", "--ray", "--backend", "trt", str(photo_paths()[0]), "-o", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "(raylet)" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "backend 'trt' cannot run here" in lines[0], result.output


def test_a_folder_named_like_an_address_is_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "auto").mkdir()
    assert split_ray_address(["--ray", "auto"]) == ["--ray", "auto"]
    assert split_ray_address(["--ray=auto", "auto"]) == ["--ray", "--ray-address", "auto", "auto"]
