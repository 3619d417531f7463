"""How much memory the images of a run may hold at once, and the pixel limit.

Peak memory of a run ≈ the backend's (model and arena) + the images in flight, which
:class:`MemoryBudget` bounds by ``--memory-budget``. An image's share is estimated from its
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


def default_memory_budget() -> int:
    """A quarter of the machine's RAM, and at least 1 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8 << 30
    return max(1 << 30, total // 4)


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
