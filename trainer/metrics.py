"""Colorization quality metrics on numpy images (8-bit RGB/BGR unless stated).

* PSNR over all RGB channels, in dB.
* SSIM (Wang et al. 2004; Gaussian window σ=1.5, K1=0.01, K2=0.03), mean over channels and
  over pixels at least 5 from the border (as scikit-image computes it).
* Colourfulness CF (Hasler & Süsstrunk 2003) on 0..255 values; ΔCF = |CF(pred) − CF(truth)|.
* AuC of the per-pixel ab error (Zhang et al. 2016): the fraction of pixels whose Euclidean ab
  error is within t, averaged over t = 0..150 (area under the curve, normalised to 0..1).
"""

from __future__ import annotations

import cv2
import numpy as np

AUC_MAX_THRESHOLD = 150


def psnr(pred: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    mse = float(np.mean((pred.astype(np.float64) - truth.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def ssim(pred: np.ndarray, truth: np.ndarray, peak: float = 255.0) -> float:
    """Structural similarity, averaged over channels."""
    x = pred.astype(np.float64)
    y = truth.astype(np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = 5 if min(ssim_map.shape[:2]) > 10 else 0  # borders see a partial window: left out
    return float(ssim_map[pad : ssim_map.shape[0] - pad, pad : ssim_map.shape[1] - pad].mean())


def colorfulness(bgr: np.ndarray) -> float:
    """Hasler–Süsstrunk colourfulness of a BGR image (0 for gray; ≈ 30–60 for natural photos)."""
    scale = 255.0 / 65535.0 if bgr.dtype == np.uint16 else 1.0
    b, g, r = (bgr[..., i].astype(np.float64) * scale for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ab_error_auc(ab_pred: np.ndarray, ab_truth: np.ndarray) -> float:
    """AuC of the cumulative ab-error curve over thresholds 0..150 (1.0 = perfect).

    ``ab_*`` are ``…×2`` arrays (channel last) in LAB units.
    """
    error = np.hypot(*(ab_pred.astype(np.float64) - ab_truth.astype(np.float64)).reshape(-1, 2).T)
    thresholds = np.arange(AUC_MAX_THRESHOLD + 1)
    counts = np.searchsorted(np.sort(error), thresholds, side="right")
    return float((counts / error.size).mean())


HUE_COLOURFUL_CHROMA = 15.0
"""Truth pixels with LAB chroma above this are the colourful ones :func:`hue_accuracy` counts."""


def _right_hues(
    ab_pred: np.ndarray, ab_truth: np.ndarray, colourful: float, min_chroma: float,
    max_degrees: float,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(per colourful truth pixel: is the predicted hue right, the truth's ab ``n×2``)."""
    pred = ab_pred.reshape(-1, 2).astype(np.float64)
    truth = ab_truth.reshape(-1, 2).astype(np.float64)
    chosen = np.hypot(truth[:, 0], truth[:, 1]) > colourful
    pred, truth = pred[chosen], truth[chosen]
    hue_gap = np.angle(
        (pred[:, 0] + 1j * pred[:, 1]) * np.conj(truth[:, 0] + 1j * truth[:, 1]), deg=True
    )
    right = (np.hypot(pred[:, 0], pred[:, 1]) > min_chroma) & (np.abs(hue_gap) <= max_degrees)
    return right, truth


def hue_accuracy(
    ab_pred: np.ndarray,
    ab_truth: np.ndarray,
    colourful: float = HUE_COLOURFUL_CHROMA,
    min_chroma: float = 5.0,
    max_degrees: float = 30.0,
) -> float:
    """Share of the truth's colourful pixels (chroma > ``colourful``) whose prediction has chroma
    > ``min_chroma`` and a hue within ``max_degrees`` of the truth's: is the grass green, the sky
    blue. Gray scores 0. NaN when the truth has no colourful pixel. ``ab_*``: ``…×2``, LAB units.
    """
    right, _ = _right_hues(ab_pred, ab_truth, colourful, min_chroma, max_degrees)
    return float(right.mean()) if right.size else float("nan")


HUE_SECTORS: dict[str, tuple[float, float]] = {
    "red": (345.0, 40.0),
    "orange-yellow": (40.0, 105.0),
    "green": (105.0, 180.0),
    "cyan-blue": (180.0, 300.0),
    "purple": (300.0, 345.0),
}
"""Sectors of the truth's LAB hue angle (degrees, atan2(b, a)): skin, wood, earth and sand fall in
orange-yellow, foliage in green, sky and water in cyan-blue."""


def hue_counts_by_sector(
    ab_pred: np.ndarray,
    ab_truth: np.ndarray,
    colourful: float = HUE_COLOURFUL_CHROMA,
    min_chroma: float = 5.0,
    max_degrees: float = 30.0,
) -> dict[str, tuple[int, int]]:
    """Per :data:`HUE_SECTORS` sector of the truth's hue: (pixels given the right hue, colourful
    pixels), as :func:`hue_accuracy` counts them. Counts, so that sectors can be pooled over
    photos (few photos have every sector)."""
    right, truth = _right_hues(ab_pred, ab_truth, colourful, min_chroma, max_degrees)
    truth_hue = np.degrees(np.arctan2(truth[:, 1], truth[:, 0])) % 360.0
    counts = {}
    for name, (start, end) in HUE_SECTORS.items():
        inside = (
            (truth_hue >= start) & (truth_hue < end)
            if start < end
            else (truth_hue >= start) | (truth_hue < end)
        )
        counts[name] = (int(right[inside].sum()), int(inside.sum()))
    return counts
