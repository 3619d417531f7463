"""Checkpoint → ONNX: BatchNorm folded, dynamic batch and spatial axes, config in the metadata.

Any registered architecture (:mod:`trainer.models`) exports: every BatchNorm that directly follows
a convolution is folded into it (found by tracing one forward pass), and the module is wrapped with
its normalisation (:class:`WithNormalization`), so the graph takes L in 0..100 and returns ab in
LAB units, and the engine hands every model the same L. The metadata's ``normalization`` is then
the identity.

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

from engine.model_io import IDENTITY_NORMALIZATION, Normalization, image_model_input
from engine.models import file_sha256, set_metadata_config
from engine.models.weights import store_half
from trainer.checkpoint import Checkpoint, load_checkpoint
from trainer.models import WithNormalization

OPSET = 17
PARITY_LIMIT = 5e-3
"""Largest allowed |Δab| (LAB units, any pixel) between ONNX Runtime and PyTorch on the parity
photos. Both run float32, but sum a 10-GMAC network's products in different orders: on this
project's AMD EPYC with torch 2.13 and ONNX Runtime 1.32, `seed-general` differs by 1.15e-3 at its
worst pixel (1e-3 was the limit before). A wrong graph differs by whole units; a just-noticeable
colour difference is ≈ 2.3."""
STORAGE_LIMIT = 2.0
"""Largest allowed |Δab| (LAB units, any pixel of the parity photos) that storing the weights as
float16 may cause: below a just-noticeable colour difference (ΔE ≈ 2.3)."""
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


def fold_batchnorm(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm whose input is a convolution's output
    folded into that convolution (the BatchNorm becomes an identity).

    The pairs are found by running ``example`` (default: one 64×64 input) with forward hooks: a
    BatchNorm is folded when the tensor it receives is the one a ``Conv2d`` just returned and no
    other module read that tensor (the parity check of :func:`export_onnx` catches any other
    consumer). Any architecture's conv→BN pairs fold, whatever its modules.
    """
    folded = copy.deepcopy(model).eval()
    names = {module: name for name, module in folded.named_modules()}
    produced_by: dict[int, nn.Module] = {}
    readers: dict[int, int] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []

    def before(module: nn.Module, inputs: tuple) -> None:
        for tensor in inputs:
            if isinstance(tensor, torch.Tensor):
                keep_alive.append(tensor)
                readers[id(tensor)] = readers.get(id(tensor), 0) + 1
        if isinstance(module, nn.BatchNorm2d) and id(inputs[0]) in produced_by:
            pairs.append((produced_by[id(inputs[0])], module))

    def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        keep_alive.append(output)  # ids are unique among live tensors: keep every one alive
        if type(module) is nn.Conv2d:
            produced_by[id(output)] = module

    keep_alive: list[torch.Tensor] = []
    leaves = [m for m in folded.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(before) for m in leaves]
    handles += [m.register_forward_hook(after) for m in leaves]
    with torch.no_grad():
        folded(example if example is not None else torch.zeros(1, 1, 64, 64))
    for handle in handles:
        handle.remove()
    fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
    conv_outputs = {module: key for key, module in produced_by.items()}
    for conv, bn in pairs:
        if readers.get(conv_outputs[conv], 0) != 1:
            continue  # the convolution's output is read elsewhere too: folding would change it
        _replace(folded, names[conv], fuse(conv, bn))
        _replace(folded, names[bn], nn.Identity())
    return folded


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def parity_inputs(
    photos: Sequence[Path], size: int, norm: Normalization = IDENTITY_NORMALIZATION
) -> np.ndarray:
    """L batches of real photos, resized to ``size`` as the engine does."""
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


def _store_half(
    graph: onnx.ModelProto, config: dict, tmp: Path, inputs: np.ndarray, fp32_ab: np.ndarray
) -> None:
    """Rewrite ``tmp`` with float16-stored weights after checking what the rounding costs."""
    import onnxruntime as ort

    half = store_half(graph)
    session = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"])
    error = np.abs(session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0] - fp32_ab)
    rounding = float(error.max())
    if not rounding < STORAGE_LIMIT:
        raise ExportError(
            f"float16 weight storage changes ab by up to {rounding:.2f} ≥ {STORAGE_LIMIT}; "
            "export with half_weights=False"
        )
    config["weights"] = {
        "stored_as": "float16",
        "max_abs_ab_vs_float32": round(rounding, 4),
        "mean_abs_ab_vs_float32": round(float(error.mean()), 5),
    }
    set_metadata_config(half, config)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(tmp))


def export_onnx(
    checkpoint: Path | str | Checkpoint,
    out: Path | str,
    *,
    source_path: Path | str | None = None,
    parity_photos: Sequence[Path] | None = None,
    opset: int = OPSET,
    half_weights: bool = True,
) -> ExportReport:
    """Export ``checkpoint`` to ``out`` and verify it; see the module docstring. With
    ``half_weights`` the weights are stored as float16 (:mod:`engine.models.weights`): half the
    file, a float32 graph; the rounding's effect is measured and bounded (``STORAGE_LIMIT``)."""
    import onnxruntime as ort

    if not isinstance(checkpoint, Checkpoint):
        source_path = Path(checkpoint)
        checkpoint = load_checkpoint(checkpoint)
    out = Path(out)
    norm = checkpoint.normalization
    reference = checkpoint.build_model()
    model = WithNormalization(fold_batchnorm(reference), norm).eval()
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        raise ExportError("BatchNorm left after folding")
    config = dict(checkpoint.config)
    config["normalization"] = IDENTITY_NORMALIZATION.to_dict()  # inside the graph now
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
        graph.doc_string = "Colorizer: L 0..100 (N×1×H×W) → ab in LAB units (N×2×H×W)"
        set_metadata_config(graph, config)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))

        photos = list(parity_photos or sorted(PARITY_PHOTOS.glob("*.jpg")))
        inputs = parity_inputs(photos, size)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        with torch.no_grad():  # the unfolded module on normalised L: what training ran
            normalised = torch.from_numpy(inputs) / norm.l_scale - norm.l_shift
            expected = reference(normalised).numpy() * norm.ab_scale
        got = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
        worst = float(np.abs(got - expected).max())
        if not worst < PARITY_LIMIT:
            raise ExportError(
                f"parity check failed: max |Δab| {worst:.2e} ≥ {PARITY_LIMIT:.0e} "
                f"between ONNX Runtime and PyTorch on {len(photos)} photos"
            )
        if half_weights:
            _store_half(graph, config, tmp, inputs, got)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(out, file_sha256(out), worst, len(photos))
