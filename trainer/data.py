"""Datasets from image folders: scanning, a deterministic split, a compact LAB cache, random crops.

A photo's category is the name of its top-level subfolder (``root/people/x.jpg`` → ``people``);
files directly under the root have the category ``general``. Photos of the sources named in
:data:`CROSS_SOURCES` form the **cross-source split**: no model trains on them, so they measure how
a model colours photos from sources it never saw. The others are split into train and (in-source)
validation by a hash of the path *inside* the category folder, so the split never changes with the
order of files, with the machine, or when a photo is relabelled. Photos are decoded once into a
cache of uint8 LAB images (at most ``max_side`` pixels on the long side) so training spends its
cores on the model, not on decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engine.color import L_MAX, bgr_to_lab, fit_long_side, is_grayscale, resize_plane
from engine.model_io import (
    SEED_NORMALIZATION,
    Normalization,
    model_input,
    normalize_ab,
    normalize_l,
)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jp2"}
)
DEFAULT_CATEGORY = "general"
CACHE_VERSION = 2


CROSS_SOURCES = frozenset({"flickr8k", "kglandscape", "food101mini", "pedframes"})
"""Sources (file-name prefixes) held out whole — four of the five sources of ``more/``, which no
shipped model ever trained on: Flickr8k's everyday scenes (people, dogs, places), Kaggle's
landscape pictures, Food-101 and street video frames; people, landscape and general photos alike.
(Sources of ``extra/`` cannot serve: ``effunet-general`` trained on 85 % of each, and scores +7 dB
over gray on BSDS500 against +0.5 dB on Flickr8k.)"""


@dataclass(frozen=True)
class Photo:
    """One image file of a dataset."""

    path: Path
    key: str
    """Path inside the category folder, with '/' separators: the split is a hash of it."""
    category: str
    root: str = ""
    """The name of the data folder it was found in (``train``, ``extra``, ``more``)."""

    @property
    def source(self) -> str:
        """Where the photo comes from: ``root/prefix`` (see :func:`source_of`)."""
        return f"{self.root}/{source_of(self.key)}"


def scan_folder(root: Path | str) -> list[Photo]:
    """All images under ``root`` (recursively, sorted), each with its category."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    photos = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if len(parts) > 1:
            photos.append(Photo(path, "/".join(parts[1:]), parts[0], root.resolve().name))
        else:
            photos.append(Photo(path, parts[0], DEFAULT_CATEGORY, root.resolve().name))
    return photos


def scan_folders(roots: Sequence[Path | str] | Path | str) -> list[Photo]:
    """:func:`scan_folder` over several roots (e.g. the open photos and the extra ones); a key
    found twice (the same category and file name in two roots) is an error."""
    roots = [roots] if isinstance(roots, str | Path) else list(roots)
    photos, seen = [], {}
    for root in roots:
        for photo in scan_folder(root):
            name = f"{photo.category}/{photo.key}"
            if name in seen:
                raise ValueError(f"{photo.path}: the same category and name as {seen[name]}")
            seen[name] = photo.path
            photos.append(photo)
    return photos


def source_of(photo_key: str) -> str:
    """A photo's source: its file name's prefix before ``__`` (``ccp__0042.jpg`` → ``ccp``)."""
    name = photo_key.rsplit("/", 1)[-1]
    return name.split("__", 1)[0] if "__" in name else ""


