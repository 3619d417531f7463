"""PyTorch backend: the model's source checkpoint on PyTorch — the GPU reference.

It runs channels-last, FP32 or — on CUDA — FP16 autocast; the precision is the model's own
(``--precision fp16`` resolves the FP16 variant, whose source checkpoint is the same), and a
CPU runs FP32 only. The weights come from the safetensors checkpoint the
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
        self.precision = config.get("precision", self.options.precision)
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"the torch backend runs fp32 or fp16 models, not {self.precision}")
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("torch fp16 needs a CUDA GPU; on a CPU use fp32")
        loaded = load_checkpoint(checkpoint)
        model = loaded.build_model()
        if Normalization.from_dict(config.get("normalization", {})) == IDENTITY_NORMALIZATION:
            model = WithNormalization(model, loaded.normalization)  # as the exported graph
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.checkpoint = checkpoint
        self._torch = torch

    def run(self, L: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(L, np.float32))
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, torch.float16, enabled=self.precision == "fp16"),
        ):
            out = self.model(x)
        return out.float().cpu().numpy()

    def describe(self) -> dict:
        torch = self._torch
        return {
            "backend": self.name,
            "runtime": f"torch {torch.__version__}",
            "device": str(self.device),
            "precision": self.precision,
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
