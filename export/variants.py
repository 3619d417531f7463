"""FP16 and INT8 variants of the shipped models, made on first use into the user cache.

:func:`build_variant` is the builder the CLI registers with ``engine.models.set_variant_builder``:
from the shipped float32 model (the converters expand its float16-stored weights) it makes the
FP16 graph (``export.precision.convert_fp16``) or the INT8 Q/DQ graph calibrated on the package's
own photos (``calibration/photos``), measures it against float32 on the parity photos, refuses it
below ``MIN_PSNR_VS_FP32`` and writes it atomically with a sidecar JSON (sha256, accuracy,
calibration), which ``engine.models`` checks at every load.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from engine.model_io import SEED_NORMALIZATION, Normalization
from engine.models import ModelError, ModelSpec, file_sha256, onnx_config
from engine.outputs import write_atomic

CALIBRATION_PHOTOS = Path(__file__).resolve().parents[1] / "calibration" / "photos"
PARITY_PHOTOS = Path(__file__).with_name("parity_photos")
MIN_PSNR_VS_FP32 = {"fp16": 35.0, "int8": 25.0}
"""A variant whose colorized parity photos are further than this (RGB PSNR, dB) from float32's
is not kept."""


def calibration_count(config: dict) -> int:
    """Photos to calibrate on: 8 for a classes head at full resolution (ONNX Runtime's
    calibrator keeps every 222-channel tensor of every photo, ≈ 350 MB each at 256²), else 16."""
    architecture = config.get("architecture", {})
    full_res_classes = (
        architecture.get("head") == "classes" and architecture.get("name", "unet") == "unet"
    )
    return 8 if full_res_classes else 16


def build_variant(base: ModelSpec, precision: str, target: Path) -> ModelSpec:
    """Make the ``precision`` variant of the shipped model ``base`` at ``target`` (see above)."""
    from calibration.dataset import build_set
    from export.precision import compare, convert_fp16, convert_int8

    if precision not in MIN_PSNR_VS_FP32:
        raise ModelError(f"no {precision} variant can be made; use fp16 or int8")
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    config = onnx_config(base.path)
    norm = Normalization.from_dict(config.get("normalization", SEED_NORMALIZATION.to_dict()))
    record: dict = {"base": base.name, "base_sha256": base.sha256, "precision": precision}
    with tempfile.TemporaryDirectory(prefix="variant-", dir=target.parent) as work:
        made = Path(work) / "variant.onnx"
        if precision == "fp16":
            convert_fp16(base.path, made)
        else:
            calib = build_set(CALIBRATION_PHOTOS, count=calibration_count(config), norm=norm)
            convert_int8(base.path, made, calib, Path(work) / "ranges", "percentile")
            record["calibration"] = {
                "method": "percentile 99.9", "photos": len(calib), "set_sha256": calib.sha256,
            }  # fmt: skip
        accuracy = compare(made, base.path, sorted(PARITY_PHOTOS.glob("*.jpg")))
        record["accuracy_vs_fp32"] = accuracy.to_dict()
        if accuracy.psnr_vs_fp32 < MIN_PSNR_VS_FP32[precision]:
            raise ModelError(
                f"the {precision} variant of {base.name} is too far from float32 "
                f"({accuracy.psnr_vs_fp32:.1f} dB < {MIN_PSNR_VS_FP32[precision]} dB); not kept"
            )
        record["sha256"] = file_sha256(made)
        record["seconds"] = round(time.perf_counter() - started, 1)
        os.replace(made, target)
    write_atomic(target.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())
    return ModelSpec(target, f"{base.name}-{precision}", record["sha256"])
