"""Peak memory while something runs: process RSS, and device memory from NVML on NVIDIA GPUs.

Both are sampled by a background thread (default every 5 ms), so the peak is that of the
measured work, not of the whole process's life (as ``ru_maxrss`` would be).
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _nvml_handle(index: int):
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # no NVML, no driver or no GPU
        return None, None


class PeakMemory:
    """Context manager: ``with PeakMemory() as peak: …`` then ``peak.rss_mb``, ``peak.vram_mb``.

    ``vram_mb`` is the device's used memory (all processes) from NVML, or None without a GPU.
    """

    def __init__(self, interval_s: float = 0.005, gpu_index: int = 0) -> None:
        self.interval_s = interval_s
        self._nvml, self._handle = _nvml_handle(gpu_index)
        self._stop = threading.Event()
        self._rss = 0
        self._vram: int | None = None

    def _sample(self) -> None:
        self._rss = max(self._rss, rss_bytes())
        if self._handle is not None:
            used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
            self._vram = max(self._vram or 0, used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def rss_mb(self) -> float:
        return self._rss / 2**20

    @property
    def vram_mb(self) -> float | None:
        return None if self._vram is None else self._vram / 2**20
