"""FP16 and INT8 graphs from an FP32 ONNX model, with their accuracy measured against it.

FP16: every tensor float16 except the graph's float32 input and output and the nodes that
``FP32_RULE`` keeps in float32. INT8: Q/DQ graphs from ``calibration.quantize``. Both carry the
source model's metadata plus ``precision`` (and the calibration record for INT8).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx

from calibration.dataset import CalibrationSet
from calibration.quantize import quantize_int8
from engine.colorizer import Colorizer
from engine.models import file_sha256, metadata_config, set_metadata_config
from engine.models.weights import expand_half
from trainer.metrics import psnr

FP32_RULE = ("Tanh",)
"""Op types kept in float32 in FP16 graphs, with the Conv that feeds the output: the head maps
wide pre-activations through tanh, where float16's 11-bit mantissa costs the most in ab."""


def _head_nodes(model: onnx.ModelProto) -> list[str]:
    """The Conv feeding the graph's output (through Tanh) — kept in float32."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names, tensor = [], model.graph.output[0].name
    while tensor in producers:
        node = producers[tensor]
        names.append(node.name)
        if node.op_type == "Conv":
            break
        tensor = node.input[0]
    return names


def _float32_outputs(model: onnx.ModelProto) -> None:
    """Undo the converter's final Cast to float16 after a node it kept in float32.

    With the output node block-listed, onnxconverter-common still casts its float32 result to
    float16 and declares the output float16; the engine's protocol is float32 out.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    for output in model.graph.output:
        cast = producers.get(output.name)
        if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 or cast is None:
            continue
        if cast.op_type != "Cast" or cast.input[0] not in producers:
            continue
        source = producers[cast.input[0]]
        source.output[list(source.output).index(cast.input[0])] = output.name
        model.graph.node.remove(cast)
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT


def convert_fp16(model_path: Path | str, out: Path | str) -> Path:
    """Write the FP16 graph of an FP32 model (float32 input/output)."""
    from onnxconverter_common import float16

    model = expand_half(onnx.load(str(model_path)))  # float16-stored weights: float32 again
    config = metadata_config(model)
    with warnings.catch_warnings():  # tiny weights truncated to fp16's range: expected
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(FP32_RULE),
            node_block_list=_head_nodes(model),
        )  # fmt: skip
    _float32_outputs(half)
    set_metadata_config(half, {**config, "precision": "fp16", "fp32_rule": list(FP32_RULE)})
    onnx.checker.check_model(half)
    out = Path(out)
    onnx.save(half, str(out))
    return out


def convert_int8(
    model_path: Path | str,
    out: Path | str,
    calib: CalibrationSet,
    cache_dir: Path | str,
    method: str = "percentile",
    flavour: str = "cpu",
    percentile: float = 99.9,
) -> Path:
    """Write the INT8 Q/DQ graph (see ``calibration.quantize``) with its calibration record."""
    report = quantize_int8(
        model_path, out, calib, cache_dir, method, flavour, percentile=percentile
    )
    model = onnx.load(str(report.path))
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]  # the quantizer's leftovers
    for initializer in unused:
        model.graph.initializer.remove(initializer)
    config = metadata_config(onnx.load(str(model_path)))
    set_metadata_config(
        model,
        {
            **config,
            "precision": "int8",
            "int8_flavour": flavour,
            "calibration": {
                "method": report.method,
                "count": len(calib),
                "set_sha256": calib.sha256,
                "fp32_model_sha256": file_sha256(model_path),
            },
        },
    )
    onnx.save(model, str(report.path))
    return report.path


@dataclass
class Accuracy:
    """A reduced-precision model against its FP32 source on the same photos."""

    max_abs_ab: float
    mean_abs_ab: float
    psnr_vs_fp32: float
    photos: int

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def compare(reduced: Path | str, reference: Path | str, photos: list[Path]) -> Accuracy:
    """|Δab| of the predictions (LAB units) and RGB PSNR of the colorized photos."""
    low, ref = Colorizer(str(reduced)), Colorizer(str(reference))
    deltas, psnrs = [], []
    for path in photos:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        L, x = ref.preprocess(gray)
        ab_ref, ab_low = ref.infer(x[None])[0], low.infer(x[None])[0]
        deltas.append(np.abs(ab_low - ab_ref) * ref.config.normalization.ab_scale)
        psnrs.append(
            psnr(low.postprocess(L, ab_low, gray.dtype), ref.postprocess(L, ab_ref, gray.dtype))
        )
    stacked = np.stack(deltas)
    return Accuracy(float(stacked.max()), float(stacked.mean()), float(np.mean(psnrs)), len(photos))
