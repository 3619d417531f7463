"""``engine report``: the page of a run, checked as HTML and rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.browser import missing_browser, open_page
from engine.cli import app
from engine.io import REPORT_ASSETS, discover
from engine.report import REPORT_NAME, build_report, read_runs
from tests.conftest import photo_paths, scan_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> tuple[Path, Path]:
    """A run over 6 JPEGs, a 16-bit TIFF, a PNG and one broken file: (inputs, outputs)."""
    root = tmp_path_factory.mktemp("report")
    inputs = root / "scans"
    inputs.mkdir()
    for i in range(6):
        shutil.copyfile(photo_paths()[i], inputs / f"photo {i}.jpg")  # a space in the name
    gray = cv2.imread(str(photo_paths()[6]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(inputs / "scan16.tif"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(inputs / "print.png"), gray)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = root / "out"
    result = runner.invoke(app, ["colorize", str(inputs), "-o", str(out)])
    assert result.exit_code == 1, result.output  # the broken file
    return inputs, out


def test_report_lists_every_file_and_is_self_contained(run_folder):
    _, out = run_folder
    result = runner.invoke(app, ["report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert (facts["pairs"], facts["done"], facts["failed"]) == (8, 8, 1)
    page = (out / REPORT_NAME).read_text()
    assert page.count('class="pair"') == 8
    assert "broken.jpg" in page and "failed" in page
    # Nothing is fetched from elsewhere: no remote URL in any src/href, no external script/style.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script src" not in page
    # The TIFF (which browsers do not show) gets full-size JPEG previews beside the page; the
    # JPEG and PNG inputs and outputs are linked as they are.
    previews = sorted(p.name for p in (out / REPORT_ASSETS).iterdir())
    assert previews == ["000007-after.jpg", "000007-before.jpg"]  # scan16.tif, the 8th pair
    assert "photo%200.jpg" in page
    # A later run from the same output folder never takes the previews as inputs.
    assert not [j for j in discover([out]) if REPORT_ASSETS in j.source.parts]


def test_report_of_a_run_in_progress(tmp_path):
    """A log without its summary file (a run going on, or killed) still makes a page."""
    out = tmp_path / "out"
    out.mkdir()
    source = photo_paths()[0]
    shutil.copyfile(source, out / "done.jpg")
    record = {"source": str(source), "output": str(out / "done.jpg"), "status": "done",
              "reason": None, "seconds": 0.5, "page": None, "model": "vivid-general"}  # fmt: skip
    log = out / "colorize-log-20260101T000000000000Z-1.jsonl"
    log.write_text(json.dumps(record) + "\n" + '{"source": "cut sh')  # a line cut short
    runs, entries = read_runs(out)
    assert runs[0].summary is None and runs[0].state == "running or killed"
    assert [e.status for e in entries] == ["done"]
    report = build_report(out)
    assert report.pairs == 1 and "running or killed" in report.path.read_text()


def test_report_of_a_folder_without_runs_is_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no run logs" in result.output
    assert "Traceback" not in result.output


def _full_size_images_load(page, pairs: int) -> None:
    """Open the compare view of every pair: both full-size images load, Esc closes it."""
    for i in range(pairs):
        page.locator(".pair").nth(i).click()
        assert page.locator("#viewer").is_visible()
        page.wait_for_function(
            "['before','after'].every(id => document.getElementById(id).complete)"
        )
        sizes = page.evaluate(
            "['before','after'].map(id => document.getElementById(id).naturalWidth)"
        )
        assert min(sizes) > 0, (i, sizes)
        page.keyboard.press("Escape")
        assert not page.locator("#viewer").is_visible()


BROWSER = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))


@BROWSER
def test_an_embedded_report_is_one_file_that_works_anywhere(run_folder, tmp_path):
    _, out = run_folder
    report = build_report(out, tmp_path / "page.html", embed=True)
    alone = tmp_path / "elsewhere" / "sent.html"
    alone.parent.mkdir()
    report.path.rename(alone)  # no files beside it
    assert not (tmp_path / REPORT_ASSETS).exists()
    with open_page(alone) as (page, problems):
        assert page.locator(".pair").count() == 8
        _full_size_images_load(page, 8)
    assert not problems, problems


@BROWSER
def test_report_in_headless_chromium(run_folder, tmp_path):
    _, out = run_folder
    report = build_report(out)
    with open_page(report.path) as (page, problems):
        assert page.locator(".pair").count() == 8
        assert page.locator("#files tbody tr").count() == 9
        # Every thumbnail decoded.
        widths = page.eval_on_selector_all(".pair img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == 16 and min(widths) > 0
        _full_size_images_load(page, 8)
        # The slider moves the split.
        page.locator(".pair").first.click()
        page.locator("#slider").fill("20")
        clip = page.evaluate("getComputedStyle(document.getElementById('after')).clipPath")
        assert "80%" in clip, clip
        page.screenshot(path=str(tmp_path / "report.png"))
    assert not problems, problems
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_report_while_a_run_is_going_on(tmp_path):
    import subprocess
    import sys
    import time

    folder = tmp_path / "scans"
    scan_folder(folder, 40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine", "colorize", str(folder), "-o", str(out),
               "--batch-size", "2", "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob("scan*.jpg"))) < 4:
            time.sleep(0.05)
        report = build_report(out)
        assert process.poll() is None, "the run ended before the report was made"
    finally:
        process.wait(timeout=300)
    assert 4 <= report.pairs < 40
    assert report.runs[0].state == "running or killed"
    assert build_report(out).pairs == 40  # after the run: every pair, and the run has ended
    assert read_runs(out)[0][0].state == "ended"
