"""How much memory the images of a run may hold at once, and the pixel limit.

Peak memory of a run ≈ the backend's (model and its working memory, which grows with the batch:
:func:`default_batch_size` picks a batch that fits) + the images in flight, which
:class:`MemoryBudget` bounds by ``--memory-budget`` (default: a quarter of RAM less the
backend's working memory). An image's share is estimated from its
header before it is decoded (:func:`image_cost`): ``8 × bytes per sample × pixels`` covers the
decoded input (up to 4 samples per pixel), the output (up to 4) and the encoded file. The
pre- and post-processing work in row tiles and strips of a few MB, so no full-resolution float
copy of an image is ever made. A 20000×15000 8-bit scan thus needs about 2.4 GB.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from engine.probe import probe_file

DEFAULT_MAX_PIXELS = 600_000_000
"""Default pixel limit: 30000×20000, beyond the largest archive scans we know of."""
BYTES_PER_PIXEL_IN_FLIGHT = 8
"""Bytes per pixel and per byte of sample depth an image holds at its peak: the decoded input
(≤ 4 samples), the output (≤ 4 samples) and the encoded file."""


def image_cost(path: Path) -> int:
    """Bytes an input will hold at its peak, from its header (:data:`BYTES_PER_PIXEL_IN_FLIGHT`
    per pixel and byte of depth); files whose header is not read count 4× their size."""
    shape = probe_file(path)
    if shape is not None:
        return shape.pixels * BYTES_PER_PIXEL_IN_FLIGHT * (2 if shape.bits > 8 else 1)
    try:
        return 4 * path.stat().st_size
    except OSError:
        return 0


def total_memory() -> int:
    """The machine's RAM in bytes (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


BATCH_CHOICES = (8, 4, 2, 1)
"""Default batch sizes tried, largest first (larger batches are no faster on a CPU)."""
UNMEASURED_MB_PER_IMAGE = 100.0
"""Working memory assumed per image of a batch for a model never measured (a user's .onnx)."""


def default_batch_size(mb_per_image: float | None, total: int | None = None) -> int:
    """The largest of :data:`BATCH_CHOICES` whose backend working memory (``mb_per_image`` per
    image of the batch, measured per shipped model: ``working_mb_per_image`` in the manifest)
    fits an eighth of RAM: 1 GiB on an 8 GiB laptop, which then keeps a quarter for the images
    in flight and the rest for everything else."""
    room = (total or total_memory()) / 8 / 2**20
    per_image = mb_per_image or UNMEASURED_MB_PER_IMAGE
    return next((b for b in BATCH_CHOICES if b * per_image <= room), 1)


def default_memory_budget(backend_bytes: int = 0, total: int | None = None) -> int:
    """A quarter of the machine's RAM less the backend's working memory, at least 1 GiB."""
    return max(1 << 30, (total or total_memory()) // 4 - backend_bytes)


class MemoryBudget:
    """Bytes of images in flight: taken before an image is decoded, given back once it is
    written or has failed. An image larger than the whole budget may run when nothing else does.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._changed = threading.Condition()

    def _fits(self, cost: int) -> bool:
        return self.used == 0 or self.used + cost <= self.limit

    def try_take(self, cost: int) -> bool:
        with self._changed:
            if not self._fits(cost):
                return False
            self.used += cost
            return True

    def take(self, cost: int) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._fits(cost))
            self.used += cost

    def give(self, cost: int) -> None:
        with self._changed:
            self.used -= cost
            self._changed.notify_all()
