"""trainer pack and balanced sampling: what carries the photos to a GPU machine and weighs them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import photo_paths
from trainer.data import LabCache, scan_folders, select
from trainer.pack import data_sources, pack
from trainer.train import sampling_weights


def test_a_pack_keeps_the_split_and_names_its_sources(tmp_path):
    source = tmp_path / "photos"
    for i, path in enumerate(photo_paths()):  # new names: the committed ones are all "val"
        target = source / path.parent.name / f"src{i % 3}__photo{i:02d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    out = tmp_path / "pack"
    count, size = pack([source], out, max_side=96, quality=80, split="train", val_fraction=0.3)
    train = select(scan_folders([source]), "train", 0.3)
    assert count == len(train) > 0 and size > 0
    packed = scan_folders([out])
    assert {(p.category, p.key) for p in packed} == {(p.category, p.key) for p in train}
    assert select(packed, "val", 0.3) == []  # the validation photos stayed behind
    assert data_sources(out) == ["photos"]


def test_balanced_sampling_keeps_one_source_from_dominating():
    keys = [f"big__{i}.jpg" for i in range(100)] + [f"s{i}__x.jpg" for i in range(4)]
    cache = LabCache([np.zeros((1, 1, 3), np.uint8)] * 104, keys, ["people"] * 104, {})
    weights = sampling_weights(cache)
    assert weights.sum() == pytest.approx(1.0)
    big, small = weights[:100].sum(), weights[100:].sum()
    assert big == pytest.approx(10 / 14) and small == pytest.approx(4 / 14)  # √100 : 4 × √1
