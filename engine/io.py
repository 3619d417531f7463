"""Image files: finding inputs, decoding and encoding them (outputs: :mod:`engine.outputs`)."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.color import convert_depth
from engine.decoders import DecodeError, decode, pillow_size
from engine.metadata import Metadata, embed_metadata, read_metadata
from engine.probe import ImageShape, probe

JPEG2000_EXTENSIONS = frozenset({".jp2", ".jpf", ".jpx", ".j2k", ".j2c", ".jpc"})
PNM_EXTENSIONS = frozenset({".pbm", ".pgm", ".ppm", ".pnm"})
READ_ONLY_EXTENSIONS = frozenset({".gif", ".tga", ".pcx", ".sgi", ".psd", ".avif", ".apng"})
"""Formats read (OpenCV or Pillow) whose outputs are PNG: GIF holds 256 colours, PSD has no
writer, an APNG's first frame is a PNG, and TGA, PCX, SGI and (lossy) AVIF are kept to PNG's one
well-read lossless format."""
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".mpo", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff"}
    | JPEG2000_EXTENSIONS
    | PNM_EXTENSIONS
    | READ_ONLY_EXTENSIONS
)
EIGHT_BIT_ONLY = frozenset({".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".webp", ".jp2", ".j2k"})
ALPHA_FORMATS = frozenset({".png", ".tif", ".tiff", ".webp"})
TEMP_MARKER = ".colorize-tmp-"
LOG_PREFIX = "colorize-log-"
"""A run's log and summary files in the output folder."""
REPORT_ASSETS = "colorize-report-files"
"""The folder of ``engine report``'s full-size previews: never an input."""


class ImageError(ValueError):
    """A file cannot be used; the message is the reason, for one line of output."""


def failure_reason(error: BaseException) -> str:
    """One line for a file's failure: our own errors speak for themselves, others carry their
    type."""
    if isinstance(error, ImageError | FileNotFoundError | PermissionError):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}"
    return f"{type(error).__name__}: {error}".splitlines()[0]


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes, relative to the output folder."""

    source: Path
    relative: Path
    page: int | None = None
    """With ``--all-pages``: which page of a multi-page file (0-based); None: the first."""

    def __str__(self) -> str:
        return str(self.source) if self.page is None else f"{self.source} (page {self.page + 1})"


def resolved(path: Path) -> Path:
    """``path.resolve()``, or the absolute path itself for a symbolic link loop."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path).absolute()


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def is_image_name(path: Path) -> bool:
    return (
        path.suffix.lower() in IMAGE_EXTENSIONS
        and TEMP_MARKER not in path.name
        and REPORT_ASSETS not in path.parts
    )


def is_engine_file(path: Path) -> bool:
    """The engine's own files: temporaries, run logs, the report's previews."""
    return (
        TEMP_MARKER in path.name or path.name.startswith(LOG_PREFIX) or REPORT_ASSETS in path.parts
    )


def discover(
    inputs: Sequence[str | Path],
    exclude: Iterable[Path] = (),
    ignored: list[Path] | None = None,
) -> list[Job]:
    """Files, folders (recursive) and glob patterns → jobs, each input once, in a stable order.

    A file named directly is used whatever its extension (a bad one fails with a reason); files
    found in folders or by patterns are kept when their extension is an image's, and the others
    (not the engine's own files) are appended to ``ignored`` when it is given. ``exclude``
    lists resolved paths to leave out (a previous run's outputs inside an input folder).
    """
    excluded = {Path(p) for p in exclude}
    jobs: list[Job] = []
    seen: set[Path] = set()

    def add(path: Path, base: Path) -> None:
        key = resolved(path)
        if key in seen or key in excluded:
            return
        seen.add(key)
        jobs.append(Job(path, path.relative_to(base) if base != path else Path(path.name)))

    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                # Not only regular files: a folder or a broken link named like an image is
                # reported with its reason instead of vanishing silently.
                if is_image_name(found):
                    add(found, path)
                elif ignored is not None and found.is_file() and not is_engine_file(found):
                    ignored.append(found)
        elif path.exists() or path.is_symlink():
            add(path, path)
        elif glob.has_magic(text):
            base = _glob_base(text)
            for found in sorted(Path(p) for p in glob.glob(text, recursive=True)):
                if is_image_name(found) and found.is_file():
                    add(found, base)
        else:
            raise FileNotFoundError(f"{text}: no such file, folder or matching pattern")
    return jobs


