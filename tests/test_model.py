"""trainer.models.unet: the U-Net of Table I."""

from __future__ import annotations

import pytest
import torch

from trainer.models import PRESETS, build_model, count_macs, count_parameters
from trainer.models.unet import UNet, UNetConfig

TABLE_I_AT_256 = {  # module → output shape (C, H, W) for a 1×1×256×256 input
    "encoders.0": (32, 256, 256),
    "encoders.1": (64, 128, 128),
    "bottleneck": (128, 64, 64),
    "ups.0": (64, 128, 128),
    "decoders.0": (64, 128, 128),
    "ups.1": (32, 256, 256),
    "decoders.1": (32, 256, 256),
    "head": (2, 256, 256),
}


def test_seed_parameter_count_and_macs():
    model = build_model("seed")
    assert count_parameters(model) == 1_002_306
    assert count_macs(model, 256, 256) / 1e9 == pytest.approx(10.56, abs=0.01)


def test_every_stage_of_table_one_at_256():
    model = build_model("seed").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name in model.stage_names():
        module = model.get_submodule(name)
        module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 256, 256))
    assert shapes == TABLE_I_AT_256
    assert tuple(out.shape) == (1, 2, 256, 256)


def test_stage_structure_matches_the_paper():
    model = build_model("seed")
    bottleneck = model.bottleneck
    assert len(bottleneck) == 2  # ConvBlock(64, 128) then ResBlock(128)
    assert model.ups[0].kernel_size == (2, 2) and model.ups[0].stride == (2, 2)
    assert model.head.kernel_size == (1, 1)


@pytest.mark.parametrize("hw", [(4, 4), (36, 52), (100, 64), (256, 384)])
def test_any_size_divisible_by_four(hw):
    model = build_model("seed").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *hw))
    assert tuple(out.shape) == (2, 2, *hw)
    assert out.abs().max() <= 1.0  # tanh output


def test_width_and_depth_parameters_make_other_presets():
    wide = UNet(UNetConfig(widths=(48, 96, 192, 384), bottleneck_res_blocks=2)).eval()
    assert wide.config.depth == 3
    with torch.no_grad():
        assert tuple(wide(torch.zeros(1, 1, 64, 40)).shape) == (1, 2, 64, 40)
    assert count_parameters(wide) > count_parameters(build_model("seed"))
    assert UNetConfig.from_dict(PRESETS["seed"][1].to_dict()) == PRESETS["seed"][1]


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_model("huge")
