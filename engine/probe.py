"""Image dimensions from file headers, without decoding: for the pixel limit (decompression bombs
are refused before any pixel is allocated) and for the pipeline's memory budget.

JPEG (SOF), PNG (IHDR), TIFF (first page), BMP and WebP (VP8, VP8L, VP8X) are read; other files
give None and are left to the decoder.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageShape:
    width: int
    height: int
    bits: int = 8
    """Bits per sample (8 or 16 where the header says; 8 when it does not)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data) -> ImageShape | None:
    """The shape in an image file's bytes (any buffer; only the header is touched)."""
    view = memoryview(data).cast("B")
    head = bytes(view[:32])
    try:
        if head.startswith(b"\xff\xd8"):
            return _jpeg(view)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height, bits = struct.unpack(">IIB", head[16:25])
            return ImageShape(width, height, bits)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(view)
        if head.startswith(b"BM") and len(head) >= 26:
            width, height = struct.unpack("<ii", head[18:26])
            return ImageShape(abs(width), abs(height))
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(head)
    except (struct.error, IndexError, ValueError):
        return None
    return None


_FORMAT_MAGIC = (
    (b"\xff\xd8", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"GIF8", "GIF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"8BPS", "PSD"), (b"P1", "PNM"), (b"P2", "PNM"),
    (b"P3", "PNM"), (b"P4", "PNM"), (b"P5", "PNM"), (b"P6", "PNM"),
)  # fmt: skip


def format_name(head: bytes) -> str | None:
    """The image format an encoded file's first bytes announce (``PNG``, ``WebP``, …), or None."""
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "AVIF"
    return next((name for magic, name in _FORMAT_MAGIC if head.startswith(magic)), None)


def probe_file(path: Path) -> ImageShape | None:
    """The shape of an image file, reading only its header pages (memory-mapped)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return probe(mapped)
    except (OSError, ValueError):  # unreadable, empty, not a regular file
        return None


def _jpeg(view: memoryview) -> ImageShape | None:
    pos = 2
    while pos + 9 < len(view):
        if view[pos] != 0xFF:
            return None
        marker = view[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", view[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS:
            bits, height, width = struct.unpack(">BHH", view[pos + 4 : pos + 9])
            return ImageShape(width, height, bits)
        if marker == 0xDA:
            return None
        pos += 2 + length
    return None


def _tiff(view: memoryview) -> ImageShape | None:
    tags = tiff_tags(view)
    if 256 not in tags or 257 not in tags:
        return None
    order = tiff_byte_order(view)

    def first(tag: int) -> int:  # SHORT or LONG; for bits per sample, the first sample's
        kind, _, raw = tags[tag]
        return struct.unpack(order + ("H" if kind == 3 else "I"), raw[: 2 if kind == 3 else 4])[0]

    return ImageShape(first(256), first(257), first(258) if 258 in tags else 8)


def _webp(head: bytes) -> ImageShape | None:
    kind = head[12:16]
    if kind == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return ImageShape(width, height)
    if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return ImageShape(width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return ImageShape((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return None


def tiff_ifd_offsets(data, limit: int = 100_000) -> list[int]:
    """Offsets of the IFDs (pages) of a classic TIFF structure, in order; a chain that breaks
    off (a next-IFD offset past the end, a cut file) ends with the last whole IFD."""
    order = tiff_byte_order(data)
    offsets: list[int] = []
    (offset,) = struct.unpack(order + "I", data[4:8])
    while offset and offset not in offsets and len(offsets) < limit:
        count_bytes = bytes(data[offset : offset + 2])
        if len(count_bytes) < 2:
            break
        (count,) = struct.unpack(order + "H", count_bytes)
        end = offset + 2 + 12 * count
        next_bytes = bytes(data[end : end + 4])
        if len(next_bytes) < 4:
            break
        offsets.append(offset)
        (offset,) = struct.unpack(order + "I", next_bytes)
    return offsets


_TIFF_TYPE_SIZES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
}


def tiff_byte_order(data) -> str:
    """``struct`` byte order of a TIFF structure (``II``: little-endian, ``MM``: big)."""
    return "<" if bytes(data[:2]) == b"II" else ">"


def tiff_tags(data, page: int = 0) -> dict[int, tuple[int, int, bytes]]:
    """One IFD of a classic TIFF structure: tag → (type, count, raw value bytes)."""
    order = tiff_byte_order(data)
    offset = tiff_ifd_offsets(data, limit=page + 1)[page]
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, kind, n = struct.unpack(order + "HHI", entry[:8])
        size = _TIFF_TYPE_SIZES.get(kind, 1) * n
        if size <= 4:
            raw = bytes(entry[8 : 8 + size])
        else:
            (where,) = struct.unpack(order + "I", entry[8:12])
            raw = bytes(data[where : where + size])
            if len(raw) != size:
                continue
        tags[tag] = (kind, n, raw)
    return tags


def count_pages(path: Path) -> int:
    """Pages of a multi-page TIFF (1 for other files, and for files that cannot be read)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if bytes(mapped[:4]) not in (b"II*\x00", b"MM\x00*"):
                return 1
            # the map itself, not a memoryview of it: its slices are copies, so a broken IFD
            # chain's exception holds no view that would keep the map from closing
            return max(1, len(tiff_ifd_offsets(mapped)))
    except (OSError, ValueError, struct.error):
        return 1
