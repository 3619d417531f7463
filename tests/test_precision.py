"""FP16 and INT8 graphs and the calibration package (ONNX Runtime CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from calibration.dataset import build_set
from calibration.quantize import float_nodes, quantize_int8
from engine.cli import app
from engine.models import resolve_model
from export.precision import compare, convert_fp16, convert_int8
from tests.conftest import PHOTOS, photo_paths

FP32 = resolve_model("seed-general").path
VIVID = resolve_model("vivid-general").path
runner = CliRunner()


def _config(path: Path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["colorization"])


def test_calibration_set_is_deterministic_hashed_and_skips_bad_files(tmp_path):
    folder = tmp_path / "calib"
    shutil.copytree(PHOTOS, folder)
    (folder / "people" / "broken.jpg").write_bytes(b"nope")
    first = build_set(folder, count=6, size=64)
    second = build_set(folder, count=6, size=64)
    assert first.files == second.files and first.sha256 == second.sha256
    assert first.inputs.shape == (6, 1, 64, 64) and "people/broken.jpg" not in first.files
    assert len({f.split("/")[0] for f in build_set(folder, count=24, size=64).files}) == 3
    target = folder / first.files[0]
    target.write_bytes(target.read_bytes() + b"\0")  # same picture, different bytes
    assert build_set(folder, count=6, size=64).sha256 != first.sha256
    assert build_set(folder, count=6, size=32).sha256 != first.sha256


def test_fp16_graph_keeps_io_and_head_in_float32_and_is_accurate(tmp_path):
    half = convert_fp16(FP32, tmp_path / "fp16.onnx")
    model = onnx.load(str(half))
    float_types = {onnx.TensorProto.FLOAT}
    assert {
        t.type.tensor_type.elem_type for t in [*model.graph.input, *model.graph.output]
    } == float_types
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in inits.values()
    head = next(n for n in model.graph.node if n.name.endswith("/head/Conv"))
    assert inits[head.input[1]] == onnx.TensorProto.FLOAT  # the rule: head stays float32
    assert _config(half)["precision"] == "fp16"
    accuracy = compare(half, FP32, photo_paths()[:8])
    assert accuracy.psnr_vs_fp32 >= 45 and accuracy.mean_abs_ab < 0.1


@pytest.fixture(scope="module")
def calib():
    return build_set(PHOTOS, count=8)


def test_int8_trt_flavour_is_symmetric_with_zero_points_zero(tmp_path, calib):
    out = convert_int8(FP32, tmp_path / "int8.onnx", calib, tmp_path / "cache", "minmax", "trt")
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quant
    for node in quant:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    excluded = set(float_nodes(onnx.load(str(FP32))))
    conv_inputs = {n.name: n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert "/model/decoders.1/decoders.1.3/Add" in excluded  # what feeds the float head stays float
    for name in excluded & set(conv_inputs):  # first conv and head keep float weights
        assert inits[conv_inputs[name]].dtype == np.float32
    head_input = next(n for n in model.graph.node if n.name.endswith("/head/Conv")).input[0]
    assert not [
        n for n in model.graph.node if n.op_type == "QuantizeLinear" and head_input in n.input
    ]
    config = _config(out)
    assert config["precision"] == "int8" and config["int8_flavour"] == "trt"
    assert config["calibration"]["set_sha256"] == calib.sha256


def test_int8_cpu_flavour_runs_and_the_cache_is_reused(tmp_path, calib):
    cache = tmp_path / "cache"
    first = quantize_int8(FP32, tmp_path / "a.onnx", calib, cache, "minmax", "cpu")
    assert not first.cache_hit and first.cache.is_file()
    second = quantize_int8(FP32, tmp_path / "b.onnx", calib, cache, "minmax", "cpu")
    assert second.cache_hit
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    model = onnx.load(str(tmp_path / "a.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert any(z.dtype == np.uint8 for z in zero_points)  # uint8 activations for x86 kernels
    accuracy = compare(tmp_path / "a.onnx", FP32, photo_paths()[:4])
    assert accuracy.psnr_vs_fp32 > 25  # measured figures in the README; INT8 is lossy
    with pytest.raises(ValueError, match="unknown calibration method"):
        quantize_int8(FP32, tmp_path / "c.onnx", calib, cache, "magic")


def test_export_fp16_command(tmp_path):
    out = tmp_path / "m16.onnx"
    result = runner.invoke(app, ["export", "fp16", str(FP32), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "RGB PSNR" in result.output and out.is_file()
    missing = runner.invoke(app, ["export", "fp16", str(tmp_path / "nope.onnx")])
    assert missing.exit_code == 2 and "no such model file" in missing.output


def test_vivid_graphs_keep_the_decoding_in_float_and_stay_accurate(tmp_path):
    half = convert_fp16(VIVID, tmp_path / "vivid-fp16.onnx")
    model = onnx.load(str(half))
    producers = {out: node for node in model.graph.node for out in node.output}
    scale = producers[model.graph.output[0].name]  # normalised ab × 128: LAB units (in-graph)
    normalise = producers[scale.input[0]]  # decoded ab / sum of the weights
    decode = producers[normalise.input[0]]
    assert scale.op_type == "Mul" and normalise.op_type == "Div"
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert decode.op_type == "Conv" and inits[decode.input[1]] == onnx.TensorProto.FLOAT
    assert compare(half, VIVID, photo_paths()[:4]).psnr_vs_fp32 >= 45
    kept = float_nodes(onnx.load(str(VIVID)))
    assert {"/model/Exp", "/model/head/Conv", "/model/Conv"} <= set(kept)  # head, mask, decoding
