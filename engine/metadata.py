"""Image metadata carried from an input file to its output: ICC profile, EXIF, XMP and DPI.

Read from JPEG (APP0/APP1/APP2), PNG (pHYs, iCCP, eXIf, iTXt), TIFF (first page's tags) and WebP
(ICCP/EXIF/XMP chunks); written into JPEG, PNG, TIFF and WebP outputs by inserting the same
structures into the encoder's bytes (no pixel is re-encoded). Rules:

- EXIF orientation is set to 1 (the engine applies the rotation to the pixels).
- An ICC profile is kept only when it describes RGB (a gray or CMYK input's profile does not fit
  the colour output, which is then untagged, i.e. sRGB).
- TIFF outputs take the ICC profile, XMP, resolution and the descriptive text tags (description,
  artist, copyright, date, make, model, software); EXIF is not written into TIFF.
- A malformed block is dropped, never an image: metadata problems do not fail a file.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass, field
from functools import partial

from engine.probe import tiff_byte_order, tiff_tags

_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_PNG_KEY = b"XML:com.adobe.xmp"
_ICC_JPEG = b"ICC_PROFILE\x00"
_ICC_CHUNK = 65519  # the most profile bytes one JPEG APP2 segment holds
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)
"""ImageDescription, Make, Model, Software, DateTime, Artist, Copyright."""
_TAG_XRES, _TAG_YRES, _TAG_RES_UNIT, _TAG_XMP, _TAG_ICC, _TAG_ORIENTATION = (
    282, 283, 296, 700, 34675, 0x0112,
)  # fmt: skip


@dataclass
class Metadata:
    """What an input carries that its output should keep."""

    icc: bytes | None = None
    exif: bytes | None = None
    """TIFF-structured EXIF (starts with ``II*`` or ``MM*``), orientation already reset to 1."""
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    tiff_text: dict[int, bytes] = field(default_factory=dict)
    """Descriptive ASCII tags of a TIFF input (see ``TIFF_TEXT_TAGS``), NUL-terminated."""

    def __bool__(self) -> bool:
        return bool(self.icc or self.exif or self.xmp or self.dpi or self.tiff_text)

    def kinds(self) -> list[str]:
        """Names of what is present, for logs."""
        names = ("icc", "exif", "xmp", "dpi", "tiff_text")
        return [name for name in names if getattr(self, name)]


# ---------------------------------------------------------------------------------- reading


def read_metadata(data, page: int = 0) -> Metadata:
    """The metadata in an encoded image file's bytes (empty when there is none or it is broken).

    ``data``: bytes or any buffer (a numpy uint8 array); it is not copied. ``page``: which page
    of a multi-page TIFF.
    """
    data = memoryview(data).cast("B")
    head = bytes(data[:8])
    readers = (
        (b"\xff\xd8", _read_jpeg),
        (_PNG_SIGNATURE, _read_png),
        (b"II*\x00", partial(_read_tiff, page=page)),
        (b"MM\x00*", partial(_read_tiff, page=page)),
        (b"RIFF", _read_webp),
    )
    for magic, reader in readers:
        if head.startswith(magic):
            meta = Metadata()
            with contextlib.suppress(*_BROKEN):
                reader(data, meta)  # keeps what was read before a broken block
            _tidy(meta)
            return meta
    return Metadata()


_BROKEN = (struct.error, IndexError, ValueError, zlib.error)


def _tidy(meta: Metadata) -> None:
    """Apply the rules of the module docstring to what was read."""
    if meta.icc and meta.icc[16:20] != b"RGB ":
        meta.icc = None
    if meta.exif:
        try:
            meta.exif = _reset_orientation(meta.exif)
        except _BROKEN:
            meta.exif = None  # an orientation we cannot reset would rotate the output wrongly
    if meta.exif and meta.dpi is None:
        with contextlib.suppress(*_BROKEN):
            meta.dpi = _tiff_dpi(tiff_tags(meta.exif), tiff_byte_order(meta.exif))


def _read_jpeg(data: bytes, meta: Metadata) -> None:
    icc_chunks: dict[int, bytes] = {}
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan: no metadata after it
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        payload = bytes(data[pos + 4 : pos + 2 + length])
        if marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 12:
            units, xd, yd = payload[7], *struct.unpack(">HH", payload[8:12])
            if units in (1, 2) and xd and yd:
                scale = 1.0 if units == 1 else 2.54
                meta.dpi = (xd * scale, yd * scale)
        elif marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            meta.exif = payload[6:]
        elif marker == 0xE1 and payload.startswith(_XMP_JPEG):
            meta.xmp = payload[len(_XMP_JPEG) :]
        elif marker == 0xE2 and payload.startswith(_ICC_JPEG) and len(payload) > 14:
            icc_chunks[payload[12]] = payload[14:]
        pos += 2 + length
    if icc_chunks:
        meta.icc = b"".join(icc_chunks[k] for k in sorted(icc_chunks))


def _png_chunks(data: bytes):
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield pos, kind, data[pos + 8 : pos + 8 + length]  # a view: IDAT is not copied
        pos += 12 + length


def _read_png(data: bytes, meta: Metadata) -> None:
    for _, kind, view in _png_chunks(data):
        if kind not in (b"pHYs", b"iCCP", b"eXIf", b"iTXt", b"IEND"):
            continue
        body = bytes(view)
        if kind == b"pHYs" and len(body) == 9 and body[8] == 1:
            x, y = struct.unpack(">II", body[:8])
            if x and y:
                meta.dpi = (x * 0.0254, y * 0.0254)
        elif kind == b"iCCP":
            name_end = body.index(b"\x00")
            meta.icc = zlib.decompress(body[name_end + 2 :])
        elif kind == b"eXIf":
            meta.exif = body
        elif kind == b"iTXt" and body.startswith(_XMP_PNG_KEY + b"\x00"):
            rest = body[len(_XMP_PNG_KEY) + 1 :]
            compressed = rest[0] == 1
            rest = rest[2:]
            rest = rest[rest.index(b"\x00") + 1 :]  # language tag
            rest = rest[rest.index(b"\x00") + 1 :]  # translated keyword
            meta.xmp = zlib.decompress(rest) if compressed else rest
        elif kind == b"IEND":
            break


def _tiff_dpi(tags: dict[int, tuple[int, int, bytes]], order: str) -> tuple | None:
    """Resolution in dots per inch from TIFF/EXIF tags, or None when absent or unusable."""
    values = []
    for tag in (_TAG_XRES, _TAG_YRES):
        kind, _, raw = tags.get(tag, (0, 0, b""))
        if kind != 5 or len(raw) != 8:
            return None
        num, den = struct.unpack(order + "II", raw)
        if not den or not num:
            return None
        values.append(num / den)
    unit = 2  # inches, TIFF's default
    if _TAG_RES_UNIT in tags and tags[_TAG_RES_UNIT][0] == 3:
        (unit,) = struct.unpack(order + "H", tags[_TAG_RES_UNIT][2][:2])
    if unit == 3:  # centimetres
        return (values[0] * 2.54, values[1] * 2.54)
    return (values[0], values[1]) if unit == 2 else None


def _read_tiff(data: bytes, meta: Metadata, page: int = 0) -> None:
    if bytes(data[2:4]) in (b"+\x00", b"\x00+"):
        return  # BigTIFF: not read
    tags = tiff_tags(data, page)
    meta.dpi = _tiff_dpi(tags, tiff_byte_order(data))
    if _TAG_ICC in tags:
        meta.icc = tags[_TAG_ICC][2]
    if _TAG_XMP in tags:
        meta.xmp = tags[_TAG_XMP][2]
    meta.tiff_text = {
        tag: tags[tag][2] for tag in TIFF_TEXT_TAGS if tag in tags and tags[tag][0] == 2
    }


def _read_webp(data: bytes, meta: Metadata) -> None:
    if bytes(data[8:12]) != b"WEBP":
        return
    pos = 12
    while pos + 8 <= len(data):
        kind, size = bytes(data[pos : pos + 4]), struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = bytes(data[pos + 8 : pos + 8 + size]) if kind in (b"ICCP", b"EXIF", b"XMP ") else b""
        if kind == b"ICCP":
            meta.icc = body
        elif kind == b"EXIF":
            meta.exif = body[6:] if body.startswith(b"Exif\x00\x00") else body
        elif kind == b"XMP ":
            meta.xmp = body
        pos += 8 + size + (size & 1)


def _reset_orientation(exif: bytes) -> bytes:
    """EXIF with its orientation tag set to 1 (top-left), or unchanged without one."""
    if exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return exif
    order = tiff_byte_order(exif)
    out = bytearray(exif)
    (offset,) = struct.unpack(order + "I", exif[4:8])
    (count,) = struct.unpack(order + "H", exif[offset : offset + 2])
    for i in range(count):
        at = offset + 2 + 12 * i
        tag, kind = struct.unpack(order + "HH", exif[at : at + 4])
        if tag == _TAG_ORIENTATION and kind == 3:
            out[at + 8 : at + 10] = struct.pack(order + "H", 1)
    return bytes(out)


# ---------------------------------------------------------------------------------- writing


def embed_metadata(
    encoded: bytes, suffix: str, meta: Metadata, size: tuple[int, int], alpha: bool = False
) -> bytes:
    """``encoded`` (an image file's bytes of type ``suffix``) with ``meta`` written into it.

    ``size`` is the image's (width, height), ``alpha`` whether it has an alpha channel (WebP's
    extended header states both).
    """
    if not meta:
        return encoded
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg", ".jpe"):
        return _write_jpeg(encoded, meta)
    if suffix == ".png":
        return _write_png(encoded, meta)
    if suffix in (".tif", ".tiff"):
        return _write_tiff(encoded, meta)
    if suffix == ".webp":
        return _write_webp(encoded, meta, size, alpha)
    return encoded


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _write_jpeg(data: bytes, meta: Metadata) -> bytes:
    pos = 2
    head = b""
    if data[pos : pos + 2] == b"\xff\xe0":  # the encoder's JFIF header: keep, with our density
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        app0 = bytearray(data[pos : pos + 2 + length])
        if meta.dpi and app0[4:9] == b"JFIF\x00":
            app0[11] = 1
            app0[12:16] = struct.pack(">HH", *(min(65535, round(v)) for v in meta.dpi))
        head, pos = bytes(app0), pos + 2 + length
    segments = []
    if meta.exif and len(meta.exif) + 8 <= 65535:
        segments.append(_segment(0xE1, b"Exif\x00\x00" + meta.exif))
    if meta.xmp and len(meta.xmp) + len(_XMP_JPEG) + 2 <= 65535:
        segments.append(_segment(0xE1, _XMP_JPEG + meta.xmp))
    if meta.icc:
        chunks = [meta.icc[i : i + _ICC_CHUNK] for i in range(0, len(meta.icc), _ICC_CHUNK)]
        if len(chunks) < 256:
            for i, chunk in enumerate(chunks, 1):
                segments.append(_segment(0xE2, _ICC_JPEG + bytes([i, len(chunks)]) + chunk))
    return data[:2] + head + b"".join(segments) + data[pos:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _write_png(data: bytes, meta: Metadata) -> bytes:
    chunks = []
    if meta.icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.dpi:
        x, y = (round(v / 0.0254) for v in meta.dpi)
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", x, y, 1)))
    if meta.exif:
        chunks.append(_png_chunk(b"eXIf", meta.exif))
    if meta.xmp:
        chunks.append(_png_chunk(b"iTXt", _XMP_PNG_KEY + b"\x00\x00\x00\x00\x00" + meta.xmp))
    ihdr_end = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    return data[:ihdr_end] + b"".join(chunks) + data[ihdr_end:]


def _rational(value: float) -> bytes:
    return struct.pack("<II", max(1, round(value * 100)), 100)


def _write_tiff(data: bytes, meta: Metadata) -> bytes:
    """Append a new first IFD: the encoder's entries plus ours, pointing at the same pages."""
    if data[:4] != b"II*\x00":
        return data  # OpenCV writes little-endian classic TIFF; anything else is left alone
    (offset,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[offset : offset + 2])
    entries = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        entries[struct.unpack("<H", entry[:2])[0]] = entry
    (next_ifd,) = struct.unpack("<I", data[offset + 2 + 12 * count : offset + 6 + 12 * count])
    added: dict[int, tuple[int, int, bytes]] = {}
    if meta.dpi:
        added[_TAG_XRES] = (5, 1, _rational(meta.dpi[0]))
        added[_TAG_YRES] = (5, 1, _rational(meta.dpi[1]))
        added[_TAG_RES_UNIT] = (3, 1, struct.pack("<H", 2))
    if meta.icc:
        added[_TAG_ICC] = (7, len(meta.icc), meta.icc)
    if meta.xmp:
        added[_TAG_XMP] = (1, len(meta.xmp), meta.xmp)
    for tag, text in meta.tiff_text.items():
        added[tag] = (2, len(text), text)
    out = bytearray(data)
    for tag, (kind, n, raw) in added.items():
        if len(raw) <= 4:
            value = raw.ljust(4, b"\x00")
        else:
            if len(out) % 2:
                out += b"\x00"
            value = struct.pack("<I", len(out))
            out += raw
        entries[tag] = struct.pack("<HHI", tag, kind, n) + value
    if len(out) % 2:
        out += b"\x00"
    new_offset = len(out)
    out += struct.pack("<H", len(entries))
    out += b"".join(entries[tag] for tag in sorted(entries))
    out += struct.pack("<I", next_ifd)
    out[4:8] = struct.pack("<I", new_offset)
    return bytes(out)


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _write_webp(data: bytes, meta: Metadata, size: tuple[int, int], alpha: bool) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        kind, length = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    image = [(k, b) for k, b in chunks if k not in (b"VP8X", b"ICCP", b"EXIF", b"XMP ")]
    flags = (
        (0x20 if meta.icc else 0) | (0x10 if alpha else 0)
        | (0x08 if meta.exif else 0) | (0x04 if meta.xmp else 0)
    )  # fmt: skip
    width, height = size
    vp8x = struct.pack("<B3x", flags) + struct.pack("<I", width - 1)[:3]
    vp8x += struct.pack("<I", height - 1)[:3]
    body = _riff_chunk(b"VP8X", vp8x)
    if meta.icc:
        body += _riff_chunk(b"ICCP", meta.icc)
    body += b"".join(_riff_chunk(k, b) for k, b in image)
    if meta.exif:
        body += _riff_chunk(b"EXIF", meta.exif)
    if meta.xmp:
        body += _riff_chunk(b"XMP ", meta.xmp)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body
