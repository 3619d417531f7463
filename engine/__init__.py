"""Colorization engine: run trained U-Net models on grayscale photos (no torch needed).

The path of one image: ``engine.io`` (decode) → ``engine.color`` (L → model input) → a backend
(``engine.backends``) → ``engine.color`` (ab → colour at full resolution) → ``engine.outputs``
(atomic write).
``Colorizer`` ties them together; ``engine.pipeline`` runs it over folders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Colorizer", "__version__"]

if TYPE_CHECKING:
    from engine.colorizer import Colorizer


def __getattr__(name: str):
    if name == "Colorizer":  # imported lazily: `engine.color` alone must stay light
        from engine.colorizer import Colorizer

        return Colorizer
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
