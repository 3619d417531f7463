"""The colour pipeline in torch, for batches that stay on the GPU from pixels to the colour output.

The twins of :mod:`engine.color` and :mod:`engine.model_io` for the torch path (issue: a
GPU-resident ``--backend torch``): sRGB ↔ linear, luminance (L), LAB ↔ linear BGR, the sRGB gamut
test and fit (chroma scaled down, L and hue kept), the model input (area reduction to the model's
size) and the output (ab upsampled bilinearly, boosted, merged with the photo's full-resolution L,
fitted, encoded). The constants are :mod:`engine.color`'s own, so the definitions cannot drift;
``tests/test_gpu_color.py`` checks each function against the numpy one on CPU tensors (bounds
stated there). Images are ``N×H×W`` (gray) or ``N×H×W×3`` (BGR), any device; torch is imported
here only, and only the torch path imports this module.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.nn import functional as F

from engine.color import (
    _D65_WHITE,
    _GAMUT_STEPS,
    _GAMUT_TOLERANCE,
    _TABLE_HUES,
    _TABLE_L_STEPS,
    _XYZ_TO_LINEAR_BGR,
    _Y_FROM_LINEAR_BGR,
    AB_LIMIT,
    L_MAX,
    _max_chroma_table,
)


@lru_cache(maxsize=32)
def _constant(name: str, device: torch.device) -> torch.Tensor:
    """One of :mod:`engine.color`'s constants on ``device``, copied there once per device (a
    copy per call would be a blocking host→device transfer, a sync of the stream, each time)."""
    if name == "xyz_from_bgr":
        return torch.linalg.inv(_constant("bgr_from_xyz", device))
    values = {"y_from_bgr": _Y_FROM_LINEAR_BGR, "white": _D65_WHITE,
              "bgr_from_xyz": _XYZ_TO_LINEAR_BGR, "chroma_table": _max_chroma_table()}  # fmt: skip
    return torch.as_tensor(values[name], device=device)


@lru_cache(maxsize=32)
def _boost_factors(boost: tuple[float, float], device: torch.device) -> torch.Tensor:
    return torch.tensor(boost, device=device, dtype=torch.float32).view(1, 2, 1, 1)


PEAKS = {torch.uint8: 255.0, torch.int16: 32767.0, torch.int32: 65535.0}
"""Sample peak per tensor dtype (16-bit samples travel as int32: torch has no general uint16)."""


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """Integer samples (uint8, or 16-bit in int32) or floats in 0..1 → float32 in 0..1."""
    if pixels.is_floating_point():
        return pixels.float()
    return pixels.float() / PEAKS[pixels.dtype]


def srgb_to_linear(unit: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in 0..1 → linear light (IEC 61966-2-1)."""
    return torch.where(unit <= 0.04045, unit / 12.92, ((unit + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light → sRGB-encoded values (negative values give 0)."""
    linear = linear.clamp_min(0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def _l_from_y(Y: torch.Tensor) -> torch.Tensor:
    return torch.where(Y > 0.008856, 116 * Y.clamp_min(0) ** (1 / 3) - 16, 903.3 * Y)


def luminance(pixels: torch.Tensor) -> torch.Tensor:
    """L (0..100, float32 ``N×H×W``) of gray ``N×H×W`` or BGR ``N×H×W×3`` pixels."""
    linear = srgb_to_linear(to_unit(pixels))
    if linear.ndim == 3:  # gray: R = G = B, so Y is the linear value itself
        return _l_from_y(linear)
    return _l_from_y(linear @ _constant("y_from_bgr", linear.device))


def lab_to_linear_bgr(lab: torch.Tensor) -> torch.Tensor:
    """LAB ``…×3`` → linear BGR ``…×3`` without clipping (out-of-gamut values leave 0..1)."""
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)
    delta = 6 / 29
    xyz = torch.where(f > delta, f**3, 3 * delta**2 * (f - 4 / 29))
    xyz = xyz * _constant("white", lab.device)
    return xyz @ _constant("bgr_from_xyz", lab.device).T


def linear_bgr_to_lab(linear: torch.Tensor) -> torch.Tensor:
    """Linear BGR ``…×3`` (0..1) → LAB ``…×3``: the inverse of :func:`lab_to_linear_bgr`."""
    xyz = linear @ _constant("xyz_from_bgr", linear.device).T
    xyz = xyz / _constant("white", linear.device)
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp_min(0) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    L = torch.where(xyz[..., 1] > 0.008856, 116 * f[..., 1] - 16, 903.3 * xyz[..., 1])
    return torch.stack([L, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def _outside(linear: torch.Tensor, tolerance: float = _GAMUT_TOLERANCE) -> torch.Tensor:
    return ((linear < -tolerance) | (linear > 1 + tolerance)).any(dim=-1)


def out_of_gamut(lab: torch.Tensor, tolerance: float = _GAMUT_TOLERANCE) -> torch.Tensor:
    """Mask of LAB pixels (``…×3`` → ``…``) that no sRGB colour has."""
    return _outside(lab_to_linear_bgr(lab), tolerance)


def _table_scale(lab: torch.Tensor) -> torch.Tensor:
    """Chroma scale (≤ 1) from the numpy module's conservative table of the gamut's edge per
    (L, hue) cell: the same first step as ``engine.color.fit_to_gamut``."""
    table = _constant("chroma_table", lab.device)
    a, b = lab[..., 1], lab[..., 2]
    chroma = torch.hypot(a, b).clamp_min(1e-6)
    hue = torch.remainder(torch.atan2(b, a), 2 * torch.pi)
    hue_index = (hue * (_TABLE_HUES / (2 * torch.pi)) + 0.5).long() % _TABLE_HUES
    l_index = (lab[..., 0] * (_TABLE_L_STEPS / L_MAX) + 0.5).long().clamp(0, _TABLE_L_STEPS)
    return torch.clamp(table[l_index, hue_index] / chroma, max=1.0)


def _scaled(lab: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.cat([lab[..., :1], lab[..., 1:] * scale[..., None]], dim=-1)


def fit_to_gamut(lab: torch.Tensor, steps: int = _GAMUT_STEPS) -> torch.Tensor:
    """Scale down the chroma of out-of-gamut pixels until they fit sRGB; L and hue unchanged.

    As ``engine.color.fit_to_gamut``: the table of the gamut's edge gives each pixel its scale at
    once (near white the in-gamut chroma along a hue is not one interval, so a plain bisection
    from gray can stop at a much duller colour); the pixels the table does not settle are
    bisected, ``steps`` times, every pixel at once (branch-free work for a GPU).
    """
    outside = out_of_gamut(lab)
    fitted = torch.where(outside[..., None], _scaled(lab, _table_scale(lab)), lab)
    still = out_of_gamut(fitted)
    low = (~still).float()  # a scale known to fit: 1 where settled, 0 (gray) where not
    high = torch.ones_like(low)
    for _ in range(steps):
        mid = (low + high) / 2
        fits = ~out_of_gamut(_scaled(fitted, mid))
        low = torch.where(fits, mid, low)
        high = torch.where(fits, high, mid)
    return _scaled(fitted, low)


def _area_weights(source: int, target: int) -> torch.Tensor:
    """Shrinking: each output the mean of the source pixels it covers (fractional edges)."""
    scale = source / target
    starts = torch.arange(target, dtype=torch.float64)[:, None] * scale
    left = torch.arange(source, dtype=torch.float64)[None]
    overlap = torch.minimum(starts + scale, left + 1) - torch.maximum(starts, left)
    return overlap.clamp_min(0) / scale


def _two_tap_weights(low: torch.Tensor, frac: torch.Tensor, source: int) -> torch.Tensor:
    """Weights ``1 − frac`` on ``low`` and ``frac`` on the next pixel (the edge repeated)."""
    low = low.clamp(0, source - 1)
    high = (low + 1).clamp(max=source - 1)
    weights = torch.zeros(len(low), source, dtype=torch.float64)
    rows = torch.arange(len(low))
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights


def _linear_weights(source: int, target: int) -> torch.Tensor:
    """Bilinear with pixel centres (OpenCV's ``INTER_LINEAR``)."""
    y = ((torch.arange(target, dtype=torch.float64) + 0.5) * (source / target) - 0.5).clamp_min(0)
    low = y.floor().long()
    return _two_tap_weights(low, torch.where(low >= source - 1, 0.0, y - low), source)


def _area_enlarge_weights(source: int, target: int) -> torch.Tensor:
    """OpenCV's ``INTER_AREA`` where an image is not shrunk on both axes: two taps with the
    fraction of each output pixel that falls past a source pixel's edge."""
    dx = torch.arange(target, dtype=torch.float64)
    low = (dx * (source / target)).floor()
    frac = (dx + 1) - (low + 1) * (target / source)
    frac = torch.where(frac <= 0, 0.0, frac - frac.floor())
    frac = torch.where(low >= source - 1, 0.0, frac)
    return _two_tap_weights(low.long(), frac, source)


@lru_cache(maxsize=64)
def resampling_weights(
    shape: tuple[int, int], size: tuple[int, int], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column weights (``h×H``, ``w×W``) that resize ``shape`` to ``size`` as
    ``engine.color.resize_plane`` does through OpenCV: ``INTER_AREA`` when the area shrinks,
    ``INTER_LINEAR`` otherwise. Made once per (shape, size, device): archives repeat sizes."""
    (H, W), (h, w) = shape, size
    if h * w >= H * W:
        pick = _linear_weights
    else:
        pick = _area_weights if h <= H and w <= W else _area_enlarge_weights
    rows = pick(H, h) if h != H else torch.eye(H, dtype=torch.float64)
    columns = pick(W, w) if w != W else torch.eye(W, dtype=torch.float64)
    return rows.float().to(device), columns.float().to(device)


def model_input(L: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Full-resolution L ``N×H×W`` → the model's input ``N×1×h×w``, resized as
    ``engine.color.resize_plane`` does (area when shrinking, bilinear when enlarging) by two
    small matrix products."""
    h, w = (size, size) if isinstance(size, int) else size
    rows, columns = resampling_weights(tuple(L.shape[-2:]), (h, w), L.device)
    return (rows @ L.float() @ columns.T)[:, None]


def colorize_output(
    pixels: torch.Tensor,
    ab: torch.Tensor,
    boost: tuple[float, float] = (1.0, 1.0),
    peak: float = 255.0,
) -> torch.Tensor:
    """Pixels ``N×H×W[×3]`` and predicted ab ``N×2×h×w`` (LAB units) → BGR ``N×H×W×3`` with
    samples 0..``peak`` (float; round or cast as the output needs). ab is boosted and clamped at the
    model's size, upsampled bilinearly, merged with the pixels' own L and fitted into the gamut."""
    factors = _boost_factors(tuple(map(float, boost)), ab.device)
    small = (ab.float() * factors).clamp(-AB_LIMIT, AB_LIMIT)
    size = pixels.shape[1:3]
    wide = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
    lab = torch.cat([luminance(pixels)[..., None], wide.permute(0, 2, 3, 1)], dim=-1)
    linear = lab_to_linear_bgr(fit_to_gamut(lab)).clamp(0, 1)
    return linear_to_srgb(linear) * peak
