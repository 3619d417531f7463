"""engine.tensorrt: real engine builds with TensorRT for RTX on this CPU (no GPU needed)."""

from __future__ import annotations

import json
import types

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


def test_a_failed_build_says_why_in_one_line(tmp_path):
    no_workspace = BuildOptions(batch=1, max_batch=2, size=64, workspace_mb=0)
    with pytest.raises(TensorRTError, match=r"failed to build an engine: .*workspace") as info:
        build_engine(resolve_model("seed-general").path, tmp_path / "x.plan", "tensorrt-rtx",
                     no_workspace)  # fmt: skip
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.plan").exists()


def test_an_rtx_plan_built_without_a_gpu_is_reused_where_one_is(tmp_path, monkeypatch):
    from engine import tensorrt

    plan = tmp_path / "rtx.plan"
    model = resolve_model("seed-general").path
    monkeypatch.setattr(tensorrt, "gpu_info", lambda: [])
    assert not build_engine(model, plan, "tensorrt-rtx", SMALL).cache_hit
    rtx3060 = {"name": "NVIDIA GeForce RTX 3060", "compute_capability": "8.6"}
    monkeypatch.setattr(tensorrt, "gpu_info", lambda: [rtx3060])
    assert build_engine(model, plan, "tensorrt-rtx", SMALL).cache_hit  # kernels: JIT on device
    assert tensorrt.timing_cache_path(types.SimpleNamespace(__version__="10.9")).name == (
        "timing-10.9-sm86.cache"  # TensorRT's own builder: its timings are the GPU's
    )
