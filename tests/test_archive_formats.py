"""Every file an archive holds is colorized or named: one generated file per kind that OpenCV
alone refuses (``tests/archive_formats.py``), run through ``engine colorize`` in a subprocess
whose stderr must hold only the engine's own lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from benchmarks.third_party_images import ENGINE_LINE
from engine.color import luminance
from engine.decoders import integer_samples
from engine.io import read_image
from engine.outputs import OUTPUT_SUFFIXES
from tests.archive_formats import archive_files, samples_bomb_tiff
from tests.conftest import photo_paths

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_LINE = re.compile(
    r"libpng|libtiff|TIFF|OpenJPEG|opj_|loadsave|imgcodecs|\[ ?(ERROR|WARN|INFO)|"
    r"[Ww]arning:|Traceback|tempfile\.tif|not configured|More samples"
)


def _gray() -> np.ndarray:
    image = cv2.imread(str(photo_paths()[0]), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(image, (90, 60), interpolation=cv2.INTER_AREA)


def _output_for(out: Path, name: str) -> Path:
    path = out / name
    return path.with_suffix(OUTPUT_SUFFIXES.get(path.suffix, path.suffix))


def test_every_archive_kind_is_colorized_and_the_console_holds_only_engine_lines(tmp_path):
    gray = _gray()
    folder = tmp_path / "archive"
    files = archive_files(gray)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    jp2 = files["jpeg2000/plain.jp2"]
    (folder / "broken/cut short.jp2").parent.mkdir()
    (folder / "broken/cut short.jp2").write_bytes(jp2[: len(jp2) // 3])
    (folder / "broken/samples bomb.tif").write_bytes(samples_bomb_tiff(gray))
    (folder / "notes.txt").write_text("box 12: 1950s harbour")
    (folder / "broken/catalogue.xml").write_text("<record/>")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}  # rich wraps no line
    done = subprocess.run(
        [sys.executable, "-m", "engine", "colorize", str(folder), "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # two broken files
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    assert [line for line in lines if not ENGINE_LINE.fullmatch(line)] == [], done.stderr
    others = [line for line in lines if not line.startswith("failed ")]
    assert not [line for line in others if LIBRARY_LINE.search(line)], done.stderr
    failed = sorted(line for line in lines if line.startswith("failed "))
    assert len(failed) == 2 and "cut short.jp2: not a decodable image" in failed[0]
    # what Pillow logged before refusing the file is its reason, not a line of its own
    assert "samples bomb.tif: not a decodable image" in failed[1]
    assert "Pillow: More samples per pixel than can be decoded: 65535" in failed[1]
    assert any(line.startswith("ignored: 2 files (.txt 1, .xml 1)") for line in lines)
    for name in files:
        produced = read_image(_output_for(out, name))
        source = read_image(folder / name).pixels
        assert produced.pixels.shape[:2] == gray.shape, name
        assert produced.pixels.ndim == 3, name  # colour
        change = np.abs(luminance(produced.pixels) - luminance(source)).mean()
        assert change < 0.6, (name, change)  # the photo's own L is kept
    original = luminance(gray)
    exact = ("jpeg2000/tiled.jp2", "tiff/tiled.tif", "tiff/lzma.tif", "bmp/rle-8.bmp",
             "read-only/animated.gif", "read-only/rle.tga", "read-only/master.psd",
             "read-only/frames.apng")  # fmt: skip
    for name in exact:  # an animated GIF: its first frame
        got = luminance(read_image(folder / name).pixels)
        assert np.abs(got - original).max() < 0.01, name  # decoded exactly, not approximately
    for name in ("mpo/stereo camera.mpo", "read-only/modern.avif"):  # lossy: near, first frame
        got = luminance(read_image(folder / name).pixels)
        assert np.abs(got - original).mean() < 3, name
    summary_file = next(out.glob("colorize-log-*.summary.json"))
    summary = json.loads(summary_file.read_text())
    assert summary["done"] == len(files) and summary["ignored"] == {".txt": 1, ".xml": 1}
    # what libpng said about the PNG's broken chunks is kept, not printed
    assert any("libpng" in line for line in summary["decoder_messages"])
    # the report reads the same images again: its console too holds only its own line
    report = subprocess.run(
        [sys.executable, "-m", "engine", "report", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert [x for x in report.stderr.splitlines() if x.strip()] == [
        f"wrote {out / 'colorize-report.html'}: {len(files)} before/after pairs; "
        f"{len(files)} done, 0 skipped, 2 failed, from 1 run log(s)"
    ]
    log = next(out.glob("colorize-log-*.jsonl")).read_text().splitlines()
    ignored = [json.loads(x)["source"] for x in log if '"ignored"' in x]
    assert sorted(Path(p).name for p in ignored) == ["catalogue.xml", "notes.txt"]


def test_samples_become_the_nearest_8_or_16_bit_integers():
    assert integer_samples(np.array([[0, 300, 65535]], np.int32)).tolist() == [[0, 300, 65535]]
    stretched = integer_samples(np.array([[-1000, 0, 1000]], np.int32))
    assert stretched.dtype == np.uint16 and stretched.tolist() == [[0, 32768, 65535]]
    unit = integer_samples(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert unit.tolist() == [[0, 32768, 65535]]
    wide = integer_samples(np.array([[2.0, 4.0, np.nan]], np.float64))
    assert wide.tolist() == [[32768, 65535, 0]]  # not finite → 0, then the image's own range
    assert integer_samples(np.full((2, 2), 7.0, np.float32)).tolist() == [[32768] * 2] * 2
    assert integer_samples(np.array([[True, False]])).tolist() == [[255, 0]]
