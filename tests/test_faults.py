"""Faults: kill -9 and Ctrl-C mid-run, a full or read-only output folder, two runs at once,
unreadable inputs, a backend out of memory. Nothing is ever lost, truncated or left behind."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.crash_journal import STOPPED_REASON
from engine.io import TEMP_MARKER, read_image
from engine.outputs import remove_stale_temps, temp_name
from engine.pipeline import RunOptions, run
from tests.conftest import interruptible, photo_paths
from tests.test_inputs import _hashes

runner = CliRunner()
ENGINE = [sys.executable, "-m", "engine", "colorize"]


def _folder(root: Path, count: int, size: int = 128) -> Path:
    """``count`` small gray JPEGs made from the committed photos."""
    root.mkdir(parents=True, exist_ok=True)
    photos = photo_paths()
    for i in range(count):
        image = cv2.imread(str(photos[i % len(photos)]), cv2.IMREAD_GRAYSCALE)
        h, w = image.shape
        image = cv2.resize(image, (size, round(size * h / w)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / f"scan {i:03d}.jpg"), image)
    return root


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_MARKER in p.name]


def _outputs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.jpg") if TEMP_MARKER not in p.name]


def _assert_complete(out: Path, expected: int | None = None) -> None:
    """Every output decodes completely (no truncation); optionally, how many there are."""
    outputs = _outputs(out)
    for path in outputs:
        decoded = read_image(path)  # raises on a truncated or corrupt file
        assert decoded.pixels.ndim == 3, path
    if expected is not None:
        assert len(outputs) == expected


def _run_engine(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*ENGINE, *args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_a_random_moment_then_rerun(tmp_path, seed):
    rng = random.Random(seed)
    inputs = _folder(tmp_path / "in", 40)
    before = _hashes(inputs)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*ENGINE, str(inputs), "-o", str(out), "--batch-size", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for_records(out, rng.randrange(0, 30))  # 0: before the first file is done
    time.sleep(rng.uniform(0, 0.05))
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    _assert_complete(out)  # whatever is under a final name is whole
    rerun = _run_engine(str(inputs), "-o", str(out), "--json")
    summary = json.loads(rerun.stdout)
    # The files the killed run was decoding are named (the crash journal), not decoded again:
    suspects = [f for f in summary["failures"] if f["reason"].startswith(STOPPED_REASON)]
    assert len(suspects) == len(summary["failures"]) <= 2 * os.cpu_count(), rerun.stderr
    assert rerun.returncode == (1 if suspects else 0)
    assert summary["done"] > 0 or summary["skipped"] > 0
    final = _run_engine(str(inputs), "-o", str(out), "--retry-crashed")
    assert final.returncode == 0, final.stderr
    assert not _temps(out)
    _assert_complete(out, expected=40)
    assert _hashes(inputs) == before


def _wait_for_records(out: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list(out.glob("colorize-log-*.jsonl")) if out.is_dir() else []
        if logs and len(logs[0].read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the run wrote no records")


def test_ctrl_c_finishes_writes_in_flight_and_rerun_resumes(tmp_path):
    inputs = _folder(tmp_path / "in", 80, size=256)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*ENGINE, str(inputs), "-o", str(out), "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible,
    )  # fmt: skip
    _wait_for_records(out, 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped: interrupted" in stderr and "Traceback" not in stderr
    assert not _temps(out)
    _assert_complete(out)
    written = len(_outputs(out))
    assert 0 < written < 80
    rerun = _run_engine(str(inputs), "-o", str(out), "--json")
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["done"], summary["skipped"]) == (80 - written, written)
    _assert_complete(out, expected=80)


def test_two_runs_into_one_output_folder_write_each_output_once(tmp_path):
    inputs = _folder(tmp_path / "in", 24)
    out = tmp_path / "out"
    command = [*ENGINE, str(inputs), "-o", str(out), "--batch-size", "2", "--threads", "1"]
    command.append("--json")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    summaries = []
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    assert sum(s["done"] for s in summaries) == 24  # no output written twice
    assert all(s["done"] + s["skipped"] == 24 for s in summaries)
    assert not _temps(out)
    _assert_complete(out, expected=24)


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.decode()[:80]}")


@pytest.fixture
def small_disk(tmp_path):
    """An output folder on a 160 KiB file system (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=160k")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def _has_ray() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


NO_RAY = pytest.mark.skipif(not _has_ray(), reason="needs the ray extra: pip install -e '.[ray]'")


@pytest.mark.parametrize("mode", [(), pytest.param(("--ray",), marks=NO_RAY, id="ray")])
def test_disk_full_stops_with_one_error_and_a_rerun_completes(tmp_path, small_disk, mode):
    inputs = _folder(tmp_path / "in", 40, size=256)
    before = _hashes(inputs)
    result = _run_engine(*mode, str(inputs), "-o", str(small_disk / "out"))
    assert result.returncode == 3, result.stderr
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert "Rerun the same command to resume" in result.stderr
    out = small_disk / "out"
    assert not _temps(out)
    written = len(_outputs(out))
    assert 0 < written < 40
    _assert_complete(out)
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    rerun = _run_engine(*mode, str(inputs), "-o", str(out))
    assert rerun.returncode == 0, rerun.stderr
    _assert_complete(out, expected=40)
    assert _hashes(inputs) == before


def test_read_only_output_folder_is_one_clear_error(tmp_path):
    inputs = _folder(tmp_path / "in", 3)
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "ro,size=64k")
    try:
        result = _run_engine(str(inputs), "-o", str(disk / "out"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert result.returncode == 2
    assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class _FailingWrites:
    """Make the n-th and later output writes fail with ``code`` (an in-process fault)."""

    def __init__(self, monkeypatch, after: int, code: int) -> None:
        import engine.outputs

        self.calls = 0
        real_open = open

        def fake_open(path, mode="r", *args, **kwargs):
            if "w" in mode and TEMP_MARKER in str(path):
                self.calls += 1
                if self.calls > after:
                    raise OSError(code, os.strerror(code), str(path))
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(engine.outputs, "open", fake_open, raising=False)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_output_folder_failing_mid_run_stops_the_run(tmp_path, monkeypatch, code):
    inputs = _folder(tmp_path / "in", 20)
    out = tmp_path / "out"
    _FailingWrites(monkeypatch, after=6, code=code)
    result = runner.invoke(app, ["colorize", str(inputs), "-o", str(out), "--batch-size", "2"])
    assert result.exit_code == 3, result.output
    assert os.strerror(code) in result.output and "Rerun the same command" in result.output
    assert len(_outputs(out)) == 6
    assert not _temps(out)
    _assert_complete(out)


def test_unreadable_input_is_reported_and_the_run_goes_on(tmp_path):
    inputs = _folder(tmp_path / "in", 3)
    locked = inputs / "scan 001.jpg"
    locked.chmod(0)
    out = tmp_path / "out"
    command = [*ENGINE, str(inputs), "-o", str(out)]
    if os.geteuid() == 0:  # root reads anything: run without the capabilities that allow it
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is missing")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    locked.chmod(0o644)
    assert result.returncode == 1, result.stderr
    assert f"failed {locked}: cannot read: Permission denied" in result.stderr.replace("\n", "")
    assert len(_outputs(out)) == 2


class _OutOfMemoryAbove:
    """A colorizer whose backend runs out of memory for batches larger than ``limit``."""

    def __init__(self, colorizer, limit: int, message: str) -> None:
        self.colorizer, self.limit, self.message = colorizer, limit, message
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self.colorizer, name)

    def infer(self, batch: np.ndarray, route: str | None = None) -> np.ndarray:
        self.batches.append(len(batch))
        if len(batch) > self.limit:
            raise RuntimeError(self.message)
        return self.colorizer.infer(batch, route)


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 2.00 GiB",
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
        "buffer of size 1073741824",
    ],
)
def test_out_of_memory_halves_the_batch_and_retries(tmp_path, colorizer, message):
    inputs = _folder(tmp_path / "in", 12)
    flaky = _OutOfMemoryAbove(colorizer, limit=2, message=message)
    summary = run(flaky, [inputs], RunOptions(tmp_path / "out", batch_size=8))
    assert (summary.done, summary.failed, summary.batch_size) == (12, 0, 2)
    assert flaky.batches[:3] == [8, 4, 2]
    assert max(flaky.batches[3:]) <= 2  # later batches start at the lowered size


