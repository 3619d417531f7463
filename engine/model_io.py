"""Model I/O: what a model takes and returns, between pixels and the colour science.

* :class:`Normalization`: how a model's L and ab are scaled. Every model exported since the
  architecture registry carries its normalisation in the graph (L 0..100 in, ab in LAB units out:
  :data:`IDENTITY_NORMALIZATION`); older files name theirs in their metadata.
* The model input: full-resolution L reduced to the model's size (:func:`model_input`,
  :func:`image_model_input`, strip by strip for huge scans).
* The output: ab upsampled to the photo's size, boosted, merged with the photo's **own**
  full-resolution L and fitted into the sRGB gamut (:func:`colorize_output`).

Training (``trainer.data``), evaluation and the engine share these functions. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from engine.color import (
    AB_LIMIT,
    _hw,
    _row_tiles,
    _tile_to_bgr,
    convert_depth,
    luminance,
    resize_plane,
)


@dataclass(frozen=True)
class Normalization:
    """How L and ab are scaled into the model's range: ``L/l_scale − l_shift``, ``ab/ab_scale``."""

    l_scale: float = 50.0
    l_shift: float = 1.0
    ab_scale: float = 128.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Normalization:
        return cls(**{k: float(v) for k, v in data.items()})


SEED_NORMALIZATION = Normalization()
"""The paper's normalisation: L → L/50 − 1 (−1..1), ab → ab/128."""
IDENTITY_NORMALIZATION = Normalization(l_scale=1.0, l_shift=0.0, ab_scale=1.0)
"""Models that carry their normalisation in the graph (every export since the architecture
registry): L 0..100 in, ab in LAB units out."""


# ---------------------------------------------------------------------------------------------
# Model normalisation


def normalize_l(L: np.ndarray, norm: Normalization = SEED_NORMALIZATION) -> np.ndarray:
    """L (0..100) → model input range."""
    return (np.asarray(L, np.float32) / np.float32(norm.l_scale) - np.float32(norm.l_shift)).astype(
        np.float32, copy=False
    )


def denormalize_l(L_norm: np.ndarray, norm: Normalization = SEED_NORMALIZATION) -> np.ndarray:
    """Inverse of :func:`normalize_l`."""
    return (np.asarray(L_norm, np.float32) + np.float32(norm.l_shift)) * np.float32(norm.l_scale)


def normalize_ab(ab: np.ndarray, norm: Normalization = SEED_NORMALIZATION) -> np.ndarray:
    """ab (about −128..127) → model output range."""
    return (np.asarray(ab, np.float32) / np.float32(norm.ab_scale)).astype(np.float32, copy=False)


def denormalize_ab(ab_norm: np.ndarray, norm: Normalization = SEED_NORMALIZATION) -> np.ndarray:
    """Inverse of :func:`normalize_ab`."""
    return np.asarray(ab_norm, np.float32) * np.float32(norm.ab_scale)


# ---------------------------------------------------------------------------------------------
# Model input and output


def model_input(
    L: np.ndarray, size: int | tuple[int, int], norm: Normalization = SEED_NORMALIZATION
) -> np.ndarray:
    """Full-resolution L (``H×W``, 0..100) → normalised model input ``1×h×w`` float32."""
    return normalize_l(resize_plane(L.astype(np.float32, copy=False), size), norm)[None]


