"""``engine export``: checkpoints → ONNX, FP16/INT8 variants, TensorRT plans."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.app import export_app
from engine.clitools import console, fail


@export_app.command("onnx", short_help="A checkpoint to ONNX, checked against PyTorch.")
def export_onnx_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="Trained checkpoint (.safetensors from `trainer train`).")
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the ONNX model.")
    ] = Path("model.onnx"),
) -> None:
    """Export a checkpoint to ONNX (opset 17, BN folded, dynamic axes) and check parity with PyTorch."""
    onnx_export = _export_module("onnx")
    try:
        report = onnx_export.export_onnx(checkpoint, out)
    except (onnx_export.ExportError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(
        f"wrote {report.path} (sha256 {report.sha256[:16]}…); parity with PyTorch on "
        f"{report.parity_images} photos: max |Δab| {report.parity_max_abs_ab:.1e}",
        highlight=False,
    )


@export_app.command("fp16", short_help="The FP16 graph and its accuracy against FP32.")
def export_fp16_command(
    model: Annotated[
        Path, typer.Argument(help="FP32 ONNX model (e.g. from `engine export onnx`).")
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the FP16 model.")
    ] = Path("model-fp16.onnx"),
) -> None:
    """FP16 graph (float32 input/output, head in float32) and its accuracy against FP32."""
    _convert_and_compare(model, out, lambda: _precision().convert_fp16(model, out))


@export_app.command("int8", short_help="A calibrated INT8 graph and its accuracy against FP32.")
def export_int8_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model.")],
    calib: Annotated[
        Path,
        typer.Option(
            "--calib", help="Folder of representative photos (the archive's own scans are best)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the INT8 Q/DQ model.")
    ] = Path("model-int8.onnx"),
    count: Annotated[
        int, typer.Option(min=1, help="Photos used for calibration (chosen deterministically).")
    ] = 64,
    method: Annotated[
        str, typer.Option(help="Calibration method: minmax, entropy or percentile.")
    ] = "percentile",
    flavour: Annotated[
        str,
        typer.Option(
            help="cpu (uint8 activations: fast on ONNX Runtime x86) or trt (symmetric int8, zero point 0: TensorRT)."
        ),
    ] = "cpu",
    percentile: Annotated[
        float,
        typer.Option(
            min=50,
            max=100,
            help="percentile method: the share of each tensor's values its range covers.",
        ),
    ] = 99.9,
    cache_dir: Annotated[
        Path,
        typer.Option(
            help="Calibration cache folder (tensor ranges, reused for the same model, photos and method)."
        ),
    ] = Path(".calibration-cache"),
) -> None:
    """INT8 Q/DQ graph calibrated on real photos, and its accuracy against FP32."""
    from calibration.dataset import build_set
    from engine.models import read_model_config

    def convert() -> Path:
        config = read_model_config(model)
        calibration_set = build_set(calib, count, config.input_size, config.normalization)
        console.print(
            f"calibration set: {len(calibration_set)} photos, sha256 {calibration_set.sha256[:16]}…"
        )
        return _precision().convert_int8(
            model, out, calibration_set, cache_dir, method, flavour, percentile
        )

    _convert_and_compare(model, out, convert)


@export_app.command("trt", short_help="Build (or find cached) a TensorRT engine; no GPU needed.")
def export_trt_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="ONNX model: FP32, FP16 (`engine export fp16`) or INT8 with --flavour trt."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Plan file. Default: the engine cache (~/.cache/colorization-engine/trt), keyed by model, runtime, GPU, precision and profile.",
        ),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="tensorrt or tensorrt-rtx. Default: whichever is installed.")
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, help="Batch size the profile is tuned for (opt).")
    ] = 8,
    max_batch: Annotated[int, typer.Option(min=1, help="Largest batch the engine accepts.")] = 32,
    size: Annotated[
        int, typer.Option(min=4, help="Input size in pixels (square, divisible by 4).")
    ] = 256,
    workspace_mb: Annotated[
        int, typer.Option(min=16, help="Builder workspace memory limit in MB.")
    ] = 1024,
) -> None:
    """Build (or find in the cache) a TensorRT engine; no GPU is needed with tensorrt-rtx."""
    from engine.tensorrt import BuildOptions, TensorRTError, build_engine

    try:
        report = build_engine(
            model, out, runtime, BuildOptions(batch, max_batch, size, workspace_mb)
        )
    except TensorRTError as exc:
        fail(str(exc))
    console.print(report.message, highlight=False, soft_wrap=True)


def _export_module(name: str):
    """``export.<name>``, or a one-line error naming the extra to install."""
    try:
        return importlib.import_module(f"export.{name}")
    except ImportError as exc:
        fail(
            f"export needs the train extra ({exc.name} missing): pip install 'colorization-engine[train]'"
        )


def _precision():
    return _export_module("precision")


def _convert_and_compare(model: Path, out: Path, convert) -> None:
    from engine.models import ModelError

    if not model.is_file():
        fail(f"{model}: no such model file")
    try:
        path = convert()
        from export.onnx import PARITY_PHOTOS

        accuracy = _precision().compare(path, model, sorted(PARITY_PHOTOS.glob("*.jpg")))
    except (ValueError, ModelError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(
        f"wrote {path}; against FP32 on {accuracy.photos} photos: max |Δab| {accuracy.max_abs_ab:.2f},"
        f" mean {accuracy.mean_abs_ab:.3f}, RGB PSNR {accuracy.psnr_vs_fp32:.1f} dB",
        highlight=False,
        soft_wrap=True,
    )
