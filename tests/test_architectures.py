"""trainer.models: the registry, every architecture's export and parity, the pretrained encoder,
and a second architecture added from outside (a test) that trains, exports and passes parity."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from export import onnx as onnx_export
from tests.test_train import _config, twenty_photos  # noqa: F401 (fixture)
from trainer import bins
from trainer.checkpoint import Checkpoint, load_checkpoint
from trainer.losses import class_targets
from trainer.models import (
    ARCHITECTURES,
    PRESETS,
    build_from_spec,
    build_model,
    count_parameters,
    preset_spec,
    register,
    register_preset,
)
from trainer.models.effunet import EfficientNetLiteEncoder, load_pretrained
from trainer.train import train

SEED_NORM = {"l_scale": 50.0, "l_shift": 1.0, "ab_scale": 128.0}


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a wrong fold shows in the parity check."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model.eval()


def _checkpoint(model: nn.Module, spec: dict, size: int = 64) -> Checkpoint:
    config = {"preset": "test", "architecture": spec, "normalization": SEED_NORM,
              "input_size": size, "category": "general", "boost": [1.0, 1.0]}  # fmt: skip
    return Checkpoint(model.state_dict(), config)


def test_the_registry_builds_every_preset_and_the_seed_is_the_papers():
    assert {"unet", "effunet"} <= set(ARCHITECTURES)
    for preset in PRESETS:
        model = build_model(preset).eval()
        multiple = model.config.input_multiple
        with torch.no_grad():
            out = model(torch.zeros(2, 1, 2 * multiple, 3 * multiple))
        assert out.shape == (2, 2, 2 * multiple, 3 * multiple), preset
        assert build_from_spec(preset_spec(preset)).state_dict().keys() == model.state_dict().keys()
    assert count_parameters(build_model("seed")) == 1_002_306


@pytest.mark.parametrize("preset", ["seed", "vivid", "effunet"])
def test_every_architecture_exports_folded_and_passes_parity(preset, tmp_path):
    model = _randomise_batchnorm(build_model(preset))
    folded = onnx_export.fold_batchnorm(model)
    assert not [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.rand(1, 1, 64, 96) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    report = onnx_export.export_onnx(_checkpoint(model, preset_spec(preset)), tmp_path / "m.onnx")
    assert report.parity_max_abs_ab < onnx_export.PARITY_LIMIT


def test_pretrained_weights_map_every_encoder_tensor_and_sum_the_rgb_stem():
    rgb = EfficientNetLiteEncoder()
    rgb._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)  # as the ImageNet file has it
    state = {k: torch.randn_like(v, dtype=torch.float32) if v.is_floating_point() else v
             for k, v in rgb.state_dict().items()}  # fmt: skip
    state["_fc.weight"] = torch.zeros(1000, 1280)  # the classifier: not used
    model = build_model("effunet")
    left = load_pretrained(model, state)
    assert left == []
    own = model.encoder.state_dict()
    for key, value in state.items():
        if key == "_conv_stem.weight":
            torch.testing.assert_close(own[key], value.sum(dim=1, keepdim=True))
        elif key in own:
            torch.testing.assert_close(own[key], value)
    bad = {"_blocks.0._project_conv.weight": torch.zeros(8, 32, 1, 1)}
    with pytest.raises(ValueError, match=r"_blocks\.0\._project_conv\.weight"):
        load_pretrained(build_model("effunet"), bad)


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8
    head: str = "regression"

    @property
    def input_multiple(self) -> int:
        return 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyConfig:
        return cls(**data)


class TinyNet(nn.Module):
    """A second architecture made here: conv-BN-ReLU, a strided conv-BN, up, a tanh head."""

    logit_stride: ClassVar[int] = 1

    def __init__(self, config: TinyConfig = TinyConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.down = nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(w)
        self.head = nn.Conv2d(2 * w, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = torch.relu(self.stem(x))
        deep = torch.relu(self.down_bn(self.down(skip)))
        up = nn.functional.interpolate(deep, size=x.shape[-2:], mode="nearest")
        return torch.tanh(self.head(torch.cat([up, skip], dim=1)))


@pytest.fixture
def tiny_registered():
    register("tiny-test", TinyConfig, TinyNet, "made by a test")
    register_preset("tiny-test", "tiny-test", TinyConfig())
    yield
    ARCHITECTURES.pop("tiny-test")
    PRESETS.pop("tiny-test")


def test_a_new_architecture_trains_exports_and_passes_parity_with_no_other_change(
    tiny_registered,
    twenty_photos,  # noqa: F811
    tmp_path,
):
    result = train(_config(twenty_photos, tmp_path / "run", preset="tiny-test", epochs=1))
    assert np.isfinite(result.history[-1]["train_loss"])
    checkpoint = load_checkpoint(result.last)
    assert checkpoint.architecture["name"] == "tiny-test"
    report = onnx_export.export_onnx(result.last, tmp_path / "tiny.onnx")
    assert report.parity_max_abs_ab < onnx_export.PARITY_LIMIT


def test_effunet_two_epochs_on_twenty_photos_lower_the_validation_loss(
    twenty_photos,  # noqa: F811
    tmp_path,
):
    config = _config(twenty_photos, tmp_path / "eff", preset="effunet", epochs=2, epoch_size=64,
                     pretrained=False, lr=1e-3)  # fmt: skip
    history = train(config).history
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_class_targets_on_the_device_match_the_numpy_bins():
    rng = np.random.default_rng(0)
    ab = rng.uniform(-120, 120, (3, 2, 5, 7)).astype(np.float32)
    expected = bins.classes_of(np.moveaxis(ab, 1, 0))
    np.testing.assert_array_equal(class_targets(torch.from_numpy(ab)).numpy(), expected)