@dataclass
class Decoded:
    """A decoded input: colour/gray pixels, alpha (or None), and the original bit depth."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    metadata: Metadata | None = None
    """ICC/EXIF/XMP/DPI to carry to the output (read when asked for)."""

    @property
    def dtype(self) -> np.dtype:
        return self.pixels.dtype


def _png_has_alpha(head: bytes) -> bool:
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 25 and head[25] in (4, 6)


def _truncation(data: np.ndarray) -> str | None:
    """Why JPEG/PNG bytes look cut short (decoders fill the missing part silently), else None."""
    head, tail = data[:8].tobytes(), data[-1024:].tobytes()
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def read_image(
    path: Path, metadata: bool = False, max_pixels: int | None = None, page: int | None = None
) -> Decoded:
    """Decode an image file (8/16-bit, gray/colour, alpha kept, EXIF orientation applied).

    With ``metadata``, the file's ICC profile, EXIF, XMP and DPI come along
    (:mod:`engine.metadata`). An image of more than ``max_pixels`` pixels is refused, from its
    header where it can be read (before any pixel is allocated). ``page`` picks a page of a
    multi-page TIFF (default: the first).
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                raise ImageError("symbolic link loop") from None
        raise ImageError(f"broken symbolic link (points to {target})")
    if path.is_dir():
        raise ImageError("a folder, not an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageError("empty file")
    truncated = _truncation(data)
    if truncated:
        raise ImageError(truncated)
    shape = probe(data)
    if max_pixels and shape is None:  # JPEG 2000, PNM…: Pillow reads the header
        size = pillow_size(data)
        shape = size and ImageShape(*size)
    if max_pixels and shape and shape.pixels > max_pixels:
        _refuse_size(shape.width, shape.height, max_pixels)
    try:
        image = decode(data, page, with_alpha=_png_has_alpha(data[:32].tobytes()))
    except DecodeError as exc:
        raise ImageError(f"not a decodable image ({exc})") from None
    if max_pixels and image.shape[0] * image.shape[1] > max_pixels:
        _refuse_size(image.shape[1], image.shape[0], max_pixels)
    meta = read_metadata(data, page or 0) if metadata else None
    if image.ndim == 3 and image.shape[2] == 4:
        return Decoded(image[:, :, :3], image[:, :, 3], meta)
    if image.ndim == 3 and image.shape[2] == 2:
        return Decoded(image[:, :, 0], image[:, :, 1], meta)
    return Decoded(image, None, meta)


def _refuse_size(width: int, height: int, limit: int) -> None:
    raise ImageError(
        f"{width}×{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
        f"{limit / 1e6:g} (--max-pixels): a decompression bomb, or raise the limit"
    )


def encode_image(
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    suffix: str,
    quality: int,
    metadata: Metadata | None = None,
) -> bytes | memoryview:
    """Encode BGR pixels (plus alpha where the format holds it) for a file of type ``suffix``,
    with ``metadata`` written in where the format holds it."""
    if suffix in EIGHT_BIT_ONLY and pixels.dtype == np.uint16:
        pixels = convert_depth(pixels, np.uint8)
        alpha = None if alpha is None else convert_depth(alpha, np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and suffix not in ALPHA_FORMATS:
        pixels = pixels[:, :, :3]
    if alpha is not None and suffix in ALPHA_FORMATS:
        pixels = np.dstack([pixels, convert_depth(alpha, pixels.dtype)])
    if suffix in (".jp2", ".j2k"):
        return _jpeg2000(pixels, suffix)
    params: list[int] = []
    if suffix in (".jpg", ".jpeg", ".jpe"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, encoded = cv2.imencode(suffix, pixels, params)
    if not ok:
        raise ImageError(f"could not encode as {suffix}")
    if not metadata:
        return encoded.data  # the encoder's buffer, not a copy
    height, width = pixels.shape[:2]
    has_alpha = pixels.ndim == 3 and pixels.shape[2] == 4
    return embed_metadata(encoded.tobytes(), suffix, metadata, (width, height), has_alpha)


def _jpeg2000(pixels: np.ndarray, suffix: str) -> bytes:
    """Lossless JPEG 2000 (reversible 5/3 wavelet) by Pillow: 8-bit RGB, a JP2 file or, for
    ``.j2k``, a bare codestream (OpenCV's encoder does not take colour here)."""
    from PIL import Image

    rgb = cv2.cvtColor(convert_depth(pixels[:, :, :3], np.uint8), cv2.COLOR_BGR2RGB)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG2000", irreversible=False, no_jp2=suffix == ".j2k")
    return out.getvalue()
