"""Colour science: sRGB ↔ CIE LAB, luminance, the sRGB gamut and its fit, resizing, merging.

Training (``trainer.data``) and inference (``engine``) both call these functions, so the
two can never disagree. Everything here is a pure function on numpy arrays; no torch. What a model
takes and returns (normalisation, model input, the assembly of the output) is
:mod:`engine.model_io`.

Conventions
-----------
* Images are OpenCV arrays: ``H×W`` (gray), ``H×W×3`` (BGR) or ``H×W×4`` (BGRA), of dtype
  ``uint8``, ``uint16`` or ``float32`` in 0..1. ``rgb_*`` twins take RGB order.
* LAB is CIE L*a*b* (D65) as ``float32 H×W×3``: L in 0..100, a and b in about −128..127.
* Model tensors are channel-first: L is ``1×h×w``, ab is ``2×h×w``, both normalised.

>>> lab = bgr_to_lab(np.full((2, 2, 3), 255, np.uint8))
>>> round(float(lab[0, 0, 0]), 2)
100.0
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

L_MAX = 100.0
AB_LIMIT = 127.0
"""a/b are clamped to ±AB_LIMIT after the boost (the range an 8-bit LAB image can hold)."""

_GAMUT_STEPS = 8
"""Bisection steps of :func:`fit_to_gamut` (fitted chroma within 2⁻⁸ of the gamut's edge)."""


# ---------------------------------------------------------------------------------------------
# dtype handling


def _dtype_max(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if dtype in (np.float32, np.float64):
        return 1.0
    raise TypeError(f"unsupported image dtype {dtype}; expected uint8, uint16 or float32")


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale a uint8/uint16/float image to float32 in 0..1 (float input: copied as float32)."""
    scale = _dtype_max(image.dtype)
    out = image.astype(np.float32, copy=True)
    if scale != 1.0:
        out *= np.float32(1.0 / scale)
    return out


def from_unit_float(image: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """Round and clip a 0..1 float image to ``dtype`` (uint8, uint16 or float32)."""
    dtype = np.dtype(dtype)
    scale = _dtype_max(dtype)
    if dtype == np.float32:
        return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
    return np.clip(image * scale + 0.5, 0, scale).astype(dtype)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an image into its colour/gray part and its alpha channel (None when there is none)."""
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3], image[:, :, 3]
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        return image[:, :, 0], image[:, :, 1]
    return image, None


# sRGB transfer curve, computed exactly (OpenCV 5's float sRGB↔LAB uses a coarse table, off by up
# to ~1 level; its *linear* RGB↔LAB is exact to 1e-5, so the gamma is done here).


def srgb_to_linear(unit: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in 0..1 → linear light (IEC 61966-2-1)."""
    unit = np.asarray(unit, np.float32)
    return np.where(
        unit <= 0.04045, unit / np.float32(12.92), ((unit + 0.055) / 1.055) ** np.float32(2.4)
    ).astype(np.float32, copy=False)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light → sRGB-encoded values (negative values give 0)."""
    linear = np.maximum(np.asarray(linear, np.float32), 0)
    return np.where(
        linear <= 0.0031308,
        linear * np.float32(12.92),
        np.float32(1.055) * linear ** np.float32(1 / 2.4) - np.float32(0.055),
    ).astype(np.float32, copy=False)


_LINEAR_LUT = {
    np.dtype(np.uint8): srgb_to_linear(np.arange(256, dtype=np.float64) / 255),
    np.dtype(np.uint16): srgb_to_linear(np.arange(65536, dtype=np.float64) / 65535),
}


def _as_linear_bgr(image: np.ndarray) -> np.ndarray:
    """Gray/BGR/BGRA of any supported dtype → linear-light float32 BGR ``H×W×3``."""
    color, _ = split_alpha(image)
    if color.ndim == 3 and color.shape[2] == 1:
        color = color[:, :, 0]
    if color.ndim not in (2, 3) or (color.ndim == 3 and color.shape[2] != 3):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {image.shape}")
    lut = _LINEAR_LUT.get(color.dtype)
    if color.dtype == np.uint8:
        linear = cv2.LUT(color, lut)  # OpenCV's table look-up: ~5x numpy's
    elif lut is not None:
        linear = np.take(lut, color)
    else:
        _dtype_max(color.dtype)  # raises for unsupported dtypes
        linear = srgb_to_linear(color)
    if linear.ndim == 2:
        linear = cv2.cvtColor(linear, cv2.COLOR_GRAY2BGR)
    return linear


# ---------------------------------------------------------------------------------------------
# LAB conversion


def bgr_to_lab(image: np.ndarray) -> np.ndarray:
    """Gray, BGR or BGRA image (uint8/uint16/float32) → float32 LAB ``H×W×3``. Alpha is ignored."""
    return cv2.cvtColor(_as_linear_bgr(image), cv2.COLOR_LBGR2Lab)


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """RGB/RGBA twin of :func:`bgr_to_lab`."""
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, [2, 1, 0]]
    return bgr_to_lab(image)


def lab_to_bgr(lab: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """Float LAB ``H×W×3`` → BGR image of ``dtype``; out-of-gamut colours are clipped per channel.

    :func:`lab_to_bgr_in_gamut` keeps L exact instead.
    """
    linear = cv2.cvtColor(np.ascontiguousarray(lab, dtype=np.float32), cv2.COLOR_Lab2LBGR)
    return _encode_linear(linear, dtype)


def lab_to_rgb(lab: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """RGB twin of :func:`lab_to_bgr`."""
    return lab_to_bgr(lab, dtype)[:, :, ::-1].copy()


_Y_FROM_LINEAR_BGR = np.array([0.072169, 0.715160, 0.212671], np.float32)
"""Y row of OpenCV's linear RGB → XYZ matrix (BGR order), so :func:`luminance` matches LAB's L."""


def _l_from_y(Y: np.ndarray) -> np.ndarray:
    """CIE L* from relative luminance Y (0..1), OpenCV's constants."""
    Y = np.asarray(Y, np.float32)
    return np.where(Y > 0.008856, 116 * np.cbrt(Y) - 16, 903.3 * Y).astype(np.float32, copy=False)


_GRAY_L_LUT = {dtype: _l_from_y(lut) for dtype, lut in _LINEAR_LUT.items()}


def luminance(image: np.ndarray) -> np.ndarray:
    """L channel (float32 ``H×W``, 0..100) of a gray, BGR or BGRA image; alpha is ignored.

    Equals ``bgr_to_lab(image)[..., 0]`` (to 1e-3) at a fraction of the cost: gray 8/16-bit
    images are a table look-up.
    """
    color, _ = split_alpha(image)
    if color.ndim == 3 and color.shape[2] == 1:
        color = color[:, :, 0]
    if color.ndim == 2 and color.dtype == np.uint8:
        return cv2.LUT(color, _GRAY_L_LUT[color.dtype])
    if color.ndim == 2 and color.dtype in _GRAY_L_LUT:
        return np.take(_GRAY_L_LUT[color.dtype], color)
    linear = _as_linear_bgr(color)
    return _l_from_y(cv2.transform(linear, _Y_FROM_LINEAR_BGR[None, :]))


def chroma(lab: np.ndarray) -> np.ndarray:
    """Per-pixel chroma √(a² + b²) of a LAB image."""
    return np.hypot(lab[..., 1], lab[..., 2])


def is_grayscale(lab: np.ndarray, threshold: float = 1.8) -> bool:
    """True when a LAB image carries (almost) no colour: mean chroma below ``threshold``."""
    return float(chroma(lab).mean()) < threshold


# ---------------------------------------------------------------------------------------------
# Gamut

_D65_WHITE = np.array([0.950456, 1.0, 1.088754], np.float32)
_XYZ_TO_LINEAR_BGR = np.array(
    [[0.055648, -0.204043, 1.057311], [-0.969256, 1.875991, 0.041556],
     [3.240479, -1.53715, -0.498535]], np.float32,
)  # fmt: skip
"""OpenCV's D65 white and XYZ → linear sRGB matrix (rows B, G, R): the gamut test matches it."""


def _linear_bgr_unclipped(lab: np.ndarray) -> np.ndarray:
    """LAB ``…×3`` → linear BGR ``…×3`` *without* clipping (OpenCV clips, hiding out-of-gamut)."""
    shape = lab.shape
    lab = np.ascontiguousarray(lab, dtype=np.float32).reshape(-1, 1, 3)
    fy = (lab[..., 0] + 16) / 116
    f = np.empty(lab.shape, np.float32)
    f[..., 0] = fy + lab[..., 1] / 500
    f[..., 1] = fy
    f[..., 2] = fy - lab[..., 2] / 200
    delta = np.float32(6 / 29)
    xyz = np.where(f > delta, f * f * f, np.float32(3 * (6 / 29) ** 2) * (f - np.float32(4 / 29)))
    xyz *= _D65_WHITE
    return cv2.transform(xyz, _XYZ_TO_LINEAR_BGR).reshape(shape)


_GAMUT_TOLERANCE = 1e-5


def _outside(linear: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose linear BGR leaves 0..1 (``…×3`` → ``…``)."""
    flat = np.ascontiguousarray(linear, dtype=np.float32).reshape(-1, 1, 3)
    low, high = (-_GAMUT_TOLERANCE,) * 3, (1 + _GAMUT_TOLERANCE,) * 3
    return (cv2.inRange(flat, low, high) == 0).reshape(linear.shape[:-1])


def out_of_gamut(lab: np.ndarray) -> np.ndarray:
    """Boolean mask of LAB pixels (``…×3``) that no sRGB colour has (before any gamut fitting)."""
    return _outside(_linear_bgr_unclipped(lab))


_TABLE_L_STEPS, _TABLE_HUES = 400, 720


@cache
def _max_chroma_table() -> np.ndarray:
    """Largest in-gamut chroma per (L, hue) cell, ``(L_STEPS + 1) × HUES``, conservative.

    Computed once (bisection on a grid), then each cell takes the minimum of itself and its
    neighbours so that a pixel anywhere in the cell is safe with the cell's value.
    """
    L = np.linspace(0, L_MAX, _TABLE_L_STEPS + 1, dtype=np.float32)[:, None]
    hue = (np.arange(_TABLE_HUES, dtype=np.float32) * (2 * np.pi / _TABLE_HUES))[None, :]
    L, cos, sin = np.broadcast_arrays(L, np.cos(hue), np.sin(hue))
    low = np.zeros(L.shape, np.float32)
    high = np.full(L.shape, np.float32(AB_LIMIT * np.sqrt(2)))
    for _ in range(18):
        mid = (low + high) / 2
        lab = np.stack([L, mid * cos, mid * sin], axis=-1)
        fits = ~_outside(_linear_bgr_unclipped(lab))
        low = np.where(fits, mid, low)
        high = np.where(fits, high, mid)
    safe = low.copy()
    for shift in (1, -1):
        np.minimum(safe, np.roll(low, shift, axis=1), out=safe)
    safe[1:] = np.minimum(safe[1:], safe[:-1])
    safe[:-1] = np.minimum(safe[:-1], safe[1:].copy())
    return safe


def _bisect_pixels(pixels: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Bisect the chroma scale of LAB pixels in [0, high] down to one that fits."""
    low = np.zeros(len(pixels), np.float32)  # a scale known to fit (gray always fits)
    for _ in range(_GAMUT_STEPS):
        mid = (low + high) / 2
        trial = pixels.copy()
        trial[:, 1:] *= mid[:, None]
        fits = ~_outside(_linear_bgr_unclipped(trial))
        low = np.where(fits, mid, low)
        high = np.where(fits, high, mid)
    fitted = pixels.copy()
    fitted[:, 1:] *= low[:, None]
    return fitted


def _table_scale(pixels: np.ndarray) -> np.ndarray:
    """Chroma scale (≤ 1) that brings LAB pixels ``N×3`` inside the gamut, from the edge table."""
    a = np.ascontiguousarray(pixels[:, 1])
    b = np.ascontiguousarray(pixels[:, 2])
    chroma_now = np.maximum(cv2.magnitude(a, b).ravel(), np.float32(1e-6))
    hue = cv2.phase(a, b).ravel()  # radians in [0, 2π), ±0.3°: within the table's safe margin
    hue_index = (hue * np.float32(_TABLE_HUES / (2 * np.pi)) + np.float32(0.5)).astype(np.int32)
    l_index = (pixels[:, 0] * np.float32(_TABLE_L_STEPS / L_MAX) + np.float32(0.5)).astype(np.int32)
    np.clip(l_index, 0, _TABLE_L_STEPS, out=l_index)
    limit = _max_chroma_table()[l_index, hue_index % _TABLE_HUES]
    return np.minimum(np.float32(1), limit / chroma_now)


def _fit_to_linear(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAB pixels ``N×3`` (possibly out of gamut) → (fitted LAB, its linear BGR), L unchanged.

    The (L, hue) table of the gamut's edge gives each pixel's scale at once; the rare pixels it
    does not settle are bisected.
    """
    fitted = pixels.copy()
    fitted[:, 1:] *= _table_scale(pixels)[:, None]
    linear = _linear_bgr_unclipped(fitted)
    still = _outside(linear)
    if still.any():
        fitted[still] = _bisect_pixels(fitted[still], np.ones(int(still.sum()), np.float32))
        linear[still] = _linear_bgr_unclipped(fitted[still])
    return fitted, linear


def fit_to_gamut(lab: np.ndarray) -> np.ndarray:
    """Scale down the chroma of out-of-gamut pixels until they fit sRGB, keeping L unchanged.

    Per-channel RGB clipping would change the luminance of vivid predictions; this keeps the
    original L (the scan's own tones) and gives up only the colour that sRGB cannot show.
    """
    lab = np.asarray(lab, dtype=np.float32)
    outside = _outside(_linear_bgr_unclipped(lab))
    if not outside.any():
        return lab
    fitted = lab.copy()
    fitted[outside] = _fit_to_linear(lab[outside])[0]
    return fitted


def lab_to_bgr_in_gamut(lab: np.ndarray, dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """LAB → BGR of ``dtype`` with :func:`fit_to_gamut` applied, in one pass over the image.

    OpenCV converts the whole image (fast) and clips out-of-gamut pixels to 0 or 1; only those
    pixels (exactly 0 or 1 in some channel; black and white too, which fit unchanged) are
    recomputed with their chroma fitted.
    """
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    out = np.empty(lab.shape, np.dtype(dtype))
    for rows in _row_tiles(lab.shape[:2]):
        out[rows] = _tile_to_bgr(lab[rows], dtype)
    return out


_TILE_PIXELS = 32768
"""Pixels per row tile of the output conversion: its float32 arrays (a few hundred kB) stay in
the CPU cache, which makes the conversion about 25% faster than whole-image passes."""


def _row_tiles(shape: tuple[int, int]) -> list[slice]:
    rows = max(1, _TILE_PIXELS // max(1, shape[1]))
    return [slice(top, top + rows) for top in range(0, shape[0], rows)]


def _tile_to_bgr(lab: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """One tile of :func:`lab_to_bgr_in_gamut`."""
    linear = cv2.cvtColor(lab, cv2.COLOR_Lab2LBGR)
    interior = cv2.inRange(linear, (1e-7,) * 3, (1 - 1e-7,) * 3)
    suspects = np.flatnonzero(interior.ravel() == 0)
    if suspects.size:
        fitted_linear = _fit_to_linear(lab.reshape(-1, 3)[suspects])[1]
        linear.reshape(-1, 3)[suspects] = np.clip(fitted_linear, 0, 1)  # fitted to 1e-5
    return _encode_linear(linear, dtype)


_SRGB8_LUT = from_unit_float(
    linear_to_srgb(np.minimum(np.arange(65536, dtype=np.float64) + 0.5, 65535) / 65535), np.uint8
)
"""Linear light cell ``floor(x·65535)`` → 8-bit sRGB of the cell's centre: off by under 0.03 of a
level, so every 8-bit value round-trips exactly."""


def _encode_linear(linear: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Linear-light float image (values in 0..1) → sRGB-encoded image of ``dtype``."""
    if np.dtype(dtype) == np.uint8:
        cells = np.multiply(linear, np.float32(65535)).astype(np.uint16)
        return np.take(_SRGB8_LUT, cells)  # twice as fast as indexing
    return from_unit_float(linear_to_srgb(np.clip(linear, 0, 1)), dtype)


# ---------------------------------------------------------------------------------------------
# Resizing and merging


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def resize_plane(plane: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an ``H×W`` or ``H×W×C`` float plane to ``size`` (int = square, or ``(h, w)``).

    Shrinking uses area averaging (no aliasing), enlarging uses bilinear interpolation.
    """
    h, w = _hw(size)
    if plane.shape[:2] == (h, w):
        return plane
    shrinking = h * w < plane.shape[0] * plane.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(plane, (w, h), interpolation=interp)


def fit_long_side(shape: tuple[int, int], long_side: int, multiple: int = 1) -> tuple[int, int]:
    """``(h, w)`` scaled to a long side of ``long_side`` (never enlarged), rounded to ``multiple``.

    >>> fit_long_side((1000, 500), 512)
    (512, 256)
    """
    h, w = shape[:2]
    scale = min(1.0, long_side / max(h, w))
    nh = max(multiple, round(h * scale / multiple) * multiple)
    nw = max(multiple, round(w * scale / multiple) * multiple)
    return nh, nw


def merge_l_ab(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Stack ``H×W`` L and ``H×W×2`` ab into a float32 LAB image."""
    if L.shape != ab.shape[:2]:
        raise ValueError(f"L is {L.shape} but ab is {ab.shape[:2]}; upsample ab first")
    return np.concatenate([L[:, :, None].astype(np.float32), ab.astype(np.float32)], axis=2)


def convert_depth(plane: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Samples (pixels or an alpha plane) in another integer depth (8 ↔ 16 bits)."""
    if plane.dtype == dtype:
        return plane
    if dtype == np.uint16:
        return plane.astype(np.uint16) * 257
    return (plane >> 8).astype(np.uint8)
