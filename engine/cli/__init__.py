"""The ``engine`` command line: the composition root of the project.

A module per command group, each registering its commands on :data:`engine.cli.app.app`:

=================  ==========================================================================
module             commands
=================  ==========================================================================
``colorize``       ``engine colorize`` (local pipeline or ``--ray``)
``report``         ``engine report`` (the HTML before/after page of a run)
``benchmark``      ``engine benchmark`` (reaches ``benchmarks``)
``models``         ``engine models`` (shipped models; ``--make`` a variant)
``export``         ``engine export onnx|fp16|int8|trt`` (reaches ``export``, ``calibration``)
``info``           ``engine info``
=================  ==========================================================================

This package is the only part of ``engine`` that may import ``export``, ``calibration`` and
``benchmarks`` (lazily, inside commands, so a plain install without the train extra still runs
``engine colorize``); it registers ``export.variants.build_variant`` so FP16/INT8 variants are
made on first use (:func:`engine.cli.variants.enable_variant_building`).
"""

from __future__ import annotations

import os

from engine.cli import benchmark, colorize, export, info, models, report  # noqa: F401 (commands)
from engine.cli.app import app
from engine.cli.colorize import split_ray_address
from engine.cli.variants import enable_variant_building

enable_variant_building()

__all__ = ["app", "main", "split_ray_address"]


def main() -> None:  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
