"""The ``classes`` head's decoding, shared by every architecture that predicts ab classes.

Logits over the Q quantised ab colours of :mod:`trainer.bins` become ab by the annealed mean:
classes that are no sRGB colour at the pixel's L are pushed out (each class's allowed L range is
one interval, so the penalty is plain broadcast arithmetic), the scores are divided by the
temperature T, and the softmax-weighted mean of the class centres is the pixel's ab.
"""

from __future__ import annotations

import torch
from torch import nn

MASK_SLOPE = 1000.0
"""Logit penalty per L unit outside a class's allowed range (half a unit out: −500, i.e. gone)."""


def register_class_buffers(module: nn.Module, ab_scale: float) -> int:
    """Give ``module`` the buffers :func:`decode_classes` needs; returns the class count Q.

    ``decode_weight`` (the class centres in normalised ab, ``2×Q×1×1``) is saved with the
    weights; ``l_low``/``l_high`` (each class's allowed L interval) are recomputed.
    """
    from trainer.bins import allowed_l_range, bin_centres

    centres = torch.from_numpy(bin_centres() / ab_scale)
    module.register_buffer("decode_weight", centres.T.reshape(2, -1, 1, 1).contiguous())
    low, high = (torch.from_numpy(v).reshape(1, -1, 1, 1) for v in allowed_l_range())
    module.register_buffer("l_low", low - 0.5, persistent=False)  # L rounds to a level
    module.register_buffer("l_high", high + 0.5, persistent=False)
    return len(centres)


def decode_classes(
    module: nn.Module, logits: torch.Tensor, L: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Logits ``N×Q×h×w`` and L (0..100, ``N×1×h×w``) → normalised ab ``N×2×h×w``, using the
    buffers of :func:`register_class_buffers` on ``module``."""
    outside = torch.relu(module.l_low - L) + torch.relu(L - module.l_high)
    scores = (logits - MASK_SLOPE * outside) / temperature
    # softmax over the classes, written out: ONNX Runtime's Softmax on axis 1 of a 4-D tensor
    # transposes and runs about 6× slower than the whole network
    weights = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    return nn.functional.conv2d(weights, module.decode_weight) / weights.sum(dim=1, keepdim=True)
