"""Training losses: MSE for a regression head, rarity-rebalanced cross-entropy for a classes head.

Class targets are computed on the device at the resolution of the head's logits (ab area-averaged
by the head's stride first): either hard (a table look-up of each pixel's ab grid cell) or soft
(Zhang et al.: each pixel's ab spread over its 5 nearest class centres with Gaussian weights,
σ = 5). Soft targets give a gray pixel equal weight on the four classes around (0, 0), whose mean
is neutral, where the hard target calls it the warm class (5, 5).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from trainer.bins import CELL, EXTENT, bin_centres, cell_to_class

_GRID = int(2 * EXTENT / CELL)


def class_targets(ab_units: torch.Tensor) -> torch.Tensor:
    """ab in LAB units ``N×2×h×w`` → class index per pixel ``N×h×w`` (as ``bins.classes_of``)."""
    table = torch.from_numpy(cell_to_class()).to(ab_units.device).reshape(-1)
    cells = torch.clamp(torch.div(ab_units + EXTENT, CELL, rounding_mode="floor"), 0, _GRID - 1)
    cells = cells.long()
    return table[cells[:, 0] * _GRID + cells[:, 1]]


SOFT_NEIGHBOURS = 5
SOFT_SIGMA = 5.0


def soft_class_targets(ab_units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ab in LAB units ``N×2×h×w`` → (class probabilities ``N×Q×h×w``: Gaussian weights over the
    :data:`SOFT_NEIGHBOURS` nearest class centres, nearest class per pixel ``N×h×w``)."""
    n, _, h, w = ab_units.shape
    centres = torch.from_numpy(bin_centres()).to(ab_units.device)
    ab = ab_units.permute(0, 2, 3, 1).reshape(-1, 2)
    distance2 = torch.cdist(ab, centres).square()
    near2, near = distance2.topk(SOFT_NEIGHBOURS, dim=1, largest=False)
    weights = torch.softmax(-near2 / (2 * SOFT_SIGMA**2), dim=1)
    target = torch.zeros_like(distance2).scatter_(1, near, weights)
    target = target.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return target, near[:, 0].reshape(n, h, w)


def rebalanced_cross_entropy(
    logits: torch.Tensor,
    ab_norm: torch.Tensor,
    class_weights: torch.Tensor,
    ab_scale: float,
    soft: bool = False,
) -> torch.Tensor:
    """Cross-entropy of class logits (``N×Q×h×w``, at 1/k of the ab's resolution) against each
    pixel's ab class (``soft``: its soft-encoded classes), weighted by the rarity weight of the
    pixel's nearest class."""
    with torch.no_grad():
        stride = ab_norm.shape[-1] // logits.shape[-1]
        ab = F.avg_pool2d(ab_norm, stride) if stride > 1 else ab_norm
        ab_units = ab.float() * ab_scale
        if soft:
            target, nearest = soft_class_targets(ab_units)
        else:
            nearest = class_targets(ab_units)
    if soft:
        per_pixel = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    else:
        per_pixel = F.cross_entropy(logits.float(), nearest, reduction="none")
    return (per_pixel * class_weights[nearest]).mean()
