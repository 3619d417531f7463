"""Damaged image files, as old disks and interrupted copies leave them, made at test time.

``damaged_files(originals, count, seed)`` mutates well-formed files (name → bytes) with a fixed
seed: bits flipped in the header, the file cut short, a region duplicated, zeroed or set to 0xFF,
bytes of another file spliced in, a size field set to an extreme value. Each original gets each
kind of damage in turn, so a few hundred files cover every format and every kind.
``well_formed_files(gray)`` is the set to start from: the archive formats of
:mod:`tests.archive_formats` plus JPEG, PNG (8/16-bit), TIFF and WebP written by OpenCV.
"""

from __future__ import annotations

import random
import struct
from pathlib import PurePosixPath

import cv2
import numpy as np

from tests.archive_formats import archive_files

DAMAGE = ("flip", "truncate", "duplicate", "zero", "ff", "splice", "size")
_EXTREMES = (0, 1, 0xFFFF, 0x7FFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, 0x40000000)
_SIZE_FIELDS = {  # magic → offsets of the width and height fields (bytes, big/little endian)
    b"\x89PNG": ((16, ">I"), (20, ">I")),
    b"BM": ((18, "<i"), (22, "<i")),
    b"GIF8": ((6, "<H"), (8, "<H")),
}


def well_formed_files(gray: np.ndarray) -> dict[str, bytes]:
    """name → bytes: one file per archive kind and the common formats, each showing ``gray``."""
    files = dict(archive_files(gray))
    wide = (gray.astype(np.uint16) * 257).astype(np.uint16)
    for name, image in (
        ("common/photo.jpg", gray), ("common/photo.png", gray), ("common/deep.png", wide),
        ("common/photo.tif", gray), ("common/deep.tif", wide), ("common/photo.webp", gray),
        ("common/photo.bmp", gray),
    ):  # fmt: skip
        files[name] = cv2.imencode(PurePosixPath(name).suffix, image)[1].tobytes()
    return files


def damaged_files(originals: dict[str, bytes], count: int, seed: int) -> dict[str, bytes]:
    """``count`` damaged variants of ``originals`` (see the module docstring), named
    ``<original>-<damage>-<n><suffix>``."""
    rng = random.Random(seed)
    names = sorted(originals)
    damaged = {}
    for i in range(count):
        name = names[i % len(names)]
        kind = DAMAGE[(i // len(names)) % len(DAMAGE)]
        other = originals[names[rng.randrange(len(names))]]
        data = _damage(kind, bytearray(originals[name]), other, rng)
        path = PurePosixPath(name)
        damaged[str(path.with_name(f"{path.stem}-{kind}-{i:04d}{path.suffix}"))] = bytes(data)
    return damaged


def _damage(kind: str, data: bytearray, other: bytes, rng: random.Random) -> bytearray:
    size = len(data)
    start = rng.randrange(size)
    length = min(size - start, rng.randint(1, 64))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(size, 256))] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del data[rng.randrange(1, size) :]
    elif kind == "duplicate":
        data[start:start] = data[start : start + length]
    elif kind in ("zero", "ff"):
        data[start : start + length] = bytes([0 if kind == "zero" else 0xFF]) * length
    elif kind == "splice":
        at = rng.randrange(len(other))
        data[start : start + length] = other[at : at + length]
    else:
        _extreme_size(data, rng)
    return data


def _extreme_size(data: bytearray, rng: random.Random) -> None:
    """A width or height field (where the format is known; else any field of the header) set
    to an extreme value."""
    fields = next((f for magic, f in _SIZE_FIELDS.items() if data.startswith(magic)), None)
    if fields is None:
        offset, code = rng.randrange(max(1, min(len(data), 64) - 4)), rng.choice(("<I", ">H"))
    else:
        offset, code = rng.choice(fields)
    limit = 2 ** (8 * struct.calcsize(code)) - 1
    value = rng.choice(_EXTREMES) & (limit if code[1].isupper() else limit >> 1)
    if offset + struct.calcsize(code) <= len(data):
        struct.pack_into(code, data, offset, value)
