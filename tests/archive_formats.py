"""Archive formats nobody here wrote, made at test time: one file per kind an archive holds that
OpenCV alone does not decode (JPEG 2000, PNM, TIFF compressions and sample layouts, BMP
palettes and RLE, PNGs with odd chunks; GIF, TGA, PCX, SGI, PSD, AVIF, APNG and MPO).
``archive_files(gray)`` returns name → file bytes; every file shows the same gray photo (or a
fixed function of it), so an output can be checked.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _tiff(width: int, height: int, entries: list[tuple[int, int, list[int] | bytes]],
          strips: list[bytes]) -> bytes:  # fmt: skip
    """A little-endian classic TIFF with the given IFD entries (tag, type, values) and strips;
    StripOffsets/StripByteCounts (or the tile tags, when 322 is present) are filled in."""
    tiled = any(tag == 322 for tag, _, _ in entries)
    offsets_tag, counts_tag = (324, 325) if tiled else (273, 279)
    header = 8
    data = b"".join(strips)
    offsets, pos = [], header
    for strip in strips:
        offsets.append(pos)
        pos += len(strip)
    entries = [*entries, (offsets_tag, 4, offsets), (counts_tag, 4, [len(s) for s in strips])]
    entries += [(256, 4, [width]), (257, 4, [height])]
    if not tiled:
        entries.append((278, 4, [height if len(strips) == 1 else 1]))
    entries.sort(key=lambda e: e[0])
    ifd_at = header + len(data)
    ifd_at += ifd_at % 2
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, extra = b"", b""
    sizes = {1: "B", 2: "B", 3: "H", 4: "I", 7: "B", 11: "f", 16: "Q"}
    for tag, kind, values in entries:
        raw = values if isinstance(values, bytes) else b"".join(
            struct.pack("<" + sizes[kind], v) for v in values
        )  # fmt: skip
        count = len(raw) // struct.calcsize(sizes[kind])
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
            extra += raw + (b"\0" if len(raw) % 2 else b"")
    body = b"II*\x00" + struct.pack("<I", ifd_at) + data
    body = body.ljust(ifd_at, b"\0")
    return body + struct.pack("<H", len(entries)) + ifd + b"\0\0\0\0" + extra


def _packed(gray: np.ndarray, bits: int) -> bytes:
    """Rows of ``gray`` quantised to ``bits`` per sample, packed MSB first, each row padded."""
    levels = (gray.astype(np.uint16) * ((1 << bits) - 1) + 127) // 255
    rows = []
    for row in levels:
        value, count, out = 0, 0, bytearray()
        for sample in row:
            value = (value << bits) | int(sample)
            count += bits
            if count == 8:
                out.append(value)
                value, count = 0, 0
        if count:
            out.append(value << (8 - count))
        rows.append(bytes(out))
    return b"".join(rows)


def _pil(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _bmp(gray: np.ndarray, bits: int, rle: bool) -> bytes:
    """A gray-palette BMP of 4 or 8 bits, RLE-compressed (absolute runs of 2) or not."""
    h, w = gray.shape
    levels = 1 << bits
    index = (gray.astype(np.uint16) * (levels - 1) + 127) // 255
    palette = b"".join(bytes([v, v, v, 0]) for v in np.linspace(0, 255, levels).astype(int))
    rows = []
    for row in index[::-1]:  # bottom-up
        if rle:
            out = bytearray()
            for x in range(0, w, 2):
                pair = row[x : x + 2]
                if bits == 8:
                    for value in pair:
                        out += bytes([1, int(value)])
                else:
                    a = int(pair[0])
                    b = int(pair[1]) if len(pair) > 1 else 0
                    out += bytes([len(pair), (a << 4) | b])
            out += b"\x00\x00"  # end of line
            rows.append(bytes(out))
        else:
            packed = _packed(np.round(row * 255 / (levels - 1)).astype(np.uint8)[None], bits)
            rows.append(packed.ljust((len(packed) + 3) // 4 * 4, b"\0"))
    pixels = b"".join(rows) + (b"\x00\x01" if rle else b"")
    compression = {(8, True): 1, (4, True): 2}.get((bits, rle), 0)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bits, compression, len(pixels), 2835, 2835,
                       levels, 0)  # fmt: skip
    offset = 14 + len(info) + len(palette)
    return (
        b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels
    )


def _png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def _odd_png(gray: np.ndarray) -> bytes:
    """An RGBA PNG with chunks decoders meet in the wild: a private ancillary chunk, a text
    chunk with a wrong CRC, and an eXIf chunk that is not EXIF."""
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    png = _pil(Image.fromarray(rgba, "RGBA"), "PNG")
    head, rest = png[:33], png[33:]  # signature + IHDR
    odd = (
        _png_chunk(b"prVt", b"scanner settings v2")
        + _png_chunk(b"tEXt", b"Comment\x00scanned 1998", crc=0)
        + _png_chunk(b"eXIf", b"not exif at all")
    )
    return head + odd + rest


def _ojpeg_tiff(gray: np.ndarray) -> bytes:
    """An old-style JPEG TIFF (compression 6) as scanners wrote them: a whole JFIF stream
    pointed to by JPEGInterchangeFormat, one strip."""
    h, w = gray.shape
    jpeg = _pil(Image.fromarray(gray), "JPEG", quality=95)
    entries = [(258, 3, [8]), (259, 3, [6]), (262, 3, [1]), (277, 3, [1])]
    # 513/514 point into the strip itself (at offset 8: the only strip)
    entries += [(513, 4, [8]), (514, 4, [len(jpeg)])]
    return _tiff(w, h, entries, [jpeg])


def _webp_tiff(gray: np.ndarray) -> bytes:
    """An RGB TIFF whose one strip is a WebP image (compression 50001, as libtiff writes)."""
    h, w = gray.shape
    webp = _pil(Image.fromarray(gray).convert("RGB"), "WEBP", lossless=True)
    entries = [(258, 3, [8, 8, 8]), (259, 3, [50001]), (262, 3, [2]), (277, 3, [3])]
    return _tiff(w, h, entries, [webp])


def _tiled_tiff(gray: np.ndarray, tile: int = 16) -> bytes:
    h, w = gray.shape
    tiles = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = np.zeros((tile, tile), np.uint8)
            part = gray[y : y + tile, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            tiles.append(block.tobytes())
    entries = [(258, 3, [8]), (259, 3, [1]), (262, 3, [1]), (277, 3, [1]),
               (322, 3, [tile]), (323, 3, [tile])]  # fmt: skip
    return _tiff(w, h, entries, tiles)


def _bits_tiff(gray: np.ndarray, bits: int) -> bytes:
    h, w = gray.shape
    entries = [(258, 3, [bits]), (259, 3, [1]), (262, 3, [1]), (277, 3, [1])]
    return _tiff(w, h, entries, [_packed(gray, bits)])


def _sample_tiff(values: np.ndarray, sample_format: int) -> bytes:
    """A gray TIFF of 32-bit samples: 2 = signed int, 3 = float (SampleFormat)."""
    h, w = values.shape
    entries = [(258, 3, [32]), (259, 3, [1]), (262, 3, [1]), (277, 3, [1]),
               (339, 3, [sample_format])]  # fmt: skip
    return _tiff(w, h, entries, [values.astype("<i4" if sample_format == 2 else "<f4").tobytes()])


def _psd(gray: np.ndarray) -> bytes:
    """A one-channel 8-bit grayscale Photoshop file, raw image data (no writer exists)."""
    h, w = gray.shape
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 1, h, w, 8, 1)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + gray.tobytes()


def _frames(image: Image.Image, fmt: str) -> bytes:
    """Two frames (the photo, then its negative): an animated GIF, an APNG (``fmt`` PNG) or a
    camera's multi-picture file (MPO); the first frame is the one colorized."""
    negative = Image.eval(image, lambda v: 255 - v)
    out = io.BytesIO()
    image.save(out, fmt, save_all=True, append_images=[negative])
    return out.getvalue()


