"""Checkpoints: safetensors weights with their JSON config in the file's metadata. Never pickle.

A checkpoint is one ``.safetensors`` file (written atomically: temp file + rename) whose metadata
holds ``config`` (preset, architecture, normalisation, boost, category, data summary, metrics) and,
for resumable training checkpoints, ``train_state`` (epoch, step, RNG states) with the optimizer's
tensors stored beside the weights under the ``optimizer/`` prefix. A ``.json`` twin of the config
is written next to it for people and tools that do not read safetensors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.model_io import Normalization
from trainer.models import build_from_spec

OPTIMIZER_PREFIX = "optimizer/"


@dataclass
class Checkpoint:
    """Weights, config and (optionally) the state needed to resume training."""

    weights: dict[str, torch.Tensor]
    config: dict
    train_state: dict | None = None
    optimizer_tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def architecture(self) -> dict:
        """The architecture spec (:mod:`trainer.models`): its ``name`` and config."""
        return self.config["architecture"]

    @property
    def normalization(self) -> Normalization:
        return Normalization.from_dict(self.config["normalization"])

    @property
    def boost(self) -> tuple[float, float]:
        a, b = self.config.get("boost", (1.0, 1.0))
        return float(a), float(b)

    def build_model(self) -> torch.nn.Module:
        """The registered architecture with these weights (float32), in eval mode."""
        model = build_from_spec(self.architecture)
        model.load_state_dict({k: v.float() for k, v in self.weights.items()})
        return model.eval()


def save_checkpoint(path: Path | str, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically to ``path`` (and its config to ``path.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.weights.items()}
    for key, value in checkpoint.optimizer_tensors.items():
        tensors[OPTIMIZER_PREFIX + key] = value.detach().cpu().contiguous()
    metadata = {"format": "colorization-checkpoint/1", "config": json.dumps(checkpoint.config)}
    if checkpoint.train_state is not None:
        metadata["train_state"] = json.dumps(checkpoint.train_state)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    json_tmp = path.with_name(f".{path.stem}.json.tmp")
    json_tmp.write_text(json.dumps(checkpoint.config, indent=2) + "\n")
    os.replace(json_tmp, path.with_suffix(".json"))


def load_checkpoint(path: Path | str, with_optimizer: bool = False) -> Checkpoint:
    """Read a checkpoint; a file that is not one of ours gives a one-line ``ValueError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            weights, optimizer = {}, {}
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if key.startswith(OPTIMIZER_PREFIX):
                    if with_optimizer:
                        optimizer[key[len(OPTIMIZER_PREFIX) :]] = f.get_tensor(key)
                else:
                    weights[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if "config" not in metadata:
        raise ValueError(f"{path}: safetensors file has no 'config' metadata; not a checkpoint")
    state = json.loads(metadata["train_state"]) if "train_state" in metadata else None
    return Checkpoint(weights, json.loads(metadata["config"]), state, optimizer)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into tensors (for safetensors) and a JSON-able rest."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, state in state_dict["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the state into ``optimizer``."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, scalars in rest["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
