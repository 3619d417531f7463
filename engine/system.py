"""Facts about the machine the engine runs on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name (Linux ``/proc/cpuinfo``), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_info() -> list[dict]:
    """NVIDIA GPUs seen by NVML: name, compute capability, memory, driver (empty without)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [_gpu_facts(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no NVML, no driver, or a device that does not answer
        return []


def _gpu_facts(pynvml, index: int) -> dict:
    """Name, compute capability, memory and driver of GPU ``index``."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    name = pynvml.nvmlDeviceGetName(handle)
    return {
        "name": name.decode() if isinstance(name, bytes) else name,
        "compute_capability": f"{major}.{minor}",
        "memory_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
        "driver": pynvml.nvmlSystemGetDriverVersion(),
    }


def cache_dir(kind: str) -> Path:
    """The user cache folder for ``kind`` (``$XDG_CACHE_HOME/colorization-engine/KIND``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "colorization-engine" / kind
