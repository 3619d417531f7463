"""Archive inputs: every good kind of file is colorized, every bad one is named with its reason."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from engine.cli import app
from engine.color import luminance
from engine.io import read_image
from engine.probe import tiff_ifd_offsets
from tests.corpus import make_corpus

runner = CliRunner()


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_a_folder_of_good_and_bad_inputs(tmp_path):
    corpus = tmp_path / "archive"
    good, bad = make_corpus(corpus)
    before = _hashes(corpus)
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(corpus), "-o", str(out), "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["done"], summary["failed"]) == (len(good), len(bad))
    for name, shape in good.items():
        produced = read_image(out / Path(name).with_suffix(Path(name).suffix.lower()))
        assert produced.pixels.shape[:2] == shape, name
        source = read_image(corpus / name).pixels  # EXIF orientation applied, like the engine
        change = np.abs(luminance(produced.pixels) - luminance(source)).mean()
        lossy = Path(name).suffix.lower() in (".jpg", ".webp")
        assert change < (0.6 if lossy else 0.2), (name, change)  # L kept (8-bit level: 0.39)
        assert produced.dtype == source.dtype, name  # 16-bit inputs give 16-bit outputs
    cmyk, ycck = (read_image(corpus / f"jpeg/{n}.jpg").pixels for n in ("cmyk", "ycck"))
    assert np.abs(cmyk.astype(int) - ycck).mean() < 4  # both decode to the same photo
    rgba_in = cv2.imread(str(corpus / "png/rgba.png"), cv2.IMREAD_UNCHANGED)
    rgba_out = cv2.imread(str(out / "png/rgba.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(rgba_out[:, :, 3], rgba_in[:, :, 3])  # alpha carried unchanged
    gray_alpha = read_image(out / "png/gray+alpha.png")
    assert gray_alpha.alpha is not None
    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    reasons = {
        str(Path(r["source"]).relative_to(corpus)): r["reason"]
        for r in records if r["status"] == "failed"
    }  # fmt: skip
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
        assert f"failed {corpus / name}: " in result.output  # one line, naming the file
    assert "Traceback" not in result.output
    assert _hashes(corpus) == before
    assert not [p for p in out.rglob("*") if ".colorize-tmp-" in p.name]


def test_skip_color_leaves_colour_photos_alone(tmp_path):
    corpus = tmp_path / "mixed"
    corpus.mkdir()
    colour = cv2.imread(str(Path(__file__).parent / "data/photos/people/npm-themekit__2.jpg"))
    cv2.imwrite(str(corpus / "colour.jpg"), colour)
    cv2.imwrite(str(corpus / "gray.jpg"), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(corpus), "-o", str(out), "--skip-color", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["done"], summary["skipped"]) == (1, 1)
    assert (out / "gray.jpg").is_file() and not (out / "colour.jpg").exists()
    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    assert {r["reason"] for r in records if r["status"] == "skipped"} == {"already in colour"}


def test_outputs_never_escape_the_output_folder(tmp_path):
    corpus = tmp_path / "in"
    (corpus / "box").mkdir(parents=True)
    gray = np.full((8, 8), 100, np.uint8)
    cv2.imwrite(str(corpus / "box" / "a.png"), gray)
    (corpus / "box" / "sub" / "deeper").mkdir(parents=True)  # two folder levels below the link
    cv2.imwrite(str(corpus / "box" / "sub" / "deeper" / "c.png"), gray)
    cv2.imwrite(str(corpus / "b.png"), gray)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "box").symlink_to(elsewhere, target_is_directory=True)  # a planted link
    result = runner.invoke(app, ["colorize", str(corpus), "-o", str(out)])
    assert result.exit_code == 1
    assert "would be written outside the output folder" in result.output
    assert result.output.count("would be written outside the output folder") == 2
    assert not list(elsewhere.iterdir())  # not even an empty folder was made there
    assert (out / "b.png").is_file()


def test_all_pages_of_a_multi_page_tiff(tmp_path):
    pages = [np.full((40, 60), v, np.uint8) for v in (40, 120)] + [np.full((30, 20), 200, np.uint8)]
    ok, data = cv2.imencodemulti(".tif", pages)
    assert ok
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "album.tif").write_bytes(data.tobytes())
    cv2.imwrite(str(tmp_path / "in" / "single.tif"), pages[0])
    out = tmp_path / "out"
    first = runner.invoke(app, ["colorize", str(tmp_path / "in"), "-o", str(out / "first")])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (out / "first").glob("*.tif")) == ["album.tif", "single.tif"]
    result = runner.invoke(
        app, ["colorize", str(tmp_path / "in"), "-o", str(out / "all"), "--all-pages", "--json"]
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (out / "all").glob("*.tif"))
    assert names == ["album_page001.tif", "album_page002.tif", "album_page003.tif", "single.tif"]
    for name, page in zip(names[:3], pages, strict=True):
        produced = cv2.imread(str(out / "all" / name), cv2.IMREAD_UNCHANGED)
        assert produced.shape[:2] == page.shape
        kept = luminance(produced).mean() - luminance(page).mean()
        assert abs(kept) < 0.5  # each page's own L, kept
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    assert sorted(r["page"] for r in records if r["page"]) == [1, 2, 3]


def test_a_tiff_whose_page_chain_breaks_off_gives_its_whole_pages(tmp_path):
    """The last IFD's next-page offset points past the end (a cut or fuzzed file): --all-pages
    colorizes the whole pages, with no traceback (the memory map closed cleanly)."""
    pages = [np.full((40, 60), v, np.uint8) for v in (40, 120)]
    ok, encoded = cv2.imencodemulti(".tif", pages)
    assert ok
    data = bytearray(encoded.tobytes())
    last = tiff_ifd_offsets(bytes(data))[-1]
    (count,) = struct.unpack("<H", data[last : last + 2])
    data[last + 2 + 12 * count : last + 6 + 12 * count] = struct.pack("<I", len(data) + 1000)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.tif").write_bytes(bytes(data))
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(tmp_path / "in"), "-o", str(out), "--all-pages"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.tif")) == ["cut_page001.tif", "cut_page002.tif"]
