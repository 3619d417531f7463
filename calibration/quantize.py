"""INT8 Q/DQ graphs from an FP32 ONNX model, calibrated on a :class:`CalibrationSet`.

Two flavours, because the two runtimes want different integers:

* ``trt`` — symmetric int8 activations and weights, zero point 0, float biases (what TensorRT's
  explicit quantization accepts);
* ``cpu`` — uint8 activations with a zero point and symmetric int8 per-channel weights (what
  ONNX Runtime's x86 VNNI kernels run fast: ORT fuses these Q/DQ pairs into QLinearConv; with
  symmetric int8 activations it does not, and the graph runs slower than FP32).

The first convolution (one input channel: little work, much error), EfficientNet-Lite's first two
blocks, the output head and the residual Add feeding it stay in float (``float_nodes``).
Calibration ranges were chosen by measurement (RGB PSNR of the colorized photos against FP32,
the general model of the time, 18 photos): min-max 28.4 dB, entropy 28.5, percentile 99.999
33.0, 99.99 34.2, 99.95 34.0 and 99.9 35.7 — the default; all run at about 2× the FP32
images/s here.

Tensor ranges are cached (ONNX Runtime's JSON calibration cache) under a name made of the
model's sha256, the set's sha256 and the method, so a second export skips calibration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from calibration.dataset import CalibrationSet
from engine.models import file_sha256
from engine.models.weights import expand_half, has_half_weights

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
FLAVOURS = ("cpu", "trt")
FLOAT_BLOCKS = ("/model/encoder/_blocks.0/", "/model/encoder/_blocks.1/")
"""EfficientNet-Lite's first two MBConv blocks (the depthwise convolution on the stem's 32
channels, then the first 24-channel block), by their exported names. Quantized, they cost
``effunet-general`` 10 dB against FP32 and 30% of its chroma: RGB PSNR vs FP32 on the parity
photos 29.0 dB and chroma 0.70× FP32's with every block quantized; 36.8 dB and 0.96× with block
0 in float; 39.1 dB and 0.97× with blocks 0 and 1 (the whole decoder in float instead: 28.9 dB,
0.71×). Their cost in speed was within this machine's noise."""


class _SetReader(CalibrationDataReader):
    def __init__(self, calib: CalibrationSet, input_name: str) -> None:
        self._batches = iter(calib.batches(1))
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: batch}


@dataclass
class QuantizeReport:
    path: Path
    cache: Path
    cache_hit: bool
    method: str
    flavour: str


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes left unquantized: the first convolution, EfficientNet-Lite's first blocks
    (:data:`FLOAT_BLOCKS`), the head, and what feeds the head.

    The head is every node from the graph's output back to the first Conv that reads the trunk
    (a Relu): conv → tanh for a regression head; conv → gamut mask → softmax → decoding conv for
    a classification head (quantized logits lose the annealed mean: 11 dB against FP32). The head
    runs in float, so quantizing its input (the last residual Add, through its ReLU) only adds
    error: on the 82 validation photos that one Add cost the landscape model 3.3 dB (33.8 → 37.1
    dB against FP32 when it stays float) for about 5% of the INT8 speed.
    """
    nodes = list(model.graph.node)
    convs = [node for node in nodes if node.op_type == "Conv"]
    if not convs:
        return []
    producers = {out: node for node in nodes for out in node.output}
    keep = {convs[0].name} | {n.name for n in nodes if n.name.startswith(FLOAT_BLOCKS)}
    node = producers.get(model.graph.output[0].name)
    head = convs[-1]
    while node is not None:
        keep.add(node.name)
        source = producers.get(node.input[0])
        if node.op_type == "Conv" and (source is None or source.op_type == "Relu"):
            head = node
            break
        node = source
    feeder = producers.get(head.input[0])
    while feeder is not None and feeder.op_type in ("Relu", "Add"):
        keep.add(feeder.name)
        if feeder.op_type == "Add":
            break
        feeder = producers.get(feeder.input[0])
    return sorted(keep)


def cache_path(cache_dir: Path, model: Path, calib: CalibrationSet, method: str) -> Path:
    return Path(cache_dir) / f"{file_sha256(model)[:16]}-{calib.sha256[:16]}-{method}.json"


def quantize_int8(
    model: Path | str,
    out: Path | str,
    calib: CalibrationSet,
    cache_dir: Path | str,
    method: str = "percentile",
    flavour: str = "cpu",
    input_name: str = "L",
    percentile: float = 99.9,
) -> QuantizeReport:
    """Write the INT8 Q/DQ graph of ``model`` to ``out`` (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use {', '.join(METHODS)}")
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown INT8 flavour {flavour!r}; use cpu or trt")
    model, out = Path(model), Path(out)
    tag = f"{method}{percentile:g}" if method == "percentile" else method
    cache = cache_path(Path(cache_dir), model, calib, tag)
    hit = cache.is_file()
    cache.parent.mkdir(parents=True, exist_ok=True)
    symmetric = flavour == "trt"
    tmp = out.with_name(f".{out.name}.tmp")
    with _float32_weights(model, out) as (source, graph):
        quantize_static(
            str(source),
            str(tmp),
            None if hit else _SetReader(calib, input_name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=float_nodes(graph),
            calibrate_method=METHODS[method],
            extra_options={
                "ActivationSymmetric": symmetric,
                "WeightSymmetric": True,
                "CalibPercentile": percentile,
                # TensorRT refuses DequantizeLinear of an int32 (quantized) bias: keep biases float.
                "QuantizeBias": not symmetric,
            },
            calibration_cache_path=str(cache),
        )
    tmp.replace(out)
    return QuantizeReport(out, cache, hit, tag, flavour)


@contextlib.contextmanager
def _float32_weights(model: Path, beside: Path) -> Iterator[tuple[Path, onnx.ModelProto]]:
    """``model`` itself, or a temporary float32 copy when its weights are stored as float16
    (``engine.models.weights``): the quantizer wants weights as float32 initializers."""
    graph = onnx.load(str(model))
    if not has_half_weights(graph):
        yield model, graph
        return
    copy = beside.with_name(f".{beside.name}.fp32.onnx")
    graph = expand_half(graph)
    onnx.save(graph, str(copy))
    try:
        yield copy, graph
    finally:
        copy.unlink(missing_ok=True)
