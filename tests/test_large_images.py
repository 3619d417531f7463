"""Very large images: bounded memory, strip-wise pre-processing, the pixel limit, the budget."""

from __future__ import annotations

import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks.large_image import measure
from engine import color, model_io
from engine.cli import app
from engine.color import _row_tiles
from engine.memory import BYTES_PER_PIXEL_IN_FLIGHT, MemoryBudget, image_cost
from engine.pipeline import RunOptions, run
from engine.probe import probe, probe_file
from tests.conftest import photo_paths

runner = CliRunner()


def _gray(width: int, height: int) -> np.ndarray:
    photo = cv2.imread(str(photo_paths()[0]), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)


def test_strip_wise_model_input_matches_the_whole_image_one():
    small = _gray(1000, 700)  # under 4× the input size: exactly the same computation
    expected = model_io.model_input(color.luminance(small), 256)
    assert np.array_equal(model_io.image_model_input(small, 256), expected)
    for width, height in ((3000, 2000), (20000, 900)):  # reduced by whole factors first
        image = _gray(width, height)
        whole = model_io.model_input(color.luminance(image), 256)
        strips = model_io.image_model_input(image, 256)
        assert np.abs(whole - strips).mean() < 2e-3  # of a range of 2
        assert np.abs(whole - strips).max() < 0.06


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_output_from_pixels_equals_output_from_l(dtype):
    image = _gray(640, 430).astype(dtype) * (257 if dtype == np.uint16 else 1)
    ab = np.random.default_rng(0).normal(0, 0.25, (2, 256, 256)).astype(np.float32)
    from_l = model_io.colorize_output(color.luminance(image), ab, boost=(1.4, 1.4), dtype=dtype)
    from_pixels = model_io.colorize_output(image, ab, boost=(1.4, 1.4), dtype=dtype)
    assert np.array_equal(from_l, from_pixels)


def test_tiled_upsampling_is_bilinear_like_opencv(monkeypatch):
    small = np.random.default_rng(1).normal(0, 1, (256, 256, 2)).astype(np.float32)
    for whole_up_to in (model_io._WHOLE_AB_PIXELS, 0):  # one resize; row tiles (large scans)
        monkeypatch.setattr(model_io, "_WHOLE_AB_PIXELS", whole_up_to)
        for height, width in ((108, 192), (2000, 3000), (517, 771)):
            reference = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
            ab_rows = model_io._upsampled_ab(small, height, width)
            ours = np.concatenate([ab_rows(rows) for rows in _row_tiles((height, width))])
            assert np.abs(ours - reference).max() < 1e-4


def test_peak_memory_of_a_large_scan_stays_within_the_bound(tmp_path):
    figures = measure(6000, 4000, tmp_path)  # two real `engine colorize` processes
    assert figures["exit_status"] == [0, 0]
    assert figures["large_image_bytes_per_pixel"] < BYTES_PER_PIXEL_IN_FLIGHT


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width×height`` (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 1000)
    idat_chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat
    idat_chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat_chunk + iend


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    cv2.imwrite(str(tmp_path / "fine.png"), _gray(96, 64))
    result = runner.invoke(app, ["colorize", str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "100000×100000 is 10000 megapixels, over the limit of 600" in result.output
    assert (tmp_path / "out" / "fine.png").is_file()


def test_max_pixels_is_configurable(tmp_path):
    cv2.imwrite(str(tmp_path / "scan.jpg"), _gray(96, 64))
    out = tmp_path / "out"
    refused = runner.invoke(
        app, ["colorize", str(tmp_path), "-o", str(out), "--max-pixels", "0.005"]
    )
    assert refused.exit_code == 1 and "over the limit of 0.005" in refused.output
    accepted = runner.invoke(app, ["colorize", str(tmp_path), "-o", str(out), "--max-pixels", "1"])
    assert accepted.exit_code == 0, accepted.output


@pytest.mark.parametrize(
    ("suffix", "params"),
    [(".jpg", []), (".png", []), (".tif", []), (".bmp", []), (".webp", []),
     (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])],
)  # fmt: skip
def test_header_probe_reads_every_format(tmp_path, suffix, params):
    for image in (_gray(53, 37), cv2.cvtColor(_gray(53, 37), cv2.COLOR_GRAY2BGR)):
        encoded = cv2.imencode(suffix, image, params)[1]
        shape = probe(encoded)
        assert shape is not None and (shape.width, shape.height) == (53, 37), suffix
    wide = cv2.imencode(".png", _gray(53, 37).astype(np.uint16) * 257)[1]
    assert probe(wide).bits == 16
    rgb16 = cv2.imencode(".tif", cv2.cvtColor(_gray(53, 37), cv2.COLOR_GRAY2BGR).astype(np.uint16))
    assert probe(rgb16[1]).bits == 16
    (tmp_path / "x.png").write_bytes(wide.tobytes())
    assert probe_file(tmp_path / "x.png").bits == 16
    assert image_cost(tmp_path / "x.png") == 53 * 37 * BYTES_PER_PIXEL_IN_FLIGHT * 2
    assert probe(b"not an image at all") is None


def test_memory_budget_runs_an_oversized_image_alone():
    budget = MemoryBudget(100)
    assert budget.try_take(60) and not budget.try_take(60)
    done = threading.Event()

    def big() -> None:
        budget.take(1000)  # larger than the budget: waits until nothing else is in flight
        done.set()

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(0.05)
    assert not done.is_set()
    budget.give(60)
    worker.join(timeout=5)
    assert done.is_set() and budget.used == 1000


def test_a_tiny_budget_still_colorizes_everything(tmp_path, colorizer):
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"scan{i}.jpg"), _gray(120 + 8 * i, 90))
    options = RunOptions(tmp_path / "out", batch_size=4, memory_budget=1)  # one image at a time
    summary = run(colorizer, [tmp_path], options)
    assert (summary.done, summary.failed) == (10, 0)
