"""Latency statistics: percentiles and throughput from timed runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between order statistics
    (NumPy's default, the same as Excel's PERCENTILE.INC).

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    if not len(samples):
        raise ValueError("no samples")
    return float(np.percentile(np.asarray(samples, np.float64), q))


def latency_summary(seconds: Sequence[float], items_per_run: int) -> dict[str, float]:
    """p50/p90/p99 latency per run in ms and throughput in items/s (from the median run)."""
    p50 = percentile(seconds, 50)
    return {
        "runs": len(seconds),
        "p50_ms": p50 * 1000,
        "p90_ms": percentile(seconds, 90) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "mean_ms": float(np.mean(seconds)) * 1000,
        "images_per_s": items_per_run / p50 if p50 > 0 else 0.0,
    }
