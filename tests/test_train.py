"""trainer.train: a real (tiny) training run that checkpoints, resumes exactly and learns."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import photo_paths
from trainer.checkpoint import load_checkpoint
from trainer.train import TrainConfig, train


@pytest.fixture(scope="module")
def twenty_photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("twenty")
    for path in photo_paths()[:20]:
        target = root / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    return root


def _config(data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=data, out=out, epochs=2, batch_size=8, size=64, epoch_size=32, val_fraction=0.05,
        cache_max_side=128, seed=3, device="cpu", threads=2, loader_threads=2,
    )  # fmt: skip
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def full_run(twenty_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    started = time.perf_counter()
    result = train(_config(twenty_photos, out))
    return result, time.perf_counter() - started


def test_two_epochs_on_twenty_photos_write_checkpoints_and_learn(full_run):
    result, seconds = full_run
    assert seconds < 120
    assert not result.interrupted and result.epochs_done == 3  # epoch 0 (untrained) + 2
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json",
                 "metrics.csv", "curves.png"):  # fmt: skip
        assert (result.run_dir / name).is_file(), name
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    best = load_checkpoint(result.best)
    assert best.config["preset"] == "seed" and best.config["category"] == "general"
    assert best.config["boost"] == [2.0, 2.0]  # the paper's boost for a general model
    assert best.config["data"]["train"]["photos"] + best.config["data"]["val"]["photos"] == 20
    assert best.optimizer_tensors == {} and best.train_state is None


def test_interrupted_run_resumes_exactly(full_run, twenty_photos, tmp_path):
    result, _ = full_run
    stopped = train(_config(twenty_photos, tmp_path, max_minutes=1e-9))
    assert stopped.interrupted
    state = load_checkpoint(stopped.last).train_state
    assert (state["epoch"], state["step"]) == (0, 1)  # stopped after the first step
    resumed = train(_config(twenty_photos, tmp_path), resume=True)
    assert not resumed.interrupted
    expected = load_checkpoint(result.last).weights
    got = load_checkpoint(resumed.last).weights
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)
    history = [h["epoch"] for h in load_checkpoint(resumed.last).train_state["history"]]
    assert history == [0, 1, 2]


def test_resume_without_checkpoint_is_a_clear_error(twenty_photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_config(twenty_photos, tmp_path), resume=True)


def test_too_few_photos_is_a_clear_error(twenty_photos, tmp_path):
    with pytest.raises(ValueError, match="validation photos"):
        train(_config(twenty_photos, tmp_path, val_fraction=0.0))
