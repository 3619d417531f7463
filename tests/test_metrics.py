"""trainer.metrics against known values and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from trainer.metrics import ab_error_auc, colorfulness, psnr, ssim


def test_psnr_matches_skimage(photos):
    a, b = photos[0], np.clip(photos[0].astype(int) + 3, 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b), abs=1e-6)
    assert psnr(a, a) == float("inf")


def test_ssim_matches_skimage_gaussian_ssim(photos):
    a = photos[0]
    b = np.clip(a.astype(int) + np.random.default_rng(0).integers(-20, 20, a.shape), 0, 255)
    b = b.astype(np.uint8)
    ref = structural_similarity(
        a, b, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255,
    )  # fmt: skip
    assert ssim(a, b) == pytest.approx(ref, abs=2e-3)
    assert ssim(a, a) == pytest.approx(1.0)


def test_colourfulness_is_zero_for_gray_and_positive_for_photos(photos):
    gray = np.repeat(photos[0][..., :1], 3, axis=2)
    assert colorfulness(gray) == pytest.approx(0.0)
    assert all(colorfulness(p) > 1 for p in photos)
    pure_red = np.zeros((4, 4, 3), np.uint8)
    pure_red[..., 2] = 255  # BGR: R=255 → rg=255, yb=127.5, no spread
    assert colorfulness(pure_red) == pytest.approx(0.3 * np.hypot(255, 127.5))


def test_auc_perfect_constant_and_far():
    truth = np.zeros((8, 8, 2))
    assert ab_error_auc(truth, truth) == pytest.approx(1.0)
    shifted = truth + np.array([6.0, 8.0])  # error 10 everywhere: thresholds 10..150 count
    assert ab_error_auc(shifted, truth) == pytest.approx(141 / 151)
    assert ab_error_auc(truth + 500, truth) == pytest.approx(0.0)


def test_hue_accuracy_counts_the_truths_colourful_pixels_given_the_right_hue():
    from trainer.metrics import hue_accuracy

    angles = np.radians(np.arange(0, 360, 10, dtype=np.float64))
    truth = np.stack([40 * np.cos(angles), 40 * np.sin(angles)], axis=-1)
    assert hue_accuracy(truth, truth) == 1.0
    assert hue_accuracy(np.zeros_like(truth), truth) == 0.0  # gray scores 0
    turned = angles + np.radians(25)
    rotated = np.stack([40 * np.cos(turned), 40 * np.sin(turned)], axis=-1)
    assert hue_accuracy(rotated, truth) == 1.0  # within 30°
    opposite = -truth
    assert hue_accuracy(opposite, truth) == 0.0
    faint = truth * 0.1  # chroma 4: too faint to count as a hue
    assert hue_accuracy(faint, truth) == 0.0
    half = np.concatenate([truth[:18], opposite[18:]])
    assert hue_accuracy(half, truth) == 0.5
    assert np.isnan(hue_accuracy(truth, np.zeros_like(truth)))  # no colourful pixel: NaN
