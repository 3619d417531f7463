"""The decoder chain: an image file's bytes → 8/16-bit gray or BGR(A) pixels, or one reason.

1. **OpenCV** first (fast; applies EXIF orientation), except for animated PNGs: OpenCV 5's
   APNG reader crashes the process on some damaged ones, Pillow's does not.
2. **Pillow** for animated PNGs and what OpenCV refuses: tiled and 2/4-bit TIFF, TIFF
   compressions OpenCV's libtiff lacks, JPEG 2000 with tiles, PNGs with broken ancillary
   chunks, BMP variants…
3. **TIFF strips that are whole images** for what both refuse: old-style JPEG (compression 6,
   its JFIF stream named by ``JPEGInterchangeFormat``) and WebP strips (compression 50001),
   each strip decoded by OpenCV and stacked.

Samples become the nearest 8/16-bit integers (:func:`integer_samples`): 1, 2 and 4-bit samples
are scaled to 0..255; palettes are expanded (RGB, or RGBA when the palette has transparency);
16-bit stays 16-bit; 32-bit integers are kept when they fit 0..65535, else mapped linearly from
the image's own minimum..maximum onto 0..65535; floating-point samples in 0..1 are scaled onto
0..65535, other ranges are mapped from their minimum..maximum (a constant image becomes mid-gray).
No decoder writes to the console: OpenCV's log is silenced here, Pillow's warnings are ignored
(the engine checks the pixel limit itself), what Pillow logs before it raises (``logging``,
e.g. "More samples per pixel than can be decoded") becomes the file's reason instead of a line
on stderr, and what libtiff, libpng and OpenJPEG print natively is kept by
:mod:`engine.console` for the run's summary file.

Each native step announces itself to a listener (:func:`set_stage_listener`, e.g. "OpenCV's PNG
reader"), so that a process that dies in one can be said to have died there
(:mod:`engine.decode_workers`).
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import warnings
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps

from engine.probe import format_name, tiff_byte_order, tiff_tags

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
Image.MAX_IMAGE_PIXELS = None  # the engine's own --max-pixels applies, before decoding
warnings.filterwarnings("ignore", module=r"PIL\.")

_SIXTEEN_BIT_PEAK = 65535


class _PillowLog(logging.Handler):
    """Pillow's own log records (some errors are logged before the exception), kept per
    thread for the file being decoded there; never printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages().append(record.getMessage())

    def messages(self) -> list[str]:
        """This thread's records since its last decode began."""
        if not hasattr(self._local, "messages"):
            self._local.messages = []
        return self._local.messages


_PILLOW_LOG = _PillowLog()
logging.getLogger("PIL").addHandler(_PILLOW_LOG)
logging.getLogger("PIL").propagate = False


_stage_listener: Callable[[str], None] | None = None


def set_stage_listener(listener: Callable[[str], None] | None) -> None:
    """Have ``listener`` told which native decoder is about to run ("Pillow's TIFF reader")."""
    global _stage_listener
    _stage_listener = listener


def entering(decoder: str, data: np.ndarray, what: str = "reader") -> None:
    """Tell the stage listener, if any, that ``decoder``'s ``what`` is about to read ``data``."""
    if _stage_listener is not None:
        kind = format_name(bytes(data[:16])) or "image"
        _stage_listener(f"{decoder}'s {kind} {what}")


def is_animated_png(data: np.ndarray, max_chunks: int = 64) -> bool:
    """Whether a PNG announces animation (an ``acTL`` chunk before its first ``IDAT``)."""
    view = memoryview(data).cast("B")
    if format_name(bytes(view[:16])) != "PNG":
        return False
    offset = 8
    for _ in range(max_chunks):
        if offset + 8 > len(view):
            return False
        length, kind = struct.unpack(">I4s", view[offset : offset + 8])
        if kind == b"acTL":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        offset += 12 + length
    return False


class DecodeError(ValueError):
    """No decoder could read the file; the message says what each one said."""


def integer_samples(image: np.ndarray) -> np.ndarray:
    """Samples of any type → uint8 or uint16 by the rule in the module docstring."""
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    values = image.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, 0.0)
    low, high = float(values.min()), float(values.max())
    if image.dtype.kind in "ui" and low >= 0 and high <= _SIXTEEN_BIT_PEAK:
        return values.astype(np.uint16)
    if image.dtype.kind == "f" and low >= 0 and high <= 1:
        return np.round(values * _SIXTEEN_BIT_PEAK).astype(np.uint16)
    if high == low:
        return np.full(image.shape, 32768, np.uint16)
    return np.round((values - low) * (_SIXTEEN_BIT_PEAK / (high - low))).astype(np.uint16)


