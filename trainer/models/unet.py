"""The U-Net of the paper (Table I), with width/depth parameters for larger presets.

``seed`` reproduces Table I exactly::

    enc1   ConvBlock(1, 32)            @ H          pool1  maxpool 2×2 → H/2
    enc2   ConvBlock(32, 64)           @ H/2        pool2  maxpool 2×2 → H/4
    bottleneck  ConvBlock(64, 128) → ResBlock(128)  @ H/4
    up2    ConvTranspose(128→64, k2 s2) ⊕ enc2      dec2   ConvBlock(128, 64)  @ H/2
    up1    ConvTranspose(64→32, k2 s2) ⊕ enc1       dec1   ConvBlock(64, 32)   @ H
    head   conv1×1(32→2) → tanh

Input: normalised L ``N×1×H×W`` (H, W divisible by 2**depth); output: normalised ab ``N×2×H×W``.

The ``vivid`` preset has the same trunk with a classification head (``head="classes"``):
conv1×1(32→Q) gives logits over Q quantised ab colours (:mod:`trainer.bins`), and the forward
pass decodes them to ab by the annealed mean (softmax at temperature T, then a 1×1 convolution
with the class centres), so its exported graph has the same input and output as ``seed``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from engine.model_io import SEED_NORMALIZATION
from trainer.models.heads import decode_classes, register_class_buffers

_L_SCALE, _L_SHIFT = SEED_NORMALIZATION.l_scale, SEED_NORMALIZATION.l_shift


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    """3×3 convolution without bias: every one is followed by BatchNorm, which has its own."""
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


class ResBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, plus the input, → ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + x)


class ConvBlock(nn.Sequential):
    """conv3×3(i→o) → BN → ReLU → ResBlock(o)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            _conv3x3(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), ResBlock(c_out)
        )


@dataclass(frozen=True)
class UNetConfig:
    """U-Net architecture: ``widths[:-1]`` are the encoder stages, ``widths[-1]`` the bottleneck."""

    widths: tuple[int, ...] = (32, 64, 128)
    bottleneck_res_blocks: int = 1
    in_channels: int = 1
    out_channels: int = 2
    head: str = "regression"
    """``regression`` (conv → tanh → ab) or ``classes`` (logits over ab classes, decoded)."""
    temperature: float = 0.38
    """Annealed-mean temperature of the ``classes`` head."""

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2**self.depth

    @property
    def depth(self) -> int:
        """Number of 2× downsamplings; H and W must be divisible by ``2**depth``."""
        return len(self.widths) - 1

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        return cls(**{**data, "widths": tuple(data["widths"])})


class UNet(nn.Module):
    """Encoder–decoder with skip connections; stages are named as in the module docstring."""

    logit_stride: ClassVar[int] = 1
    """The ``classes`` head's logits are at full resolution."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        if len(config.widths) < 2:
            raise ValueError("a U-Net needs at least one encoder stage and a bottleneck")
        self.config = config
        widths = config.widths
        self.encoders = nn.ModuleList()
        c_prev = config.in_channels
        for width in widths[:-1]:
            self.encoders.append(ConvBlock(c_prev, width))
            c_prev = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(
            ConvBlock(widths[-2], widths[-1]),
            *[ResBlock(widths[-1]) for _ in range(config.bottleneck_res_blocks)],
        )
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for deeper, width in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.ups.append(nn.ConvTranspose2d(deeper, width, kernel_size=2, stride=2))
            self.decoders.append(ConvBlock(2 * width, width))
        if config.head == "classes":
            classes = register_class_buffers(self, SEED_NORMALIZATION.ab_scale)
            self.head = nn.Conv2d(widths[0], classes, kernel_size=1)
        elif config.head == "regression":
            self.head = nn.Conv2d(widths[0], config.out_channels, kernel_size=1)
        else:
            raise ValueError(f"unknown head {config.head!r}: regression or classes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised L → normalised ab (decoded from the classes for a ``classes`` head)."""
        if self.config.head == "regression":
            return torch.tanh(self.head(self.features(x)))
        L = torch.clamp((x + _L_SHIFT) * _L_SCALE, 0, 100)
        return decode_classes(self, self.logits(x), L, self.config.temperature)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The ``classes`` head's raw scores ``N×Q×H×W`` (what training's cross-entropy sees)."""
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk: everything before the head."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return x

    def stage_names(self) -> list[str]:
        """Names of the modules whose outputs are Table I's rows, in order."""
        n = len(self.encoders)
        return (
            [f"encoders.{i}" for i in range(n)]
            + ["bottleneck"]
            + [f"{kind}.{i}" for i in range(n) for kind in ("ups", "decoders")]
            + ["head"]
        )
