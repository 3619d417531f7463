"""ICC profiles, EXIF, XMP and DPI travel from each input to its output (or are stripped)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from engine.cli import app
from engine.metadata import Metadata, embed_metadata, read_metadata
from tests.conftest import photo_paths

runner = CliRunner()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>Harbour, 1931</dc:title></x:xmpmeta>'
COPYRIGHT = "(c) City Archive"
FORMATS = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".webp": "WEBP"}
HOLDS_EXIF = {".jpg", ".png", ".webp"}
HOLDS_DPI = {".jpg", ".png", ".tif"}


def _gray(width: int = 80) -> np.ndarray:
    image = cv2.imread(str(photo_paths()[5]), cv2.IMREAD_GRAYSCALE)
    h, w = image.shape
    return cv2.resize(image, (width, round(width * h / w)), interpolation=cv2.INTER_AREA)


def _exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8298] = COPYRIGHT
    return exif.tobytes()


def _tagged_file(path: Path, icc: bytes = SRGB) -> None:
    """A gray scan saved by Pillow with an ICC profile, EXIF (rotate 90°), XMP and 600×300 DPI."""
    options = {"icc_profile": icc, "exif": _exif(), "dpi": (600, 300), "xmp": XMP}
    if path.suffix == ".tif":
        options["tiffinfo"] = {33432: COPYRIGHT, 700: XMP, 0x0112: 6}  # TIFF's own orientation
    Image.fromarray(_gray()).convert("RGB").save(path, FORMATS[path.suffix], **options)


@pytest.mark.parametrize("suffix", list(FORMATS))
def test_metadata_is_copied_to_an_output_of_the_same_format(tmp_path, suffix):
    source = tmp_path / "in" / f"scan{suffix}"
    source.parent.mkdir()
    _tagged_file(source)
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(source.parent), "-o", str(out)])
    assert result.exit_code == 0, result.output
    produced = Image.open(out / source.name)
    assert produced.info.get("icc_profile") == SRGB
    exif = produced.getexif()
    if suffix in HOLDS_EXIF:
        assert exif[0x0112] == 1  # the rotation was applied to the pixels
        assert exif[0x8298] == COPYRIGHT
    if suffix == ".tif":
        assert exif[33432] == COPYRIGHT
    if suffix in HOLDS_DPI:
        assert produced.info["dpi"] == pytest.approx((600, 300), abs=0.01)
    meta = read_metadata((out / source.name).read_bytes())
    if suffix != ".png":  # Pillow writes no XMP into PNG inputs
        assert meta.xmp == XMP
    assert produced.size[0] < produced.size[1]  # 80 wide, turned by its orientation tag


def test_metadata_follows_a_change_of_format(tmp_path):
    source = tmp_path / "in" / "scan.jpg"
    source.parent.mkdir()
    _tagged_file(source)
    result = runner.invoke(app, ["colorize", str(source), "-o", str(tmp_path / "out"), "-f", "png"])
    assert result.exit_code == 0, result.output
    produced = Image.open(tmp_path / "out" / "scan.png")
    assert produced.info.get("icc_profile") == SRGB
    assert produced.info["dpi"] == pytest.approx((600, 300), abs=0.01)
    assert produced.getexif()[0x8298] == COPYRIGHT


def test_strip_metadata_leaves_it_out(tmp_path):
    source = tmp_path / "in" / "scan.jpg"
    source.parent.mkdir()
    _tagged_file(source)
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(source), "-o", str(out), "--strip-metadata"])
    assert result.exit_code == 0, result.output
    assert not read_metadata((out / "scan.jpg").read_bytes())
    assert "icc_profile" not in Image.open(out / "scan.jpg").info


def test_a_gray_profile_is_not_put_on_a_colour_output(tmp_path):
    gray_profile = bytearray(SRGB)
    gray_profile[16:20] = b"GRAY"
    source = tmp_path / "scan.jpg"
    _tagged_file(source, icc=bytes(gray_profile))
    assert read_metadata(source.read_bytes()).icc is None
    result = runner.invoke(app, ["colorize", str(source), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "icc_profile" not in Image.open(tmp_path / "out" / "scan.jpg").info


def test_broken_metadata_never_fails_an_image(tmp_path):
    jpeg = cv2.imencode(".jpg", _gray())[1].tobytes()
    broken_exif = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"  # first IFD points past the end
    app1 = b"\xff\xe1" + (len(broken_exif) + 2).to_bytes(2, "big") + broken_exif
    (tmp_path / "scan.jpg").write_bytes(jpeg[:2] + app1 + jpeg[2:])
    assert read_metadata((tmp_path / "scan.jpg").read_bytes()).exif is None
    result = runner.invoke(
        app, ["colorize", str(tmp_path / "scan.jpg"), "-o", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("{") :])["done"] == 1


def test_large_icc_profiles_span_several_jpeg_segments():
    profile = SRGB + bytes(150_000)  # padded: three APP2 segments
    meta = Metadata(icc=profile)
    jpeg = embed_metadata(cv2.imencode(".jpg", _gray())[1].tobytes(), ".jpg", meta, (80, 60))
    assert jpeg.count(b"ICC_PROFILE\x00") == 3
    assert read_metadata(jpeg).icc == profile
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    assert Image.open(io.BytesIO(jpeg)).info["icc_profile"] == profile
