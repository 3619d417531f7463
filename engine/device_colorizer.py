"""The colorizer's stages on a torch device: decoded pixels stay there until the image is done.

:class:`DeviceStages` replaces :class:`~engine.colorizer.Colorizer`'s numpy pre- and
post-processing when the backend is torch on CUDA (``--backend torch``): ``preprocess`` uploads
the decoded pixels once and makes the model input there (:mod:`engine.gpu_color`), ``infer``
hands the batch to the backend's ``run_tensor`` (no copy back), ``postprocess`` merges the
predicted ab with the pixels' full-resolution L, fits the gamut and converts to the output's
samples on the device; only the finished image comes back to the CPU, where the pipeline's
threads encode it. :func:`decode_jpegs` decodes JPEG files on the GPU (nvJPEG) when torchvision
has it. torch is imported here only; the CPU path never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine import gpu_color
from engine.color import convert_depth
from engine.model_io import Normalization


class DeviceStages:
    """Pre-processing, batching, inference and post-processing on ``backend.device``."""

    def __init__(self, backend, size: int, normalization: Normalization,
                 boost: tuple[float, float]) -> None:  # fmt: skip
        self.backend = backend
        self.device = backend.device
        self.size = size
        self.normalization = normalization
        self.boost = boost

    def upload(self, pixels: np.ndarray) -> torch.Tensor:
        """Gray or BGR(A) pixels (uint8/uint16) → the device; alpha is dropped (the CPU keeps
        it for the output), 16-bit samples travel as int32."""
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        if pixels.dtype == np.uint16:
            pixels = pixels.astype(np.int32)
        host = torch.from_numpy(np.ascontiguousarray(pixels))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)

    def model_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels on the device → the model's input ``1×s×s`` (normalised as the model asks)."""
        L = gpu_color.luminance(pixels[None])
        x = gpu_color.model_input(L, self.size)[0]
        norm = self.normalization
        return x / norm.l_scale - norm.l_shift

    def preprocess(self, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        on_device = self.upload(pixels)
        return on_device, self.model_input(on_device)

    @staticmethod
    def stack(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(inputs))

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Model inputs ``N×1×s×s`` → ab ``N×2×s×s`` in LAB units, on the device."""
        return self.backend.run_tensor(batch) * self.normalization.ab_scale

    def postprocess(self, source: torch.Tensor, ab: torch.Tensor, dtype: np.dtype,
                    alpha: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Pixels and ab (``2×s×s``, LAB units) on the device → the output image on the CPU:
        BGR of ``dtype`` (uint8 or uint16), BGRA with ``alpha``."""
        dtype = np.dtype(dtype)
        peak = float(np.iinfo(dtype).max)
        ab = torch.as_tensor(ab, device=self.device)
        bgr = gpu_color.colorize_output(source[None], ab[None], self.boost, peak)[0]
        samples = bgr.round_().clamp_(0, peak)
        out = samples.to(torch.uint8 if dtype == np.uint8 else torch.int32).cpu().numpy()
        out = out.astype(dtype, copy=False)
        if alpha is not None:
            out = np.dstack([out, convert_depth(alpha, dtype)])
        return out


def decode_jpegs(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
    """JPEG files' bytes → BGR ``H×W×3`` uint8 tensors on ``device``, decoded there by nvJPEG
    (``torchvision.io.decode_jpeg``) on CUDA; elsewhere, or without torchvision, by OpenCV on
    the CPU and uploaded. Gray JPEGs come back as three equal channels."""
    import cv2

    if device.type == "cuda":
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:
            pass
        else:
            encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
            images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
            return [image.permute(1, 2, 0).flip(-1).contiguous() for image in images]
    out = []
    for data in datas:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        out.append(torch.from_numpy(image).to(device))
    return out
