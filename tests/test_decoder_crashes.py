"""A decoder that crashes or hangs never ends a run: decoding in worker processes, the crash
journal, and ``engine colorize`` over a folder of damaged files (:mod:`tests.fuzzed`).

The crashes are real: :mod:`tests.crash_hook` (on ``PYTHONPATH``) makes OpenCV's reader read
address 0 (SIGSEGV) or sleep on files holding a marker, in the engine's decode workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.third_party_images import ENGINE_LINE
from engine.crash_journal import JOURNAL_PREFIX, STOPPED_REASON, CrashJournal
from engine.decode_workers import DecodeWorkers
from engine.decoders import is_animated_png
from engine.io import Job, read_image
from engine.outputs import earlier_records, writer_tag
from tests.archive_formats import archive_files
from tests.conftest import photo_paths
from tests.fuzzed import DAMAGE, damaged_files, well_formed_files

HOOK = Path(__file__).parent / "crash_hook"
CRASH_ON, HANG_ON = "ENGINE-TEST-CRASH", "ENGINE-TEST-HANG"


def _gray(size: int = 64) -> np.ndarray:
    image = cv2.imread(str(photo_paths()[0]), cv2.IMREAD_GRAYSCALE)
    h, w = image.shape
    return cv2.resize(image, (size, round(size * h / w)), interpolation=cv2.INTER_AREA)


def _marked_jpeg(marker: str) -> bytes:
    """A good gray JPEG carrying ``marker`` in a comment segment."""
    jpeg = cv2.imencode(".jpg", _gray())[1].tobytes()
    comment = marker.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def _good_folder(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(root / f"good {i}.jpg"), _gray(48 + 16 * i))
    return root


def _engine(*args: str, faults: bool = True, hang: bool = False) -> subprocess.Popen:
    env = {
        **os.environ,
        "COLUMNS": "1000",
        "PYTHONPATH": os.pathsep.join(
            [str(HOOK), str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    if faults:
        env["ENGINE_TEST_CRASH_ON"] = CRASH_ON
    if hang:
        env["ENGINE_TEST_HANG_ON"] = HANG_ON
    command = [sys.executable, "-m", "engine", "colorize", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=600)
    return process.returncode, stderr


def _last_run(out: Path) -> dict[str, dict]:
    """source → record, of the newest run log in ``out``."""
    newest = max(out.glob("colorize-log-*.jsonl"))
    return {r["source"]: r for log, r in earlier_records(out) if log == newest}


def _assert_clean_console(stderr: str) -> None:
    assert "Traceback" not in stderr
    for line in filter(None, (x.strip() for x in stderr.splitlines())):
        assert ENGINE_LINE.fullmatch(line), f"not the engine's own line: {line!r}"


def test_a_damaged_folder_with_a_crashing_file_finishes_and_names_it(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    files = damaged_files(well_formed_files(_gray()), count=280, seed=23)
    files["crashes opencv.jpg"] = _marked_jpeg(CRASH_ON)
    for name, data in files.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(data)
    code, stderr = _finish(_engine(str(inputs), "-o", str(out), "--json"))
    records = _last_run(out)
    assert code == 1, stderr[-2000:]
    _assert_clean_console(stderr)
    assert sorted(records) == sorted(str(inputs / n) for n in files)  # one record per file
    crashed = records[str(inputs / "crashes opencv.jpg")]
    assert crashed["reason"] == "decoder crashed (SIGSEGV in OpenCV's JPEG reader)"
    statuses = {r["status"] for r in records.values()}
    assert statuses <= {"done", "failed"} and "done" in statuses
    for record in records.values():
        assert record["status"] == "done" or "\n" not in record["reason"]
    code, stderr = _finish(_engine(str(inputs), "-o", str(out)))  # the rerun
    assert code == 1
    again = _last_run(out)[str(inputs / "crashes opencv.jpg")]
    assert again["reason"] == (
        "decoder crashed (SIGSEGV in OpenCV's JPEG reader) in an earlier run; "
        "--retry-crashed tries it again"
    )


def test_kill_9_while_decoding_then_the_rerun_names_the_file(tmp_path):
    inputs, out = _good_folder(tmp_path / "in"), tmp_path / "out"
    hanging = inputs / "hangs.jpg"
    hanging.write_bytes(_marked_jpeg(HANG_ON))
    run = _engine(str(inputs), "-o", str(out), hang=True)
    deadline = time.monotonic() + 120
    while not any(str(hanging) in j.read_text() for j in out.glob(f"{JOURNAL_PREFIX}*")):
        assert time.monotonic() < deadline and run.poll() is None, "the file never started"
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    code, stderr = _finish(_engine(str(inputs), "-o", str(out)))
    assert code == 1
    _assert_clean_console(stderr)
    record = _last_run(out)[str(hanging)]
    assert record["reason"] == f"{STOPPED_REASON}; --retry-crashed tries it again"
    code, _ = _finish(_engine(str(inputs), "-o", str(out), "--retry-crashed", faults=False))
    assert code == 0 and _last_run(out)[str(hanging)]["status"] == "done"
    assert not list(out.glob(f"{JOURNAL_PREFIX}*"))  # nothing left in doubt: no journal


def test_a_hanging_decoder_is_stopped_at_the_timeout(tmp_path):
    inputs, out = _good_folder(tmp_path / "in", 1), tmp_path / "out"
    (inputs / "hangs.jpg").write_bytes(_marked_jpeg(HANG_ON))
    code, stderr = _finish(_engine(str(inputs), "-o", str(out), "--decode-timeout", "2",
                                   hang=True))  # fmt: skip
    assert code == 1
    _assert_clean_console(stderr)
    records = _last_run(out)
    assert records[str(inputs / "hangs.jpg")]["reason"] == (
        "decoder did not finish within 2 s (OpenCV's JPEG reader)"
    )
    assert records[str(inputs / "good 0.jpg")]["status"] == "done"


@pytest.mark.slow
def test_thousands_of_damaged_files(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    files = damaged_files(well_formed_files(_gray()), count=3000, seed=2026)
    for name, data in files.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(data)
    code, stderr = _finish(_engine(str(inputs), "-o", str(out)))
    assert code == 1
    _assert_clean_console(stderr)
    assert len(_last_run(out)) == len(files)


def test_workers_return_the_pixels_alpha_and_metadata_of_an_in_process_read(tmp_path):
    gray = _gray()
    rgba = np.dstack([cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), gray[::-1]])
    wide = gray.astype(np.uint16) * 257
    for name, image in (("a.jpg", gray), ("b.png", rgba), ("c.tif", wide)):
        cv2.imwrite(str(tmp_path / name), image)
    with DecodeWorkers(2) as workers:
        for name in ("a.jpg", "b.png", "c.tif"):
            path = tmp_path / name
            isolated = workers.read(Job(path, Path(name)), True, None)
            direct = read_image(path, True)
            assert isolated.pixels.dtype == direct.pixels.dtype
            assert np.array_equal(isolated.pixels, direct.pixels)
            assert (isolated.alpha is None) == (direct.alpha is None)
            if direct.alpha is not None:
                assert np.array_equal(isolated.alpha, direct.alpha)
            assert isolated.metadata == direct.metadata


def test_a_refused_file_keeps_its_reason_through_the_worker(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with DecodeWorkers(1) as workers, pytest.raises(ValueError, match=r"^empty file$"):
        workers.read(Job(path, Path(path.name)), False, None)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_journal_names_what_a_dead_run_left_unfinished(tmp_path):
    host = writer_tag().split("-")[0]
    dead = tmp_path / f"{JOURNAL_PREFIX}{host}-{_dead_pid()}.journal"
    a, b, c = (Job(tmp_path / f"{x}.jpg", Path(f"{x}.jpg")) for x in "abc")
    lines = [
        {"event": "start", "source": str(a.source), "page": None},
        {"event": "start", "source": str(b.source), "page": None},
        {"event": "end", "source": str(a.source), "page": None},
        {"event": "start", "source": str(c.source), "page": None},
        {"event": "crashed", "source": str(c.source), "page": None, "reason": "decoder crashed"},
    ]
    dead.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"event": "sta')  # cut
    alive = tmp_path / f"{JOURNAL_PREFIX}{writer_tag()}-other.journal"
    alive.write_text(json.dumps({"event": "start", "source": "/x.jpg", "page": None}) + "\n")
    journal = CrashJournal(tmp_path)
    assert journal.reason(a) is None
    assert journal.reason(b) == f"{STOPPED_REASON}; --retry-crashed tries it again"
    assert journal.reason(c).startswith("decoder crashed in an earlier run;")
    assert not dead.exists() and alive.exists()  # a live run's journal is its own
    journal.started(b)
    journal.ended(b)  # retried, and read
    journal.close()
    kept = [json.loads(x)["source"] for x in journal.path.read_text().splitlines()]
    assert str(c.source) in kept  # still in doubt: kept for the next run


def test_animated_pngs_are_not_given_to_opencv():
    files = archive_files(_gray())
    assert is_animated_png(np.frombuffer(files["read-only/frames.apng"], np.uint8))
    still = cv2.imencode(".png", _gray())[1]
    assert not is_animated_png(still)
    assert not is_animated_png(np.frombuffer(b"\x89PNG\r\n\x1a\n\x00\x00", np.uint8))


def test_every_kind_of_damage_is_made_and_the_corpus_is_reproducible():
    originals = well_formed_files(_gray())
    first = damaged_files(originals, count=len(originals) * len(DAMAGE), seed=5)
    assert first == damaged_files(originals, count=len(originals) * len(DAMAGE), seed=5)
    kinds = {name.rsplit("-", 2)[1] for name in first}
    assert kinds == set(DAMAGE)

    def original(name: str) -> bytes:
        path = Path(name)
        return originals[str(path.with_name(path.stem.rsplit("-", 2)[0] + path.suffix))]

    changed = sum(data != original(name) for name, data in first.items())
    assert changed >= 0.9 * len(first)


def test_a_script_without_a_main_guard_can_colorize_a_folder(tmp_path):
    inputs = _good_folder(tmp_path / "in", 2)
    script = tmp_path / "archive.py"
    script.write_text(
        "from engine import Colorizer\n"
        f"summary = Colorizer().colorize_paths([{str(inputs)!r}], {str(tmp_path / 'out')!r})\n"
        "print('done', summary.done)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["done 2"]  # the script ran once: workers never import it