def _opencv(data: np.ndarray, page: int | None, with_alpha: bool) -> np.ndarray | None:
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    try:
        if page:
            ok, pages = cv2.imdecodemulti(data, flags, None, (page, page + 1))
            return pages[0] if ok and pages else None
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED if with_alpha else flags)
    except cv2.error:
        return None


def pillow_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from Pillow's reading of the header only, or None."""
    entering("Pillow", data, "header reader")
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            return image.size
    except Exception:
        return None


def _from_pillow(image: Image.Image) -> np.ndarray:
    """A loaded Pillow image → gray, BGR or BGRA array (integer samples by the rule)."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, np.uint8) * 255
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image, mode = image.convert("RGBA" if has_alpha else "RGB"), "RGBA" if has_alpha else "RGB"
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image, mode = image.convert("RGB"), "RGB"
    if mode == "LA":
        pixels = np.asarray(image.convert("LA"))
        return pixels  # gray + alpha: two channels, split by the caller
    if mode in ("RGB", "RGBA"):
        pixels = np.asarray(image)
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if mode == "RGB" else cv2.COLOR_RGBA2BGRA)
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    return integer_samples(np.asarray(image))  # L, I (int32), F (float32)


def _pillow(data: np.ndarray, page: int | None) -> np.ndarray:
    with Image.open(io.BytesIO(data.tobytes())) as image:
        if page:
            image.seek(page)
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return _from_pillow(image)


def _tiff_strip_images(data: np.ndarray, page: int | None) -> np.ndarray:
    """A TIFF whose strips (or whole JFIF stream) are self-contained images OpenCV decodes."""
    view = memoryview(data)
    if bytes(view[:4]) not in (b"II*\x00", b"MM\x00*"):
        raise DecodeError("not a TIFF")
    tags = tiff_tags(view, page or 0)
    order = tiff_byte_order(view)

    def values(tag: int) -> list[int]:
        kind, count, raw = tags[tag]
        code = {3: "H", 4: "I"}.get(kind)
        if code is None:
            raise DecodeError(f"tag {tag} of type {kind}")
        return list(struct.unpack(f"{order}{count}{code}", raw))

    compression = values(259)[0] if 259 in tags else 1
    if compression == 6 and 513 in tags and 514 in tags:  # old-style JPEG: one JFIF stream
        start, length = values(513)[0], values(514)[0]
        streams = [data[start : start + length]]
    elif compression in (6, 50001) and 273 in tags and 279 in tags:
        streams = [data[o : o + n] for o, n in zip(values(273), values(279), strict=False)]
    else:
        raise DecodeError(f"TIFF compression {compression}")
    parts = [cv2.imdecode(s, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH) for s in streams]
    if not parts or any(p is None for p in parts):
        raise DecodeError("a strip did not decode")
    try:
        return np.concatenate(parts, axis=0)
    except ValueError:
        raise DecodeError("strips of different widths") from None


def decode(data: np.ndarray, page: int | None = None, with_alpha: bool = False) -> np.ndarray:
    """File bytes (uint8 array) → pixels (gray ``H×W``, gray+alpha ``H×W×2``, BGR or BGRA),
    uint8 or uint16; raises :class:`DecodeError` with every decoder's reason."""
    if is_animated_png(data):
        reasons = ["OpenCV: not given animated PNGs"]
    else:
        entering("OpenCV", data)
        image = _opencv(data, page, with_alpha)
        if image is not None:
            return integer_samples(image)
        reasons = ["OpenCV: no decoder took it"]
    logged = _PILLOW_LOG.messages()
    logged.clear()
    entering("Pillow", data)
    try:
        return _pillow(data, page)
    except Image.UnidentifiedImageError:
        said = _one_line(logged[-1]) if logged else "not a format it reads"
        reasons.append(f"Pillow: {said}")
    except Exception as exc:
        reasons.append(f"Pillow: {_one_line(exc)}")
    entering("OpenCV", data, "strip reader")
    try:
        return integer_samples(_tiff_strip_images(data, page))
    except (DecodeError, struct.error, IndexError) as exc:
        if bytes(data[:4]) in (b"II*\x00", b"MM\x00*"):
            reasons.append(f"TIFF strips: {_one_line(exc)}")
    raise DecodeError("; ".join(reasons))


def _one_line(error: BaseException | str) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
