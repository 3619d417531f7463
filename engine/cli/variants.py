"""FP16/INT8 variants made on first use: the CLI registers the builder of ``export.variants``."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from engine.clitools import console
from engine.models import ModelSpec, set_variant_builder


def _build_quietly(base: ModelSpec, precision: str, target: Path) -> ModelSpec:
    """``export.variants.build_variant`` with one line of our own instead of the converters'
    and ONNX Runtime's quantizer's prints and log lines."""
    from export.variants import build_variant

    console.print(
        f"making the {precision} variant of {base.name} once (into {target.parent}) …",
        highlight=False,
        soft_wrap=True,
    )
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)  # the quantizer's sessions: no C++ warnings on the console
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            spec = build_variant(base, precision, target)
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # ONNX Runtime's default: warnings
    record = target.with_suffix(".json")
    console.print(f"made {target.name} (record: {record.name})", highlight=False, soft_wrap=True)
    return spec


def enable_variant_building() -> None:
    """Let ``--precision fp16|int8`` of a shipped model make its variant when it is missing."""
    set_variant_builder(_build_quietly)
