"""Float32 models whose weights are stored as float16: half the file, the same float32 graph.

:func:`store_half` replaces each large float32 initializer by a float16 one and a ``Cast`` back to
float32; ONNX Runtime and TensorRT fold those casts when they load the model, so inference runs
in float32 exactly as if the rounded weights had been stored in float32. :func:`expand_half` is
the inverse (plain float32 initializers again), for tools that want weights as initializers (the
INT8 quantizer, the FP16 converter).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

HALF_SUFFIX = "__float16"
_FP16_MAX = float(np.finfo(np.float16).max)


def store_half(model: onnx.ModelProto, min_elements: int = 64) -> onnx.ModelProto:
    """A copy of ``model`` with float32 initializers of at least ``min_elements`` values (and
    within float16's range) stored as float16 behind a Cast to float32."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept, casts = [], []
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if (
            init.data_type != onnx.TensorProto.FLOAT
            or values.size < min_elements
            or not np.all(np.abs(values) <= _FP16_MAX)
        ):
            kept.append(init)
            continue
        kept.append(numpy_helper.from_array(values.astype(np.float16), init.name + HALF_SUFFIX))
        casts.append(
            helper.make_node(
                "Cast", [init.name + HALF_SUFFIX], [init.name], to=onnx.TensorProto.FLOAT,
                name=f"{init.name}{HALF_SUFFIX}_cast",
            )
        )  # fmt: skip
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return out


def expand_half(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with the float16-stored weights of :func:`store_half` as float32
    initializers again (a model without any is copied unchanged)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    halves = {i.name: i for i in graph.initializer if i.name.endswith(HALF_SUFFIX)}
    if not halves:
        return out
    expanded, casts = [], []
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves:
            values = numpy_helper.to_array(halves[node.input[0]]).astype(np.float32)
            expanded.append(numpy_helper.from_array(values, node.output[0]))
            casts.append(node)
    for node in casts:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.initializer if i.name not in halves or i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + expanded)
    return out


def has_half_weights(model: onnx.ModelProto) -> bool:
    return any(i.name.endswith(HALF_SUFFIX) for i in model.graph.initializer)
