"""Quantised ab colours for the classification head (Zhang, Isola & Efros 2016, "Colorful Image
Colorization"): classes, the rarity weights that rebalance them, and annealed-mean decoding.

The ab plane is cut into 10×10 cells over −110..110; a cell is a class when some L gives an sRGB
colour at its centre (222 cells; the paper, counting cells that touch the gamut, has 313). A
pixel's class is the cell nearest its true ab. Training minimises cross-entropy weighted by each
class's rarity in the training photos, ``1 / ((1 − λ)·p̃ + λ/Q)`` with p̃ the class frequencies
smoothed by a Gaussian of σ = 5 ab units and λ = ½, normalised to an expected weight of 1, so
rare saturated colours count as much as the common browns. Prediction is the annealed mean: the
class distribution, restricted to the classes that are sRGB colours at the pixel's L
(:func:`gamut_mask`: no red or blue blotches from impossible colours), sharpened by a temperature
T = 0.38, then averaged — vivid like the mode, smooth like the mean.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from engine.color import out_of_gamut

CELL = 10.0
EXTENT = 110.0
TEMPERATURE = 0.38
_GRID = int(2 * EXTENT / CELL)  # 22 cells per axis


def _cells() -> np.ndarray:
    """``484×2`` centres of the 22×22 grid cells (row-major over a, then b)."""
    axis = -EXTENT + CELL / 2 + CELL * np.arange(_GRID)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1).astype(np.float32)


def _in_gamut(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """``len(L)×len(ab)`` bool: (L, a, b) is an sRGB colour."""
    lab = np.concatenate(
        [np.broadcast_to(L[:, None, None], (len(L), len(ab), 1)),
         np.broadcast_to(ab[None], (len(L), len(ab), 2))], axis=2,
    ).astype(np.float32)  # fmt: skip
    return ~out_of_gamut(lab)


@cache
def bin_centres() -> np.ndarray:
    """``Q×2`` float32 ab centres of the in-gamut cells (row-major over a, then b)."""
    cells = _cells()
    return cells[_in_gamut(np.arange(1, 100, 0.5), cells).any(axis=0)]


@cache
def cell_to_class() -> np.ndarray:
    """``22×22`` grid cell → index of the nearest class (cells outside the gamut included)."""
    distance = ((_cells()[:, None, :] - bin_centres()[None, :, :]) ** 2).sum(axis=2)
    return distance.argmin(axis=1).reshape(_GRID, _GRID).astype(np.int64)


def classes_of(ab: np.ndarray) -> np.ndarray:
    """ab in ab units (``2×…``) → class index per pixel (``…``), int64."""
    cells = np.clip(((ab + EXTENT) // CELL).astype(np.int64), 0, _GRID - 1)
    return cell_to_class()[cells[0], cells[1]]


def rarity_weights(class_counts: np.ndarray, sigma: float = 5.0, mix: float = 0.5) -> np.ndarray:
    """Per-class loss weights from class pixel counts (see the module docstring), float32."""
    centres = bin_centres()
    p = class_counts / max(1, class_counts.sum())
    distance2 = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    kernel = np.exp(-distance2 / (2 * sigma**2))
    smoothed = kernel @ p / kernel.sum(axis=1)
    smoothed /= smoothed.sum()
    weights = 1.0 / ((1 - mix) * smoothed + mix / len(centres))
    weights /= (smoothed * weights).sum()
    return weights.astype(np.float32)


def count_classes(lab_images, step: int = 4) -> np.ndarray:
    """Pixel counts per class over LAB images (float or the trainer's uint8 cache), subsampled."""
    from trainer.data import dequantize_lab

    counts = np.zeros(len(bin_centres()), np.int64)
    for image in lab_images:
        lab = dequantize_lab(image[::step, ::step]) if image.dtype == np.uint8 else image
        ab = np.moveaxis(np.asarray(lab[..., 1:], np.float32), -1, 0)
        counts += np.bincount(classes_of(ab).ravel(), minlength=len(counts))
    return counts


L_LEVELS = 101
"""Rows of :func:`gamut_mask`: L = 0, 1, …, 100."""


@cache
def gamut_mask() -> np.ndarray:
    """``101×Q`` bool: class q's centre is an sRGB colour at L = row. The four classes nearest
    neutral are always allowed, so every L keeps some classes (their mean is neutral)."""
    centres = bin_centres()
    neutral = np.all(np.abs(centres) == CELL / 2, axis=1)
    return _in_gamut(np.arange(L_LEVELS, dtype=np.float32), centres) | neutral[None, :]


@cache
def allowed_l_range() -> tuple[np.ndarray, np.ndarray]:
    """Per class, the lowest and highest L level of :func:`gamut_mask` (each class's allowed L
    levels form one interval), float32 ``Q`` each."""
    mask = gamut_mask()
    levels = np.arange(L_LEVELS)[:, None]
    low = np.where(mask, levels, L_LEVELS).min(axis=0)
    high = np.where(mask, levels, -1).max(axis=0)
    return low.astype(np.float32), high.astype(np.float32)
