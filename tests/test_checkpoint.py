"""trainer.checkpoint: safetensors + JSON config, atomic, no pickle."""

from __future__ import annotations

import json

import pytest
import torch

from trainer.checkpoint import (
    Checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from trainer.models import build_model, preset_spec

CONFIG = {
    "preset": "seed",
    "architecture": preset_spec("seed"),
    "normalization": {"l_scale": 50.0, "l_shift": 1.0, "ab_scale": 128.0},
    "boost": [1.6, 1.6],
}


def test_round_trip_with_optimizer(tmp_path):
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 16, 16)).pow(2).mean().backward()
    optimizer.step()
    tensors, rest = optimizer_to_tensors(optimizer)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, Checkpoint(model.state_dict(), CONFIG, {"epoch": 3}, tensors))
    assert json.loads(path.with_suffix(".json").read_text()) == CONFIG
    assert not list(tmp_path.glob(".*tmp"))  # temp files renamed away

    loaded = load_checkpoint(path, with_optimizer=True)
    assert loaded.config == CONFIG and loaded.train_state == {"epoch": 3}
    assert loaded.boost == (1.6, 1.6)
    rebuilt = loaded.build_model()
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    fresh = torch.optim.Adam(build_model().parameters(), lr=1e-3)
    optimizer_from_tensors(fresh, loaded.optimizer_tensors, rest)
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_weights_only_load_skips_optimizer(tmp_path):
    model = build_model()
    path = tmp_path / "ck.safetensors"
    save_checkpoint(
        path, Checkpoint(model.state_dict(), CONFIG, None, {"0.exp_avg": torch.ones(3)})
    )
    loaded = load_checkpoint(path)
    assert loaded.optimizer_tensors == {} and loaded.train_state is None
    assert set(loaded.weights) == set(model.state_dict())


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04 pickle bytes are never loaded")
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint") as info:
        load_checkpoint(junk)
    assert "\n" not in str(info.value)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="no 'config' metadata"):
        load_checkpoint(foreign)
