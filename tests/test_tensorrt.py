"""engine.tensorrt: real engine builds with TensorRT for RTX on this CPU (no GPU needed)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX not installed (extra 'trt')")

from calibration.dataset import build_set
from engine.models import resolve_model
from engine.tensorrt import BuildOptions, TensorRTError, build_engine
from export.precision import convert_int8
from tests.conftest import PHOTOS

pytestmark = pytest.mark.trt
SMALL = BuildOptions(batch=1, max_batch=2, size=64, workspace_mb=256)


def test_fp16_engine_is_built_then_found_in_the_cache(tmp_path):
    plan = tmp_path / "fp16.plan"
    model = resolve_model(None, "fp16").path
    first = build_engine(model, plan, "tensorrt-rtx", SMALL)
    assert not first.cache_hit and plan.stat().st_size > 100_000
    key = json.loads(plan.with_suffix(".json").read_text())
    assert key["precision"] == "fp16" and key["runtime"] == "tensorrt-rtx"
    assert key["profile"]["max"] == [2, 1, 64, 64] and len(key["onnx_sha256"]) == 64
    second = build_engine(model, plan, "tensorrt-rtx", SMALL)
    assert second.cache_hit and "cache hit" in second.message
    other = build_engine(model, plan, "tensorrt-rtx", BuildOptions(1, 4, 64, 256))
    assert not other.cache_hit and "another profile" in other.message
    plan.with_suffix(".json").write_text("{corrupt")
    again = build_engine(model, plan, "tensorrt-rtx", BuildOptions(1, 4, 64, 256))
    assert not again.cache_hit and "corrupt" in again.message


def test_int8_for_tensorrt_builds_and_the_cpu_flavour_is_refused_in_one_line(tmp_path):
    calib = build_set(PHOTOS, count=8, size=64)
    fp32 = resolve_model(None).path
    trt_int8 = convert_int8(fp32, tmp_path / "trt.onnx", calib, tmp_path / "c", "minmax", "trt")
    assert (
        build_engine(trt_int8, tmp_path / "int8.plan", "tensorrt-rtx", SMALL).key["precision"]
        == "int8"
    )
    with pytest.raises(TensorRTError, match="cannot parse it") as info:
        build_engine(resolve_model(None, "int8").path, tmp_path / "cpu.plan", "tensorrt-rtx", SMALL)
    message = str(info.value)  # the CPU flavour: uint8 activations, int32 biases
    assert "\n" not in message and ("Int32" in message or "Non-zero zero point" in message)


def test_bad_options_and_runtimes_are_clear_errors(tmp_path):
    with pytest.raises(TensorRTError, match="--batch"):
        BuildOptions(batch=8, max_batch=4)
    with pytest.raises(TensorRTError, match="unknown runtime"):
        build_engine(resolve_model(None).path, tmp_path / "x.plan", "tensorflow")
