"""Colorization engine: run trained U-Net models on grayscale photos (no torch needed).

The path of one image: ``engine.color`` (L → model input) → backend → ``engine.color``
(ab → colour image at full resolution).
"""

__version__ = "0.1.0"
