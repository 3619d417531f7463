"""PyTorch backend: the model's source checkpoint on PyTorch — the GPU reference and GPU path.

It runs channels-last in FP32 (IEEE, or TF32 on CUDA with ``tf32``), or in FP16 (CUDA) or BF16
autocast: the torch backend always runs the FP32 checkpoint and ``precision`` picks the autocast
type. With ``cuda_graphs`` a CUDA graph is captured per batch shape and replayed. Besides
``run`` (numpy in and out, the backend contract) it has ``run_tensor``, which keeps the batch on
the device: :mod:`engine.device_colorizer` uses it so a CUDA run goes from decoded pixels to the
finished image without leaving the GPU. The weights come from the safetensors checkpoint the
ONNX model was exported from: its sha256 is in the model's metadata, and the checkpoint is looked
up among the trainer's shipped checkpoints (and ``checkpoint_dirs``). torch and the trainer are
imported here only, so the engine itself never needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.backends.options import BackendOptions
from engine.model_io import IDENTITY_NORMALIZATION, Normalization
from engine.models import file_sha256, onnx_config

TORCH_PRECISIONS = ("fp32", "fp16", "bf16")


def fp32_precisions(tf32: bool) -> dict[str, str]:
    """torch's FP32 precision settings for the ``tf32`` option: convolutions (all of the model)
    follow it; matrix products (the GPU colour stages: resize, luminance, gamut test) stay IEEE,
    so that TF32 never changes the colour maths."""
    return {"conv": "tf32" if tf32 else "ieee", "matmul": "ieee"}


class TorchBackend:
    name = "torch"

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            import torch  # noqa: F401

            import trainer.checkpoint  # noqa: F401
        except ImportError:
            return "needs PyTorch and the trainer: pip install 'colorization-engine[train]'"
        return None

    def __init__(
        self,
        model_path: str,
        options: BackendOptions | None = None,
        checkpoint_dirs: list[Path] | None = None,
    ) -> None:
        import torch

        from trainer.checkpoint import load_checkpoint
        from trainer.models import WithNormalization

        self.options = options or BackendOptions()
        config = onnx_config(Path(model_path))
        checkpoint = find_checkpoint(Path(model_path), checkpoint_dirs, config)
        device = self.options.device
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.options.threads and self.device.type == "cpu":
            torch.set_num_threads(self.options.threads)
        self.precision = self.options.precision
        if self.precision not in TORCH_PRECISIONS:
            raise ValueError(
                f"the torch backend runs {', '.join(TORCH_PRECISIONS)}, not {self.precision}"
            )
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("torch fp16 needs a CUDA GPU; on a CPU use fp32 or bf16")
        if self.device.type == "cuda":
            modes = fp32_precisions(self.options.tf32)
            torch.backends.cudnn.conv.fp32_precision = modes["conv"]
            torch.backends.cuda.matmul.fp32_precision = modes["matmul"]
        loaded = load_checkpoint(checkpoint)
        model = loaded.build_model()
        if Normalization.from_dict(config.get("normalization", {})) == IDENTITY_NORMALIZATION:
            model = WithNormalization(model, loaded.normalization)  # as the exported graph
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.checkpoint = checkpoint
        self.use_graphs = self.options.cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[tuple[int, ...], tuple] = {}
        self._torch = torch

    def _autocast(self):
        torch = self._torch
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        # no autocast cache: a CUDA graph must not capture the cast weights' cache
        return torch.autocast(self.device.type, dtype, enabled=dtype is not None,
                              cache_enabled=False)  # fmt: skip

    def _forward(self, x):
        with self._torch.inference_mode(), self._autocast():
            return self.model(x)

    def _replay(self, x):
        """The model through a CUDA graph captured for ``x``'s shape (captured on first use)."""
        torch = self._torch
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up on a side stream, as capture requires
                    self._forward(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    def run_tensor(self, x):
        """Model inputs ``N×1×s×s`` (a float tensor, any device) → ab ``N×2×s×s`` float32 on
        this backend's device."""
        torch = self._torch
        x = x.to(self.device, torch.float32, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        out = self._replay(x) if self.use_graphs else self._forward(x)
        return out.float()

    def run(self, L: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(L, np.float32))
        return self.run_tensor(x).cpu().numpy()

    def close(self) -> None:
        """Drop the captured graphs (and their memory pools' hold)."""
        self._graphs.clear()

    def describe(self) -> dict:
        torch = self._torch
        return {
            "backend": self.name,
            "runtime": f"torch {torch.__version__}",
            "device": str(self.device),
            "precision": self.precision,
            "tf32": bool(self.options.tf32 and self.device.type == "cuda"),
            "cuda_graphs": self.use_graphs,
            "checkpoint": str(self.checkpoint),
            **self.options.describe(),
        }


def find_checkpoint(
    model: Path, extra_dirs: list[Path] | None = None, config: dict | None = None
) -> Path:
    """The safetensors checkpoint an ONNX model was exported from (matched by sha256).

    ``config`` is the model's metadata config when the caller has already read it.
    """
    import trainer

    source = (config if config is not None else onnx_config(model)).get("source_checkpoint") or {}
    wanted = source.get("sha256")
    if not wanted:
        raise ValueError(f"{model}: its metadata names no source checkpoint")
    dirs = [*(extra_dirs or []), Path(trainer.__file__).parent / "checkpoints"]
    for directory in dirs:
        for path in sorted(Path(directory).glob("*.safetensors")):
            if file_sha256(path) == wanted:
                return path
    raise ValueError(
        f"{model}: its source checkpoint {source.get('file')} (sha256 {wanted[:12]}…) is not "
        "installed; the torch backend needs it"
    )
