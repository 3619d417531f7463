"""A corpus of real archive inputs, good and bad, made at test time from the committed photos.

``make_corpus(root)`` writes the files and returns ``(good, bad)``: ``good`` maps each good file's
relative path to the (height, width) its output must have (EXIF orientation applied); ``bad``
maps each bad file to a fragment of the reason the engine must give.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.conftest import photo_paths


def _photo(i: int, size: int = 96) -> np.ndarray:
    image = cv2.imread(str(photo_paths()[i]))
    h, w = image.shape[:2]
    return cv2.resize(image, (size, round(size * h / w)), interpolation=cv2.INTER_AREA)


def _jpeg_with_orientation(gray: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose EXIF says to rotate it (orientation 6: 90° clockwise)."""
    jpeg = cv2.imencode(".jpg", gray)[1].tobytes()
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _ycck_jpeg(bgr: np.ndarray) -> bytes:
    """An Adobe YCCK JPEG: Pillow writes four channels untransformed, so we store Y, Cb, Cr of
    the inverted CMY with K, and set the Adobe marker's transform byte to 2 (YCCK)."""
    cmyk = np.asarray(Image.fromarray(bgr[:, :, ::-1]).convert("CMYK")).astype(np.float32)
    r, g, b = (255 - cmyk[..., i] for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    planes = np.dstack([y, cb, cr, cmyk[..., 3]])
    encoded = io.BytesIO()
    Image.fromarray(np.clip(planes, 0, 255).round().astype(np.uint8), "CMYK").save(encoded, "JPEG")
    data = bytearray(encoded.getvalue())
    adobe = data.index(b"\xff\xee\x00\x0eAdobe")
    data[adobe + 15] = 2
    return bytes(data)


def make_corpus(root: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    root.mkdir(parents=True, exist_ok=True)
    good: dict[str, tuple[int, int]] = {}
    bad: dict[str, str] = {}

    def put(name: str, data: bytes, shape: tuple[int, int] | None = None) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        if shape is not None:
            good[name] = shape

    gray = cv2.cvtColor(_photo(0), cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    put("jpeg/baseline.jpg", cv2.imencode(".jpg", gray)[1].tobytes(), (h, w))
    progressive = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    put("jpeg/progressive.jpg", progressive, (h, w))
    put("jpeg/exif rotated.jpg", _jpeg_with_orientation(gray, 6), (w, h))
    cmyk = io.BytesIO()
    Image.fromarray(_photo(1)[:, :, ::-1]).convert("CMYK").save(cmyk, "JPEG")
    put("jpeg/cmyk.jpg", cmyk.getvalue(), _photo(1).shape[:2])
    put("jpeg/ycck.jpg", _ycck_jpeg(_photo(1)), _photo(1).shape[:2])
    put("png/gray16.png", cv2.imencode(".png", gray.astype(np.uint16) * 257)[1].tobytes(), (h, w))
    palette = io.BytesIO()
    Image.fromarray(_photo(2)[:, :, ::-1]).convert("P").save(palette, "PNG")
    put("png/palette.png", palette.getvalue(), _photo(2).shape[:2])
    gray_alpha = io.BytesIO()
    Image.fromarray(gray).convert("LA").save(gray_alpha, "PNG")
    put("png/gray+alpha.png", gray_alpha.getvalue(), (h, w))
    bgra = cv2.cvtColor(_photo(3), cv2.COLOR_BGR2BGRA)
    put("png/rgba.png", cv2.imencode(".png", bgra)[1].tobytes(), bgra.shape[:2])
    tiff_path = root / "tiff" / "two pages.tif"
    tiff_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwritemulti(str(tiff_path), [gray, cv2.resize(gray, (20, 10))])
    good["tiff/two pages.tif"] = (h, w)  # first page by default
    put("tiff/rgb16.tif", cv2.imencode(".tif", _photo(4).astype(np.uint16) * 257)[1].tobytes(),
        _photo(4).shape[:2])  # fmt: skip
    put("tiff/gray16.tif", cv2.imencode(".tif", gray.astype(np.uint16) * 257 + 100)[1].tobytes(),
        (h, w))  # fmt: skip
    put("other/scan.bmp", cv2.imencode(".bmp", gray)[1].tobytes(), (h, w))
    put("other/scan.webp", cv2.imencode(".webp", gray)[1].tobytes(), (h, w))
    put(
        "other/tiny 1x1.png",
        cv2.imencode(".png", np.full((1, 1), 90, np.uint8))[1].tobytes(),
        (1, 1),
    )
    put("other/tiny 3x2.png", cv2.imencode(".png", gray[:2, :3].copy())[1].tobytes(), (2, 3))
    put("other/фото ünïcode.jpg", cv2.imencode(".jpg", gray)[1].tobytes(), (h, w))
    put("other/png named.jpg", cv2.imencode(".png", gray)[1].tobytes(), (h, w))

    # two inputs, one output name: the first (in sorted order) gets it, the second is reported
    put("other/dup.PNG", cv2.imencode(".png", gray)[1].tobytes(), (h, w))
    put("other/dup.png", cv2.imencode(".png", gray)[1].tobytes())
    bad["other/dup.png"] = "is also the output of"

    baseline = (root / "jpeg/baseline.jpg").read_bytes()
    put("bad/empty.jpg", b"")
    bad["bad/empty.jpg"] = "empty file"
    put("bad/truncated.jpg", baseline[: len(baseline) // 2])
    bad["bad/truncated.jpg"] = "truncated JPEG"
    png = (root / "png/rgba.png").read_bytes()
    put("bad/truncated.png", png[: len(png) // 2])
    bad["bad/truncated.png"] = "truncated PNG"
    put("bad/corrupt header.png", b"\x89PNX" + os.urandom(200))
    bad["bad/corrupt header.png"] = "not a decodable image"
    put("bad/notes.tif", b"shopping list: film, fixer, stop bath\n")
    bad["bad/notes.tif"] = "not a decodable image"
    (root / "bad" / "folder.jpg").mkdir()
    bad["bad/folder.jpg"] = "a folder, not an image file"
    os.symlink("does-not-exist.jpg", root / "bad" / "broken link.jpg")
    bad["bad/broken link.jpg"] = "broken symbolic link"
    os.symlink("loop-b.jpg", root / "bad" / "loop-a.jpg")
    os.symlink("loop-a.jpg", root / "bad" / "loop-b.jpg")
    bad["bad/loop-a.jpg"] = "symbolic link loop"
    bad["bad/loop-b.jpg"] = "symbolic link loop"
    return good, bad