def split_of(key: str, val_fraction: float, salt: str = "") -> str:
    """``"cross"`` for a photo of a held-out source (:data:`CROSS_SOURCES`), else ``"val"`` or
    ``"train"`` from a stable hash of the photo's key."""
    if source_of(key) in CROSS_SOURCES:
        return "cross"
    digest = hashlib.sha256(f"{salt}{key}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if fraction < val_fraction else "train"


def select(
    photos: Iterable[Photo],
    split: str | None = None,
    val_fraction: float = 0.15,
    categories: Sequence[str] | None = None,
) -> list[Photo]:
    """Photos of one split (``train``/``val``/``cross``; None = all) in the given categories
    (None = all)."""
    chosen = []
    for photo in photos:
        if categories and photo.category not in categories:
            continue
        if split is not None and split_of(photo.key, val_fraction) != split:
            continue
        chosen.append(photo)
    return chosen


def spread(photos: Sequence[Photo], count: int) -> list[Photo]:
    """At most ``count`` of ``photos``, evenly spaced through the (sorted) list, so every folder,
    category and source keeps its share."""
    if count <= 0:
        return []
    step = max(1.0, len(photos) / count)
    return [photos[int(i * step)] for i in range(min(count, len(photos)))]


# ---------------------------------------------------------------------------------------------
# Compact LAB cache


def quantize_lab(lab: np.ndarray) -> np.ndarray:
    """Float LAB → uint8 LAB (L·255/100, a+128, b+128), OpenCV's 8-bit LAB layout."""
    q = np.empty(lab.shape, np.float32)
    q[..., 0] = lab[..., 0] * (255.0 / L_MAX)
    q[..., 1:] = lab[..., 1:] + 128.0
    return np.clip(q + 0.5, 0, 255).astype(np.uint8)


def dequantize_lab(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_lab` (float32 LAB)."""
    lab = q.astype(np.float32)
    lab[..., 0] *= L_MAX / 255.0
    lab[..., 1:] -= 128.0
    return lab


def load_lab(path: Path, max_side: int) -> np.ndarray | None:
    """Decode an image and return its uint8 LAB at most ``max_side`` long (None if unreadable)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    h, w = fit_long_side(image.shape[:2], max_side)
    if (h, w) != image.shape[:2]:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return quantize_lab(bgr_to_lab(image))


@dataclass
class LabCache:
    """Decoded photos as uint8 LAB arrays, with their keys and categories."""

    images: list[np.ndarray]
    keys: list[str]
    categories: list[str]
    skipped: dict[str, str]
    """key → reason, for photos left out (unreadable, grayscale)."""
    sources: list[str] = field(default_factory=list)
    """Each photo's :attr:`Photo.source` (``root/prefix``)."""

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for category in self.categories:
            counts[category] = counts.get(category, 0) + 1
        return {"photos": len(self), "per_category": counts, "skipped": len(self.skipped)}


def _cache_id(photos: Sequence[Photo], max_side: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{max_side}".encode())
    for photo in photos:
        stat = photo.path.stat()
        h.update(
            f"{photo.source}:{photo.category}/{photo.key}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
        )
    return h.hexdigest()[:16]


def build_cache(
    photos: Sequence[Photo],
    max_side: int = 512,
    cache_dir: Path | None = None,
    workers: int | None = None,
    gray_threshold: float = 1.8,
) -> LabCache:
    """Decode ``photos`` once (in threads), skip unreadable and grayscale ones, and keep the result.

    With ``cache_dir``, the cache is stored as one ``.npz`` named by a hash of the file list, sizes,
    mtimes and ``max_side``, and reused while none of them change.
    """
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"lab-{_cache_id(photos, max_side)}.npz"
        if cache_file.exists():
            return _read_cache(cache_file)
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda p: load_lab(p.path, max_side), photos))
    images, keys, categories, sources, skipped = [], [], [], [], {}
    for photo, lab in zip(photos, decoded, strict=True):
        name = f"{photo.category}/{photo.key}"
        if lab is None:
            skipped[name] = "unreadable"
        elif is_grayscale(_dequantize_small(lab), gray_threshold):
            skipped[name] = "grayscale"
        else:
            images.append(lab)
            keys.append(photo.key)
            categories.append(photo.category)
            sources.append(photo.source)
    cache = LabCache(images, keys, categories, skipped, sources)
    if cache_file is not None:
        _write_cache(cache_file, cache)
    return cache


def _dequantize_small(q: np.ndarray) -> np.ndarray:
    step = max(1, max(q.shape[:2]) // 256)
    return dequantize_lab(q[::step, ::step])


def _write_cache(path: Path, cache: LabCache) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = np.array([im.shape for im in cache.images], np.int64).reshape(-1, 3)
    flat = np.concatenate([im.ravel() for im in cache.images]) if cache.images else np.zeros(0)
    meta = {"keys": cache.keys, "categories": cache.categories, "skipped": cache.skipped,
            "sources": cache.sources}  # fmt: skip
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, flat=flat.astype(np.uint8), shapes=shapes, meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)


def _read_cache(path: Path) -> LabCache:
    with np.load(path) as data:
        flat, shapes = data["flat"], data["shapes"]
        meta = json.loads(str(data["meta"]))
    images, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        images.append(flat[offset : offset + n].reshape(shape))
        offset += n
    return LabCache(images, meta["keys"], meta["categories"], meta["skipped"], meta["sources"])


# ---------------------------------------------------------------------------------------------
# Training patches


def lab_to_model_pair(
    lab_q: np.ndarray, norm: Normalization = SEED_NORMALIZATION
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 LAB ``h×w×3`` → (normalised L ``1×h×w``, normalised ab ``2×h×w``)."""
    lab = dequantize_lab(lab_q)
    L = normalize_l(lab[..., 0], norm)[None]
    ab = normalize_ab(np.transpose(lab[..., 1:], (2, 0, 1)), norm)
    return np.ascontiguousarray(L), np.ascontiguousarray(ab)


class PatchSampler:
    """Random crops with horizontal flips, drawn from a numpy ``Generator``.

    Two kinds of crop. By default (``max_downscale`` None) a crop covers ``min_scale``..1 of the
    photo's area with an aspect ratio between 3/4 and 4/3 and is resized to ``size×size``, enlarged
    where the photo is small. With ``max_downscale`` the crop is taken at the photo's own scale:
    ``size·z`` pixels square (``z`` log-uniform in 1..``max_downscale``, aspect 3/4..4/3) reduced
    to ``size×size``, never enlarged unless the photo itself is smaller than ``size`` — so the
    model trains on pixels as sharp as the ones it sees in use, not on upscaled ones. All
    randomness comes from ``rng``, so saving its state resumes the exact sequence.
    """

    def __init__(
        self,
        cache: LabCache,
        size: int,
        norm: Normalization = SEED_NORMALIZATION,
        min_scale: float = 0.25,
        weights: np.ndarray | None = None,
        max_downscale: float | None = None,
    ) -> None:
        if len(cache) == 0:
            raise ValueError("no training photos left after filtering")
        self.cache, self.size, self.norm, self.min_scale = cache, size, norm, min_scale
        self.weights = weights
        """Per-photo sampling probabilities (None: uniform)."""
        self.max_downscale = max_downscale

    def _region(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
        """The crop's height and width in the photo's pixels."""
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        if self.max_downscale is None:
            area = h * w * rng.uniform(self.min_scale, 1.0)
        else:
            zoom = np.exp(rng.uniform(0.0, np.log(self.max_downscale)))
            area = (self.size * zoom) ** 2
        return int(min(h, round(np.sqrt(area / aspect)))), int(
            min(w, round(np.sqrt(area * aspect)))
        )

    def crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        ch, cw = self._region(h, w, rng)
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        patch = resize_plane(image[y : y + ch, x : x + cw], self.size)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return patch

    def batch(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(L ``N×1×s×s``, ab ``N×2×s×s``) float32, normalised."""
        if self.weights is None:
            indices = rng.integers(0, len(self.cache), batch_size)
        else:
            indices = rng.choice(len(self.cache), batch_size, p=self.weights)
        pairs = [
            lab_to_model_pair(self.crop(self.cache.images[i], rng), self.norm) for i in indices
        ]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def whole_image_batch(
    cache: LabCache, size: int, norm: Normalization = SEED_NORMALIZATION
) -> tuple[np.ndarray, np.ndarray]:
    """Every cached photo resized to ``size×size`` as at inference: the validation set."""
    Ls, abs_ = [], []
    for image in cache.images:
        lab = dequantize_lab(image)
        Ls.append(model_input(lab[..., 0], size, norm))
        ab = resize_plane(lab[..., 1:], size)
        abs_.append(normalize_ab(np.transpose(ab, (2, 0, 1)), norm))
    return np.stack(Ls), np.stack(abs_)
