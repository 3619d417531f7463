"""trainer.data: scanning, the split, the LAB cache and the patch sampler."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import color, model_io
from tests.conftest import PHOTOS, photo_paths
from trainer import data


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small dataset: the test photos, a WebP, a gray photo, a broken file and a non-image."""
    root = tmp_path / "photos"
    shutil.copytree(PHOTOS, root)
    first = cv2.imread(str(photo_paths()[0]))
    cv2.imwrite(str(root / "loose.webp"), first, [cv2.IMWRITE_WEBP_QUALITY, 90])
    gray = cv2.cvtColor(cv2.cvtColor(first, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(root / "people" / "gray.png"), gray)
    (root / "people" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_scan_finds_images_with_categories(folder):
    photos = data.scan_folder(folder)
    assert len(photos) == 24 + 3
    by_key = {p.key: p for p in photos}
    assert by_key["loose.webp"].category == data.DEFAULT_CATEGORY
    assert by_key["gray.png"].category == "people"
    assert {p.category for p in photos} == {"general", "landscape", "people"}
    assert all("/" not in p.key for p in photos)  # key = path inside the category folder


def test_scan_of_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        data.scan_folder(tmp_path / "nope")


def test_split_is_deterministic_and_ignores_order_and_category(folder):
    photos = data.scan_folder(folder)
    val = {p.key for p in data.select(photos, "val", 0.3)}
    val_reversed = {p.key for p in data.select(list(reversed(photos)), "val", 0.3)}
    assert val == val_reversed and 0 < len(val) < len(photos)
    train = {p.key for p in data.select(photos, "train", 0.3)}
    assert not val & train and len(val | train) == len(photos)
    assert data.split_of("x/a.jpg", 0.3) == data.split_of("x/a.jpg", 0.3)
    landscape = data.select(photos, None, categories=["landscape"])
    assert len(landscape) == 8 and all(p.category == "landscape" for p in landscape)


def test_cache_skips_gray_and_unreadable_and_is_reused(folder, tmp_path, monkeypatch):
    photos = data.scan_folder(folder)
    cache = data.build_cache(photos, max_side=96, cache_dir=tmp_path / "cache")
    assert cache.skipped == {"people/gray.png": "grayscale", "people/broken.jpg": "unreadable"}
    assert len(cache) == 25 and "loose.webp" in cache.keys
    assert all(im.dtype == np.uint8 and max(im.shape[:2]) <= 96 for im in cache.images)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(data, "load_lab", no_decoding)
    again = data.build_cache(photos, max_side=96, cache_dir=tmp_path / "cache")
    assert again.keys == cache.keys
    assert all(np.array_equal(a, b) for a, b in zip(again.images, cache.images, strict=True))


def test_quantized_lab_is_within_half_a_step():
    lab = color.bgr_to_lab(cv2.imread(str(photo_paths()[3])))
    back = data.dequantize_lab(data.quantize_lab(lab))
    assert np.abs(back[..., 0] - lab[..., 0]).max() <= 0.5 * 100 / 255 + 1e-4
    assert np.abs(back[..., 1:] - lab[..., 1:]).max() <= 0.5 + 1e-4


def test_sampler_batches_are_normalised_and_reproducible(folder):
    cache = data.build_cache(data.scan_folder(folder), max_side=128)
    sampler = data.PatchSampler(cache, size=32)
    L, ab = sampler.batch(5, np.random.default_rng(7))
    assert L.shape == (5, 1, 32, 32) and ab.shape == (5, 2, 32, 32)
    assert L.dtype == ab.dtype == np.float32
    assert L.min() >= -1 and L.max() <= 1 and np.abs(ab).max() <= 1
    L2, ab2 = sampler.batch(5, np.random.default_rng(7))
    assert np.array_equal(L, L2) and np.array_equal(ab, ab2)
    L3, _ = sampler.batch(5, np.random.default_rng(8))
    assert not np.array_equal(L, L3)


def test_training_pairs_use_the_engine_normalisation():
    lab_q = data.quantize_lab(color.bgr_to_lab(cv2.imread(str(photo_paths()[5]))))
    L, ab = data.lab_to_model_pair(lab_q)
    lab = data.dequantize_lab(lab_q)
    np.testing.assert_allclose(model_io.denormalize_l(L[0]), lab[..., 0], atol=1e-4)
    np.testing.assert_allclose(
        model_io.denormalize_ab(ab).transpose(1, 2, 0), lab[..., 1:], atol=1e-4
    )


def test_validation_batch_resizes_whole_photos():
    cache = data.build_cache(data.scan_folder(PHOTOS)[:3], max_side=128)
    L, ab = data.whole_image_batch(cache, 48)
    assert L.shape == (3, 1, 48, 48) and ab.shape == (3, 2, 48, 48)
