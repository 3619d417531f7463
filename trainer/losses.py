"""Training losses: MSE for a regression head, rarity-rebalanced cross-entropy for a classes head.

Class targets are computed on the device (a table look-up of each pixel's ab grid cell), at the
resolution of the head's logits (ab area-averaged by the head's stride first).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from trainer.bins import CELL, EXTENT, cell_to_class

_GRID = int(2 * EXTENT / CELL)


def class_targets(ab_units: torch.Tensor) -> torch.Tensor:
    """ab in LAB units ``N×2×h×w`` → class index per pixel ``N×h×w`` (as ``bins.classes_of``)."""
    table = torch.from_numpy(cell_to_class()).to(ab_units.device).reshape(-1)
    cells = torch.clamp(torch.div(ab_units + EXTENT, CELL, rounding_mode="floor"), 0, _GRID - 1)
    cells = cells.long()
    return table[cells[:, 0] * _GRID + cells[:, 1]]


def rebalanced_cross_entropy(
    logits: torch.Tensor, ab_norm: torch.Tensor, class_weights: torch.Tensor, ab_scale: float
) -> torch.Tensor:
    """Cross-entropy of class logits (``N×Q×h×w``, at 1/k of the ab's resolution) against each
    pixel's ab class, weighted by the class's rarity weight."""
    with torch.no_grad():
        stride = ab_norm.shape[-1] // logits.shape[-1]
        ab = F.avg_pool2d(ab_norm, stride) if stride > 1 else ab_norm
        target = class_targets(ab.float() * ab_scale)
    per_pixel = F.cross_entropy(logits.float(), target, reduction="none")
    return (per_pixel * class_weights[target]).mean()