def samples_bomb_tiff(gray: np.ndarray) -> bytes:
    """A TIFF claiming 65,535 samples per pixel: Pillow logs an error, then refuses it."""
    h, w = gray.shape
    entries = [(258, 3, [8]), (259, 3, [1]), (262, 3, [1]), (277, 3, [65535])]
    return _tiff(w, h, entries, [gray.tobytes()])


def archive_files(gray: np.ndarray) -> dict[str, bytes]:
    """name → bytes of one file per archive kind, each showing ``gray`` (uint8 ``H×W``)."""
    image = Image.fromarray(gray)
    return {
        "jpeg2000/plain.jp2": _pil(image, "JPEG2000"),
        "jpeg2000/tiled.jp2": _pil(image, "JPEG2000", tile_size=(32, 32)),
        "jpeg2000/codestream.j2k": _pil(image, "JPEG2000", no_jp2=True),
        "jpeg2000/named jpf.jpf": _pil(image, "JPEG2000"),
        "jpeg2000/named jpx.jpx": _pil(image, "JPEG2000"),
        "pnm/bitmap.pbm": _pil(image.convert("1"), "PPM"),
        "pnm/graymap.pgm": _pil(image, "PPM"),
        "pnm/pixmap.ppm": _pil(image.convert("RGB"), "PPM"),
        "pnm/any.pnm": _pil(image, "PPM"),
        "tiff/old-style jpeg.tif": _ojpeg_tiff(gray),
        "tiff/lzma.tif": _pil(image, "TIFF", compression="tiff_lzma"),
        "tiff/webp.tif": _webp_tiff(gray),
        "tiff/tiled.tif": _tiled_tiff(gray),
        "tiff/1-bit.tif": _bits_tiff(gray, 1),
        "tiff/2-bit.tif": _bits_tiff(gray, 2),
        "tiff/4-bit.tif": _bits_tiff(gray, 4),
        "tiff/palette.tif": _pil(image.convert("RGB").convert("P"), "TIFF"),
        "tiff/int32.tif": _sample_tiff(gray.astype(np.int32) * 1000 - 50_000, 2),
        "tiff/float32.tif": _sample_tiff(gray.astype(np.float32) / 255, 3),
        "bmp/palette-4.bmp": _bmp(gray, 4, rle=False),
        "bmp/palette-8.bmp": _bmp(gray, 8, rle=False),
        "bmp/rle-4.bmp": _bmp(gray, 4, rle=True),
        "bmp/rle-8.bmp": _bmp(gray, 8, rle=True),
        "png/rgba odd chunks.png": _odd_png(gray),
        "read-only/gray.gif": _pil(image, "GIF"),
        "read-only/animated.gif": _frames(image, "GIF"),
        "read-only/rle.tga": _pil(image, "TGA", compression="tga_rle"),
        "read-only/pcx scan.pcx": _pil(image, "PCX"),
        "read-only/sgi scan.sgi": _pil(image, "SGI"),
        "read-only/master.psd": _psd(gray),
        "read-only/modern.avif": _pil(image.convert("RGB"), "AVIF", quality=100),
        "read-only/frames.apng": _frames(image, "PNG"),
        "mpo/stereo camera.mpo": _frames(image.convert("RGB"), "MPO"),
    }
