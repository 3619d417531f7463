"""Inference backends behind one small protocol, created by name with one options object.

A backend takes a float32 batch ``N×1×H×W`` of L and returns ``N×2×H×W`` ab, in the model's own
units (every model exported since the architecture registry: L 0..100 in, ab in LAB units out).
``create_backend("auto", …)`` picks the best one available on this machine. What the command line
or the Python API asks for (size, batch, threads, precision, device) reaches every backend as one
:class:`BackendOptions`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from engine.backends.options import BackendOptions
from engine.system import available_cores

__all__ = ["Backend", "BackendError", "BackendOptions", "available_cores", "create_backend"]


class BackendError(RuntimeError):
    """A backend is unknown or cannot run here; the message says what to install or use."""


class Backend(Protocol):
    name: str

    def run(self, L: np.ndarray) -> np.ndarray:
        """Normalised L ``N×1×H×W`` float32 → normalised ab ``N×2×H×W`` float32."""
        ...

    def describe(self) -> dict:
        """Facts for logs and benchmarks (runtime version, providers, threads)."""
        ...


_IMPLEMENTATIONS = {
    "ort": "engine.backends.ort:OrtBackend",
    "trt": "engine.backends.trt:TrtBackend",
    "torch": "engine.backends.torch:TorchBackend",
}
AUTO_ORDER = ("trt", "ort")
"""Preference of ``--backend auto``, best first: TensorRT where a GPU and TensorRT meet."""


def backend_names() -> list[str]:
    return ["auto", *_IMPLEMENTATIONS]


def _load_class(name: str) -> type:
    module_name, _, class_name = _IMPLEMENTATIONS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def availability() -> dict[str, str | None]:
    """Backend name → None when usable here, else the reason it is not."""
    status: dict[str, str | None] = {}
    for name in _IMPLEMENTATIONS:
        try:
            reason = _load_class(name).unavailable_reason()
        except ImportError as exc:
            reason = f"cannot import: {exc}"
        status[name] = reason
    return status


def create_backend(name: str, model_path: str, options: BackendOptions | None = None) -> Backend:
    """Create backend ``name`` (or the best available for ``auto``) on an ONNX model file."""
    if name == "auto":
        status = availability()
        usable = [n for n in AUTO_ORDER if status.get(n) is None]
        if not usable:
            raise BackendError(f"no backend can run here: {status}")
        name = usable[0]
    if name not in _IMPLEMENTATIONS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}")
    cls = _load_class(name)
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendError(f"backend {name!r} cannot run here: {reason}")
    return cls(model_path, options or BackendOptions())