def upsample_ab(ab: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Channel-first ab ``2×h×w`` → channel-last ``H×W×2`` at ``size = (H, W)`` (bilinear)."""
    h, w = size
    ab_hwc = np.ascontiguousarray(np.transpose(ab, (1, 2, 0)), dtype=np.float32)
    return cv2.resize(ab_hwc, (w, h), interpolation=cv2.INTER_LINEAR)


def boost_ab(ab: np.ndarray, factors: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Multiply a and b (last axis) by per-channel factors, then clamp to ±AB_LIMIT."""
    out = ab.astype(np.float32, copy=True)
    out[..., 0] *= np.float32(factors[0])
    out[..., 1] *= np.float32(factors[1])
    return np.clip(out, -AB_LIMIT, AB_LIMIT, out=out)


def colorize_output(
    L: np.ndarray,
    ab_norm: np.ndarray,
    norm: Normalization = SEED_NORMALIZATION,
    boost: tuple[float, float] = (1.0, 1.0),
    dtype: np.dtype | type = np.uint8,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """Model output → colour image: de-normalise ab, upsample to L's size, boost and clamp,
    merge with the **original full-resolution L**, fit to the sRGB gamut, convert to BGR.

    ``L`` is either the L plane (float, 0..100) or the input image itself (8/16-bit gray or
    BGR), whose L is then computed row tile by row tile. Memory: the output, the input, and ab
    at full size up to 16 megapixels (:data:`_WHOLE_AB_PIXELS`), above it no full-resolution
    float copy. With ``alpha`` (``H×W``) the output is BGRA.
    """
    image = L
    from_pixels = image.dtype.kind in "ui"
    h, w = image.shape[:2]
    factors = np.float32(norm.ab_scale) * np.asarray(boost, np.float32)
    small = np.transpose(ab_norm, (1, 2, 0)) * factors  # boost and clamp at model size: the
    np.clip(small, -AB_LIMIT, AB_LIMIT, out=small)  # bilinear upsampling keeps them in range
    ab_rows = _upsampled_ab(small, h, w)
    channels = 3 if alpha is None else 4
    out = np.empty((h, w, channels), np.dtype(dtype))
    for rows in _row_tiles((h, w)):
        ab = ab_rows(rows)
        tile_l = luminance(image[rows]) if from_pixels else image[rows].astype(np.float32)
        out[rows, :, :3] = _tile_to_bgr(cv2.merge([tile_l, ab]), dtype)
    if alpha is not None:
        out[:, :, 3] = convert_depth(alpha, np.dtype(dtype))
    return out


_WHOLE_AB_PIXELS = 1 << 24
"""Up to this many output pixels (128 MB of float ab) ab is upsampled in one call, OpenCV's
vectorised and threaded resize (~6× faster than by rows); above, tile by tile, so that a
300-megapixel scan never holds a full-size ab."""


def _upsampled_ab(small: np.ndarray, h: int, w: int) -> Callable[[slice], np.ndarray]:
    """ab ``h_model×w_model×2`` → a function giving any rows of its bilinear upsampling to
    ``h×w`` (as ``cv2.resize``)."""
    if h * w <= _WHOLE_AB_PIXELS:
        whole = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return whole.__getitem__
    rows_at, weights = _linear_rows(small.shape[0], h)

    def band(rows: slice) -> np.ndarray:
        top, bottom = rows_at[rows].T
        ab = small[top]  # down the rows at the model's width, then across
        ab += (small[bottom] - ab) * weights[rows, None, None]
        return cv2.resize(ab, (w, len(ab)), interpolation=cv2.INTER_LINEAR)

    return band


def _linear_rows(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """For bilinear resizing of ``source`` rows to ``target``: each target row's two source rows
    (``target×2``) and the weight of the second, with OpenCV's pixel-centre convention."""
    y = (np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5
    y = np.clip(y, 0, source - 1)
    top = np.floor(y).astype(np.intp)
    bottom = np.minimum(top + 1, source - 1)
    return np.stack([top, bottom], axis=1), (y - top).astype(np.float32)


_STRIP_PIXELS = 1 << 21
"""Pixels per strip when L is reduced for the model input (8 MB of float32 at a time)."""


def image_model_input(
    image: np.ndarray, size: int | tuple[int, int], norm: Normalization = SEED_NORMALIZATION
) -> np.ndarray:
    """Gray/BGR(A) pixels → normalised model input ``1×h×w``, without a full-resolution float L.

    L is computed strip by strip and area-averaged by whole factors per axis (leaving at least
    twice the model's size), then area-resized to ``size``. For images under 4× the model's size
    per axis this is exactly ``model_input(luminance(image), size)``; above, it differs by the
    rounding of two-step area averaging (under 0.2% of the range).
    """
    th, tw = _hw(size)
    h, w = image.shape[:2]
    ky, kx = max(1, h // th // 2), max(1, w // tw // 2)
    if ky == kx == 1:
        return model_input(luminance(image), size, norm)
    reduced_w = -(-w // kx)
    strip = max(ky, _STRIP_PIXELS // max(1, w) // ky * ky)
    parts = []
    for top in range(0, h, strip):
        L = luminance(image[top : top + strip])
        rows = -(-L.shape[0] // ky)
        parts.append(cv2.resize(L, (reduced_w, rows), interpolation=cv2.INTER_AREA))
    return model_input(np.concatenate(parts), size, norm)
