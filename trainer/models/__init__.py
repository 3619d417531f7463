"""The architecture registry: every network the trainer builds, trains, evaluates and exports.

An *architecture* is a config dataclass (``to_dict``/``from_dict``, an ``input_multiple`` and a
``head``) and the module class built from it; a *preset* names one architecture with one config.
Adding an architecture is one builder module and one :func:`register` call; checkpoint loading,
training, evaluation and ONNX export all go through :func:`build_from_spec`.

Every module follows one contract:

* input: normalised L ``N×1×H×W`` (``engine.model_io.SEED_NORMALIZATION``), H and W multiples of
  ``config.input_multiple``; ``forward`` returns normalised ab ``N×2×H×W``;
* ``config.head`` is ``"regression"`` (trained with MSE on ``forward``) or ``"classes"``, whose
  ``logits(x)`` gives class scores at ``1/logit_stride`` of the input's resolution (trained with
  rarity-rebalanced cross-entropy) that ``forward`` decodes in the graph.

The export (:mod:`export.onnx`) wraps the module with the normalisation, so every exported graph
takes L in 0..100 and returns ab in LAB units.

=============  ==========  =================================================================
preset         arch        what
=============  ==========  =================================================================
``seed``       unet        the paper's Table I U-Net, MSE (1,002,306 parameters)
``vivid``      unet        the same trunk, 222-class head at full resolution
``effunet``    effunet     EfficientNet-Lite0 encoder (ImageNet), U-Net decoder, ¼-res head
=============  ==========  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.model_io import Normalization
from trainer.models.effunet import EffUNet, EffUNetConfig, load_lite0_imagenet
from trainer.models.unet import UNet, UNetConfig


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its config type and the module built from a config."""

    name: str
    config_type: type
    module_type: type[nn.Module]
    description: str
    pretrained: Callable[[nn.Module], list[str]] | None = None
    """Loads ImageNet (or other) weights into a fresh module; returns the tensors left as
    initialised. None: the architecture trains from scratch."""


ARCHITECTURES: dict[str, Architecture] = {}
PRESETS: dict[str, tuple[str, Any]] = {}
"""preset name → (architecture name, config)."""
LEGACY_ARCHITECTURE = "unet"
"""Checkpoints written before the registry stored a U-Net config without a name."""


def register(
    name: str,
    config_type: type,
    module_type: type[nn.Module],
    description: str = "",
    pretrained: Callable[[nn.Module], list[str]] | None = None,
) -> Architecture:
    """Add an architecture (a name may be registered again, e.g. by a test, with the same types)."""
    arch = Architecture(name, config_type, module_type, description, pretrained)
    ARCHITECTURES[name] = arch
    return arch


def register_preset(name: str, architecture: str, config: Any) -> None:
    """Name one configuration of a registered architecture."""
    if architecture not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}")
    PRESETS[name] = (architecture, config)


def preset_spec(preset: str) -> dict:
    """The architecture spec of a preset: ``{"name": architecture, **config}`` (stored in
    checkpoints and ONNX metadata)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    name, config = PRESETS[preset]
    return {"name": name, **config.to_dict()}


def config_from_spec(spec: dict) -> tuple[Architecture, Any]:
    """The architecture and its config from a stored spec."""
    data = dict(spec)
    name = data.pop("name", LEGACY_ARCHITECTURE)
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    return arch, arch.config_type.from_dict(data)


def build_from_spec(spec: dict) -> nn.Module:
    """A freshly initialised module from a stored spec."""
    arch, config = config_from_spec(spec)
    return arch.module_type(config)


def architecture_of(spec: dict) -> Architecture:
    """The registered architecture of a stored spec."""
    return config_from_spec(spec)[0]


def build_model(preset: str = "seed") -> nn.Module:
    """A freshly initialised module of a preset."""
    return build_from_spec(preset_spec(preset))


class WithNormalization(nn.Module):
    """A trainer module wrapped with its normalisation: L (0..100) in, ab (LAB units) out — what
    every exported graph and the engine's torch backend run."""

    def __init__(self, model: nn.Module, norm: Normalization) -> None:
        super().__init__()
        self.model, self.norm = model, norm

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        x = L / self.norm.l_scale - self.norm.l_shift
        return self.model(x) * self.norm.ab_scale


def count_parameters(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """Multiply-accumulates of one forward pass on an ``height×width`` image (convolutions only)."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            macs += inputs[0].numel() // inputs[0].shape[0] * module.out_channels * k
        else:
            per_output = module.in_channels // module.groups * k
            macs += output.numel() // output.shape[0] * per_output

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, height, width))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return macs


register("unet", UNetConfig, UNet, "the paper's U-Net (Table I), width/depth configurable")
register(
    "effunet",
    EffUNetConfig,
    EffUNet,
    "U-Net decoder on an EfficientNet-Lite0 encoder",
    pretrained=load_lite0_imagenet,
)
register_preset("seed", "unet", UNetConfig(widths=(32, 64, 128), bottleneck_res_blocks=1))
register_preset(
    "vivid", "unet", UNetConfig(widths=(32, 64, 128), bottleneck_res_blocks=1, head="classes")
)
register_preset("effunet", "effunet", EffUNetConfig())
