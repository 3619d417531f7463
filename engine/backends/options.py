"""The one options object that carries what a caller asks of a backend."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackendOptions:
    """What a backend is asked for; each backend takes what applies to it (``describe`` says)."""

    size: int | None = None
    """Square input size the backend must run; None: the model's own (its metadata)."""
    batch: int = 8
    """The batch the caller will mostly send (TensorRT's optimisation profile is tuned to it)."""
    max_batch: int = 32
    """The largest batch the backend must accept."""
    threads: int | None = None
    """CPU threads (ONNX Runtime intra-op, torch); None: the cores this process may use."""
    precision: str = "fp32"
    """The model file's precision (fp32, fp16, int8), or what the torch backend runs."""
    device: str | None = None
    """'cpu', 'cuda' or 'cuda:N' where a backend can choose; None: its own choice."""
    tf32: bool = False
    """torch on CUDA, fp32: let convolutions and matmuls use TF32 tensor cores (faster, ~1e-3
    relative error); off by default so fp32 means IEEE fp32."""
    cuda_graphs: bool = False
    """torch on CUDA: capture one CUDA graph per batch shape and replay it (less launch
    overhead at small batches; memory held per captured shape)."""

    def replace(self, **changes: object) -> BackendOptions:
        return replace(self, **changes)

    def describe(self) -> dict:
        """The options a backend reports in its ``describe()``."""
        return {"size": self.size, "batch": self.batch, "max_batch": self.max_batch}
