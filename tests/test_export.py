"""export.onnx and the shipped models: structure, metadata, parity, integrity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from engine import Colorizer, models
from engine.backends import BackendError, create_backend
from engine.cli import app
from export import onnx as onnx_export
from tests.conftest import photo_paths

CHECKPOINTS = Path(__file__).parents[1] / "trainer" / "checkpoints"
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, onnx_export.ExportReport]:
    out = tmp_path_factory.mktemp("onnx") / "general.onnx"
    report = onnx_export.export_onnx(CHECKPOINTS / "seed-general.safetensors", out)
    return out, report


def test_export_is_checked_folded_dynamic_and_carries_its_config(exported):
    path, report = exported
    assert report.parity_max_abs_ab < onnx_export.PARITY_LIMIT and report.parity_images >= 4
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    assert not [n for n in graph.graph.node if n.op_type == "BatchNormalization"]
    dims = [d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    config = json.loads({p.key: p.value for p in graph.metadata_props}["colorization"])
    assert config["preset"] == "seed" and config["category"] == "general"
    # the graph carries its normalisation: L 0..100 in, ab in LAB units out
    assert config["normalization"] == {"l_scale": 1.0, "l_shift": 0.0, "ab_scale": 1.0}
    assert config["weights"]["stored_as"] == "float16"
    assert config["weights"]["max_abs_ab_vs_float32"] < onnx_export.STORAGE_LIMIT
    assert len(config["source_checkpoint"]["sha256"]) == 64
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"L": np.zeros((3, 1, 96, 132), np.float32)})[0]
    assert out.shape == (3, 2, 96, 132)


def test_failed_parity_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_LIMIT", 0.0)
    out = tmp_path / "model.onnx"
    with pytest.raises(onnx_export.ExportError, match="parity check failed"):
        onnx_export.export_onnx(CHECKPOINTS / "seed-people.safetensors", out)
    assert not list(tmp_path.iterdir())


def test_shipped_models_are_the_committed_checkpoints(exported):
    path, _ = exported
    shipped = models.resolve_model("seed-general").path
    x = np.random.default_rng(0).uniform(0, 100, (2, 1, 64, 64)).astype(np.float32)
    run = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"L": x})[0]
        for p in (path, shipped)
    ]
    np.testing.assert_allclose(run[0], run[1], atol=1e-6)


def test_manifest_lists_verified_models_with_figures():
    shipped = models.shipped_models()
    bases = {f"{f}-{c}" for f in ("seed", "vivid") for c in ("general", "landscape", "people")}
    assert {m.name for m in shipped} == bases | {"effunet-general"}  # variants: made on use
    assert models.default_model_name() == "effunet-general"
    gray = np.full((40, 56), 120, np.uint8)
    for info in shipped:
        models.verify(models.resolve_model(info.name))
        assert Colorizer(info.name).colorize(gray).shape == (40, 56, 3)  # every listed model runs
        figures = info.summary["evaluation"]["no boost"]
        if info.name.startswith("seed-"):  # MSE: closer than gray, but muted
            assert figures["model"]["psnr"] > figures["gray"]["psnr"]
            assert figures["model"]["auc"] > figures["gray"]["auc"]
        elif info.name.startswith("vivid-"):  # vivid: colourful without a boost
            assert figures["model"]["cf"] > 0.85 * figures["gray"]["delta_cf"]
            assert figures["model"]["delta_cf"] < 0.45 * figures["gray"]["delta_cf"]
        else:  # the default: at least gray + 1 dB, and right hues more often than vivid
            assert figures["model"]["psnr"] > figures["gray"]["psnr"] + 1.0
            assert figures["model"]["hue"] > 0.5
            assert "not for commercial use" in info.summary["training"]["data"]


def test_precision_variants_are_made_on_first_use_checked_and_reused(monkeypatch):
    from engine.cli.variants import enable_variant_building

    monkeypatch.setattr(models, "_variant_builder", None)
    with pytest.raises(models.VariantMissingError, match="made on first use") as missing:
        models.resolve_model("seed-landscape", "fp16")
    assert "\n" not in str(missing.value) and "engine models --make" in str(missing.value)
    enable_variant_building()
    spec = models.resolve_model("seed-landscape", "fp16")
    assert spec.name == "seed-landscape-fp16" and spec.path.is_relative_to(models.cache_dir(""))
    record = models.variant_record(spec.path)
    assert record["sha256"] == models.file_sha256(spec.path) == spec.sha256
    assert record["accuracy_vs_fp32"]["psnr_vs_fp32"] > 35
    made = spec.path.stat().st_mtime_ns
    assert models.resolve_model("seed-landscape", "fp16").path.stat().st_mtime_ns == made
    with open(spec.path, "r+b") as f:  # a damaged cached variant is made again
        f.seek(-10, 2)
        f.write(b"0123456789")
    again = models.resolve_model("seed-landscape", "fp16")
    assert models.file_sha256(again.path) == models.variant_record(again.path)["sha256"]
    assert Colorizer("seed-landscape", precision="fp16").describe()["precision"] == "fp16"
    with pytest.raises(models.ModelError, match="unknown precision 'fp8'"):
        models.resolve_model(None, "fp8")


def test_model_resolution_by_name_category_and_path(tmp_path):
    assert models.resolve_model(None).name == "effunet-general"
    # a category: the default family's model of it, else the default model itself
    assert models.resolve_model("people").name == "effunet-general"
    assert models.resolve_model("seed-people").name == "seed-people"
    path = tmp_path / "mine.onnx"
    shutil.copy(models.resolve_model("seed-landscape").path, path)
    spec = models.resolve_model(str(path))
    assert spec.sha256 is None and Colorizer(str(path)).config.category == "landscape"
    with pytest.raises(models.ModelError, match=r"unknown model 'cats'.*seed-general"):
        models.resolve_model("cats")
    with pytest.raises(models.ModelError, match="no such model file"):
        models.resolve_model(str(tmp_path / "missing.onnx"))


def test_tampered_model_is_refused(tmp_path, monkeypatch):
    fake_dir = tmp_path / "models"
    shutil.copytree(
        models.MODELS_DIR, fake_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    with open(fake_dir / "seed-people.onnx", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    monkeypatch.setattr(models, "MODELS_DIR", fake_dir)
    with pytest.raises(models.ModelError, match=r"sha256 .* does not match"):
        Colorizer("seed-people")
    result = runner.invoke(
        app, ["colorize", str(photo_paths()[0]), "-m", "seed-people", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2 and "does not match the manifest" in result.output


def test_non_model_onnx_and_garbage_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not protobuf")
    with pytest.raises(models.ModelError, match="not a readable ONNX model"):
        Colorizer(str(garbage))


def test_backends_by_name():
    path = str(models.resolve_model(None).path)
    assert create_backend("auto", path).name == "ort"
    with pytest.raises(BackendError, match="unknown backend 'cuda'; choose one of: auto, ort, trt"):
        create_backend("cuda", path)
    with pytest.raises(BackendError, match=r"backend 'trt' cannot run here: ") as info:
        create_backend("trt", path)  # this machine has no NVIDIA GPU
    assert "\n" not in str(info.value)


def test_models_command_json():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    assert [e["default"] for e in entries].count(True) == 1
    assert all(len(e["sha256"]) == 64 for e in entries)


def test_export_command(tmp_path):
    out = tmp_path / "m.onnx"
    result = runner.invoke(
        app, ["export", "onnx", str(CHECKPOINTS / "seed-landscape.safetensors"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file() and "parity with PyTorch" in result.output
    bad = runner.invoke(app, ["export", "onnx", str(tmp_path / "nope.safetensors")])
    assert bad.exit_code == 2 and "no such checkpoint" in bad.output


def test_torch_backend_matches_ort_on_the_cpu():
    torch_colorizer = Colorizer("vivid-people", backend="torch")
    ort_colorizer = Colorizer("vivid-people")
    x = np.random.default_rng(1).uniform(0, 100, (2, 1, 64, 96)).astype(np.float32)
    delta = np.abs(torch_colorizer.infer(x) - ort_colorizer.infer(x))
    # the ONNX file stores its (folded) weights as float16: within the storage bound
    assert delta.max() < onnx_export.STORAGE_LIMIT and delta.mean() < 0.05
    assert torch_colorizer.describe()["checkpoint"].endswith("vivid-people.safetensors")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        Colorizer("seed-people", backend="torch", precision="fp16")
    with pytest.raises(ValueError, match="runs fp32, fp16, bf16, not int8"):
        Colorizer("seed-people", backend="torch", precision="int8")


def test_torch_backend_needs_the_source_checkpoint(tmp_path):
    from engine.backends.torch import find_checkpoint

    found = find_checkpoint(models.resolve_model("vivid-landscape").path)
    assert found.name == "vivid-landscape.safetensors"
    exported = tmp_path / "m.onnx"
    from export.onnx import export_onnx
    from trainer.checkpoint import load_checkpoint, save_checkpoint

    other = tmp_path / "ck.safetensors"
    ckpt = load_checkpoint(CHECKPOINTS / "seed-people.safetensors")
    ckpt.config = {**ckpt.config, "category": "mine"}  # same weights, a checkpoint not shipped
    save_checkpoint(other, ckpt)
    export_onnx(other, exported)
    with pytest.raises(ValueError, match="is not installed"):
        find_checkpoint(exported)
    assert find_checkpoint(exported, [tmp_path]) == other


def test_gpu_providers_are_asked_for_first_with_caches(tmp_path):
    from engine.backends.ort import select_providers

    assert select_providers(["CPUExecutionProvider"], tmp_path) == ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    # onnxruntime-gpu lists TensorRT even without its libraries: then it is not asked for
    assert select_providers(gpu, tmp_path, tensorrt_present=False) == [
        ("CUDAExecutionProvider", {}), "CPUExecutionProvider",
    ]  # fmt: skip
    chosen = select_providers(gpu, tmp_path, tensorrt_present=True)
    assert [c[0] if isinstance(c, tuple) else c for c in chosen] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider",
    ]  # fmt: skip
    from engine.backends.ort import fallback_note

    assert fallback_note(chosen, ["TensorrtExecutionProvider", "CPUExecutionProvider"]) is None
    assert fallback_note(chosen, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (
        "asked for TensorrtExecutionProvider, fell back to CUDAExecutionProvider"
    )
    trt_options = chosen[0][1]
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_engine_cache_path"] == str(
        tmp_path
    )
