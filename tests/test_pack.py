"""trainer pack: what carries the photos to a GPU machine."""

from __future__ import annotations

import shutil

from tests.conftest import photo_paths
from trainer.data import scan_folders, select
from trainer.pack import data_sources, pack


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