def test_out_of_memory_at_batch_one_fails_those_files(tmp_path, colorizer):
    inputs = _folder(tmp_path / "in", 3)
    flaky = _OutOfMemoryAbove(colorizer, limit=0, message="CUDA out of memory")
    summary = run(flaky, [inputs], RunOptions(tmp_path / "out", batch_size=2))
    assert (summary.done, summary.failed) == (0, 3)
    assert "out of memory" in summary.failures[0].reason


def test_temps_of_dead_runs_are_removed_and_live_ones_kept(tmp_path, colorizer):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = out / "sub" / temp_name("a.jpg").replace(f"-{os.getpid()}-", f"-{gone.pid}-")
    live = out / temp_name("b.jpg")  # this process: still running
    foreign = out / f"{TEMP_MARKER}ffffff-1-12345678-c.jpg"  # another host's, a week old
    for path in (dead, live, foreign):
        path.write_bytes(b"partial")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(foreign, (week_ago, week_ago))
    summary = run(colorizer, [_folder(tmp_path / "in", 1)], RunOptions(out))
    assert summary.removed_temps == 2 and summary.done == 1
    assert not dead.exists() and not foreign.exists() and live.exists()
    assert remove_stale_temps(out) == 0


def test_temp_names_fit_the_file_system_limit():
    name = "é" * 120 + ".jpg"  # 244 bytes in UTF-8
    assert len(temp_name(name).encode()) <= 255
    assert temp_name(name).endswith(".jpg")
