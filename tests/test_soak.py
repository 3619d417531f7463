"""Slow (``pytest -m slow``): the 2,000-file soak and a 300-megapixel scan, with their bounds."""

from __future__ import annotations

import pytest

from benchmarks.large_image import measure
from benchmarks.soak import soak
from engine.memory import BYTES_PER_PIXEL_IN_FLIGHT


@pytest.mark.slow
def test_soak_of_2000_files_keeps_memory_flat(tmp_path):
    result = soak(2000, 200, tmp_path)
    assert result["done"] == 2000 and result["failed"] == 0
    assert result["growth_after_warmup"] < 0.10
    assert result["peak_growth_after_warmup"] < 0.10


@pytest.mark.slow
def test_a_20000_by_15000_scan_stays_within_the_memory_bound(tmp_path):
    figures = measure(20000, 15000, tmp_path)
    assert figures["exit_status"] == [0, 0]
    assert figures["large_image_bytes_per_pixel"] < BYTES_PER_PIXEL_IN_FLIGHT
