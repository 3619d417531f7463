"""What makes training generalise: the cross-source split, crops at the photo's own scale,
soft-encoded targets, balanced sampling, the encoder's learning rate, the weight average, and
the per-sector hue scores the comparison reports."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import photo_paths
from trainer import data, tries
from trainer.bins import bin_centres
from trainer.losses import rebalanced_cross_entropy, soft_class_targets
from trainer.metrics import HUE_SECTORS, hue_counts_by_sector
from trainer.train import (
    SMALL_SOURCE,
    TrainConfig,
    effective_photos,
    parameter_groups,
    sampling_weights,
    selection_loss,
    train,
    update_ema,
)


@pytest.fixture(scope="module")
def mixed_sources(tmp_path_factory) -> Path:
    """The test photos under source names: a third of them from held-out (cross) sources."""
    root = tmp_path_factory.mktemp("sources") / "more"
    cross = sorted(data.CROSS_SOURCES)
    for i, path in enumerate(photo_paths()):
        source = cross[i % len(cross)] if i % 3 == 0 else f"src{i % 2}"
        target = root / path.parent.name / f"{source}__{i:02d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return root


def test_held_out_sources_are_never_in_training_or_in_source_validation(mixed_sources):
    photos = data.scan_folder(mixed_sources)
    splits = {name: data.select(photos, name, 0.3) for name in ("train", "val", "cross")}
    assert all(splits.values())
    assert sum(map(len, splits.values())) == len(photos)  # every photo in exactly one split
    assert {data.source_of(p.key) for p in splits["cross"]} <= data.CROSS_SOURCES
    for name in ("train", "val"):
        assert not {data.source_of(p.key) for p in splits[name]} & data.CROSS_SOURCES
    assert {p.source for p in photos} >= {"more/src0", "more/src1"}


def test_spread_keeps_every_part_of_a_sorted_list():
    photos = list(range(100))
    assert data.spread(photos, 4) == [0, 25, 50, 75]
    assert data.spread(photos, 0) == [] and data.spread(photos[:3], 10) == [0, 1, 2]


def _cache_of(images: list[np.ndarray]) -> data.LabCache:
    n = len(images)
    return data.LabCache(images, [f"s__{i}.jpg" for i in range(n)], ["general"] * n, {})


def test_own_scale_crops_are_never_enlarged():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 240, 3), np.uint8)
    sampler = data.PatchSampler(_cache_of([image]), 64, max_downscale=1.5)
    regions = [sampler._region(200, 240, rng) for _ in range(500)]
    sides = np.array(regions)
    assert sides.min() >= 64 * np.sqrt(3 / 4) - 1  # aspect jitter only, no enlargement
    assert np.sqrt(sides.prod(axis=1)).max() <= 64 * 1.5 + 1
    old = data.PatchSampler(_cache_of([image]), 64, min_scale=0.25)
    areas = np.array([np.prod(old._region(200, 240, rng)) for _ in range(500)])
    assert areas.min() > 0.2 * 200 * 240  # the random-resized crops cover most of the photo
    patch = sampler.crop(image, rng)
    assert patch.shape == (64, 64, 3) and patch.dtype == np.uint8


def test_soft_targets_make_gray_neutral_and_keep_a_colour_where_it_is():
    ab = torch.tensor([[0.0, 0.0], [31.0, -42.0]]).T.reshape(1, 2, 1, 2)
    target, nearest = soft_class_targets(ab)
    centres = torch.from_numpy(bin_centres())
    assert torch.allclose(target.sum(dim=1), torch.ones(1, 1, 2))
    assert (target > 0).sum(dim=1).tolist() == [[[5, 5]]]
    mean = torch.einsum("nqhw,qc->nchw", target, centres)[0, :, 0, :]
    assert mean[:, 0].abs().max() < 0.1  # gray: (almost all) the four classes around (0, 0)
    assert torch.dist(mean[:, 1], torch.tensor([31.0, -42.0])) < 2.5
    assert centres[nearest[0, 0, 1]].tolist() == [35.0, -45.0]


def test_soft_and_hard_losses_agree_on_confident_right_answers():
    ab = torch.full((1, 2, 4, 4), 25.0 / 128)  # ab (25, 25) normalised
    weights = torch.ones(len(bin_centres()))
    _, nearest = soft_class_targets(ab * 128)
    logits = torch.full((1, len(bin_centres()), 4, 4), -20.0)
    logits.scatter_(1, nearest[:, None], 20.0)
    hard = rebalanced_cross_entropy(logits, ab, weights, 128.0)
    soft = rebalanced_cross_entropy(logits, ab, weights, 128.0, soft=True)
    assert hard < 1e-6 < soft  # soft targets do not reward full confidence in one class
    spread = torch.log(soft_class_targets(ab * 128)[0].clamp_min(1e-12))
    assert rebalanced_cross_entropy(spread, ab, weights, 128.0, soft=True) < soft


def test_sampling_pools_small_sources_and_keeps_most_photos_in_play():
    sources = ["extra/big"] * 100 + [f"train/pkg{i}" for i in range(4)]
    keys = [f"k{i}.jpg" for i in range(104)]
    cache = data.LabCache(
        [np.zeros((1, 1, 3), np.uint8)] * 104, keys, ["people"] * 104, {}, sources
    )
    weights = sampling_weights(cache)
    assert weights.sum() == pytest.approx(1.0) and SMALL_SOURCE > 4
    big, small = weights[:100].sum(), weights[100:].sum()
    assert big == pytest.approx(10 / 12) and small == pytest.approx(2 / 12)  # √100 : √4 pooled
    assert effective_photos(weights) > 50  # the 4 small-source photos do not take half the draws


def test_the_encoder_gets_its_own_learning_rate():
    model = torch.nn.Module()
    model.encoder, model.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    groups = parameter_groups(model, 0.2)
    assert [g["lr_scale"] for g in groups] == [0.2, 1.0]
    assert [len(g["params"]) for g in groups] == [2, 2]
    assert len(parameter_groups(model, 1.0)) == 1


def test_the_weight_average_moves_slowly_and_copies_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    average = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    average.load_state_dict(model.state_dict())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        average[0].weight.fill_(0.0)
        model[1].running_mean.fill_(3.0)
    update_ema(average, model, 0.99, images_seen=10**6)
    assert average[0].weight.item() == pytest.approx(0.01)
    assert average[1].running_mean.item() == 3.0


def test_best_is_chosen_on_the_cross_source_split_when_it_was_scored():
    worse = {"val_loss": 0.1, "cross_val_hue": 0.5, "cross_val_auc": 0.9}
    better = {"val_loss": 0.2, "cross_val_hue": 0.6, "cross_val_auc": 0.9}
    assert selection_loss(better) < selection_loss(worse)
    assert selection_loss({"val_loss": 0.1}) < selection_loss({"val_loss": 0.2})


def test_hue_sectors_count_the_truths_colourful_pixels_by_hue():
    angles = np.radians([20, 70, 140, 240, 320, 0])
    truth = np.stack([40 * np.cos(angles), 40 * np.sin(angles)], axis=-1)
    truth[-1] = 0  # a gray pixel: counted nowhere
    counts = hue_counts_by_sector(truth, truth)
    assert counts == {name: (1, 1) for name in HUE_SECTORS}
    gray = hue_counts_by_sector(np.zeros_like(truth), truth)
    assert all(right == 0 and total == 1 for right, total in gray.values())


def test_a_run_with_every_generalisation_setting_resumes_exactly(mixed_sources, tmp_path):
    settings = dict(
        data=mixed_sources, preset="effunet", pretrained=False, epochs=1, batch_size=4, size=64,
        epoch_size=8, val_fraction=0.3, cache_max_side=96, seed=1, device="cpu", threads=2,
        loader_threads=1, max_downscale=1.3, soft_targets=True, encoder_lr_scale=0.3,
        ema_decay=0.9, weight_decay=0.01, cross_photos=3, balance=True,
    )  # fmt: skip
    whole = train(TrainConfig(out=tmp_path / "whole", **settings))
    assert "cross_val_hue" in whole.history[-1] and whole.best is not None
    stopped = train(TrainConfig(out=tmp_path / "part", max_minutes=1e-9, **settings))
    assert stopped.interrupted
    resumed = train(TrainConfig(out=tmp_path / "part", **settings), resume=True)
    from trainer.checkpoint import load_checkpoint

    expected, got = load_checkpoint(whole.last), load_checkpoint(resumed.last)
    for key, value in expected.weights.items():  # the averages agree, not only the raw weights
        torch.testing.assert_close(got.weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert got.config["data"]["cross"]["photos"] == 3
    record = tries.add("whole", whole.run_dir, "every setting", tmp_path / "tries.json")
    (entry,) = record["tries"]
    assert entry["images_seen"] == 8 and entry["settings"]["soft_targets"] is True
    assert entry["passes"] == pytest.approx(8 / entry["training_photos"], abs=0.01)
    table = tries.markdown_table(record).splitlines()
    assert len(table) == 2 + 2 and table[-1].startswith("| whole | 1 | 8 |")  # epochs 0 and 1


def test_freeze_batchnorm_keeps_the_loaded_statistics_and_still_trains(mixed_sources, tmp_path):
    from trainer.checkpoint import load_checkpoint

    settings = dict(
        data=mixed_sources, preset="effunet", pretrained=False, epochs=1, batch_size=4, size=64,
        epoch_size=8, val_fraction=0.3, cache_max_side=96, seed=1, device="cpu", threads=2,
        loader_threads=1,
    )  # fmt: skip
    start = train(TrainConfig(out=tmp_path / "start", **settings)).last
    loaded = load_checkpoint(start).weights
    runs = {
        frozen: load_checkpoint(train(TrainConfig(
            out=tmp_path / str(frozen), init=start, freeze_batchnorm=frozen, **settings
        )).last).weights
        for frozen in (True, False)
    }  # fmt: skip
    statistics = [k for k in loaded if k.endswith(("running_mean", "running_var"))]
    assert statistics
    for key in statistics:
        torch.testing.assert_close(runs[True][key], loaded[key], msg=key)
    assert any(not torch.equal(runs[False][key], loaded[key]) for key in statistics)
    scales = [k.replace("running_mean", "weight") for k in statistics if "running_mean" in k]
    assert any(not torch.equal(runs[True][key], loaded[key]) for key in scales)  # still trains
