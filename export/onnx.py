"""Checkpoint → ONNX: BatchNorm folded, dynamic batch and spatial axes, config in the metadata.

Every export is checked twice before the file appears: ``onnx.checker`` and a parity run of ONNX
Runtime against PyTorch on real photos (max |Δab| after de-normalisation below ``PARITY_LIMIT``).
A failed check raises :class:`ExportError` and leaves no file behind.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from torch import nn

from engine.color import denormalize_ab, image_model_input
from engine.models import file_sha256, set_metadata_config
from trainer.checkpoint import Checkpoint, load_checkpoint
from trainer.model import ConvBlock, ResBlock, UNet

OPSET = 17
PARITY_LIMIT = 1e-3
"""Largest allowed |Δab| (LAB units) between ONNX Runtime and PyTorch on the parity photos."""
PARITY_PHOTOS = Path(__file__).with_name("parity_photos")
INPUT_NAME, OUTPUT_NAME = "L", "ab"


class ExportError(RuntimeError):
    """An export failed one of its checks."""


@dataclass
class ExportReport:
    path: Path
    sha256: str
    parity_max_abs_ab: float
    parity_images: int


def fold_batchnorm(model: UNet) -> UNet:
    """A copy of ``model`` (eval mode) with each BatchNorm folded into the convolution before it."""
    folded = copy.deepcopy(model).eval()
    fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
    for module in folded.modules():
        if isinstance(module, ResBlock):
            module.conv1, module.bn1 = fuse(module.conv1, module.bn1), nn.Identity()
            module.conv2, module.bn2 = fuse(module.conv2, module.bn2), nn.Identity()
        elif isinstance(module, ConvBlock):
            module[0], module[1] = fuse(module[0], module[1]), nn.Identity()
    return folded


def parity_inputs(photos: Sequence[Path], size: int, norm) -> np.ndarray:
    """Normalised L batches of real photos, resized to ``size`` as the engine does."""
    batch = []
    for path in photos:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ExportError(f"{path}: parity photo is not readable")
        batch.append(image_model_input(image, size, norm))
    if not batch:
        raise ExportError("no parity photos")
    return np.stack(batch)


def _torch_export(model: nn.Module, path: Path, size: int, opset: int) -> None:
    """TorchScript-based export (``dynamo=False``): no onnxscript dependency, and for this
    plain convolutional graph it gives the same operators as the dynamo exporter."""
    dynamic = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, size, size),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def export_onnx(
    checkpoint: Path | str | Checkpoint,
    out: Path | str,
    *,
    source_path: Path | str | None = None,
    parity_photos: Sequence[Path] | None = None,
    opset: int = OPSET,
) -> ExportReport:
    """Export ``checkpoint`` to ``out`` and verify it; see the module docstring."""
    import onnxruntime as ort

    if not isinstance(checkpoint, Checkpoint):
        source_path = Path(checkpoint)
        checkpoint = load_checkpoint(checkpoint)
    out = Path(out)
    model = fold_batchnorm(checkpoint.build_model())
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ExportError("BatchNorm left after folding")
    config = dict(checkpoint.config)
    config["source_checkpoint"] = {
        "file": Path(source_path).name if source_path else None,
        "sha256": file_sha256(source_path) if source_path else None,
    }
    config.pop("environment", None)
    size = int(config.get("input_size", 256))
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is chosen on purpose (below)
            warnings.simplefilter("ignore", DeprecationWarning)
            _torch_export(model, tmp, size, opset)
        graph = onnx.load(str(tmp))
        graph.doc_string = "U-Net colorizer: normalised L (N×1×H×W) → normalised ab (N×2×H×W)"
        set_metadata_config(graph, config)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))

        photos = list(parity_photos or sorted(PARITY_PHOTOS.glob("*.jpg")))
        inputs = parity_inputs(photos, size, checkpoint.normalization)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            expected = checkpoint.build_model()(torch.from_numpy(inputs)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
        norm = checkpoint.normalization
        worst = float(np.abs(denormalize_ab(got, norm) - denormalize_ab(expected, norm)).max())
        if not worst < PARITY_LIMIT:
            raise ExportError(
                f"parity check failed: max |Δab| {worst:.2e} ≥ {PARITY_LIMIT:.0e} "
                f"between ONNX Runtime and PyTorch on {len(photos)} photos"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(out, file_sha256(out), worst, len(photos))
