"""engine.color: LAB conversion, normalisation, resizing, boost, merge, gamut fit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import deltaE_cie76, rgb2lab

from engine import color, model_io
from trainer.metrics import psnr


def test_lab_round_trip_under_half_a_level(photos):
    for bgr in photos:
        unit = color.to_unit_float(bgr)
        back = color.lab_to_bgr(color.bgr_to_lab(bgr), np.float32)
        assert np.abs(back - unit).max() < 0.5 / 255
        assert np.array_equal(color.lab_to_bgr(color.bgr_to_lab(bgr)), bgr)


def test_agrees_with_skimage_within_one_delta_e(photos):
    for bgr in photos:
        ours = color.bgr_to_lab(bgr)
        reference = rgb2lab(bgr[:, :, ::-1])
        assert deltaE_cie76(ours, reference).max() < 1.0


def test_rgb_twins_match_bgr_functions(photos):
    bgr = photos[0]
    rgb = bgr[:, :, ::-1]
    assert np.array_equal(color.rgb_to_lab(rgb), color.bgr_to_lab(bgr))
    lab = color.bgr_to_lab(bgr)
    assert np.array_equal(color.lab_to_rgb(lab), rgb)


def test_sixteen_bit_matches_eight_bit_and_round_trips(photos):
    bgr8 = photos[1]
    bgr16 = bgr8.astype(np.uint16) * 257
    np.testing.assert_allclose(color.bgr_to_lab(bgr16), color.bgr_to_lab(bgr8), atol=1e-3)
    back16 = color.lab_to_bgr(color.bgr_to_lab(bgr16), np.uint16)
    assert back16.dtype == np.uint16
    assert np.abs(back16.astype(np.int64) - bgr16).max() <= 8  # < 0.5/255 of full scale


def test_gray_and_alpha_inputs(photos):
    bgr = photos[2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lab_gray = color.bgr_to_lab(gray)
    assert lab_gray.shape == (*gray.shape, 3)
    assert np.abs(lab_gray[..., 1:]).max() < 1e-3
    np.testing.assert_allclose(color.luminance(gray[:, :, None]), lab_gray[..., 0], atol=0.01)
    bgra = np.dstack([bgr, np.full(gray.shape, 7, np.uint8)])
    assert np.array_equal(color.bgr_to_lab(bgra), color.bgr_to_lab(bgr))
    _, alpha = color.split_alpha(bgra)
    assert alpha is not None and (alpha == 7).all()


def test_fast_luminance_equals_the_lab_l(photos):
    for bgr in photos[:6]:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for image in (bgr, gray, gray.astype(np.uint16) * 257, color.to_unit_float(bgr)):
            expected = color.bgr_to_lab(image)[..., 0]
            np.testing.assert_allclose(color.luminance(image), expected, atol=0.01)


def test_in_gamut_conversion_equals_fit_then_convert(photos):
    lab = color.bgr_to_lab(photos[4])
    lab[..., 1:] *= 2.5  # push many pixels out of gamut
    fused = color.lab_to_bgr_in_gamut(lab)
    separate = color.lab_to_bgr(color.fit_to_gamut(lab))
    assert np.abs(fused.astype(int) - separate).max() <= 1
    assert fused.dtype == np.uint8
    assert color.lab_to_bgr_in_gamut(lab, np.uint16).dtype == np.uint16


def test_unsupported_inputs_say_what_was_expected():
    with pytest.raises(TypeError, match="uint8, uint16 or float32"):
        color.bgr_to_lab(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="H×W"):
        color.bgr_to_lab(np.zeros((4, 4, 5), np.uint8))


def test_normalisation_is_the_papers_and_inverts():
    L = np.array([0.0, 50.0, 100.0], np.float32)
    np.testing.assert_allclose(model_io.normalize_l(L), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(model_io.denormalize_l(model_io.normalize_l(L)), L, atol=1e-5)
    ab = np.array([-128.0, 0.0, 64.0], np.float32)
    np.testing.assert_allclose(model_io.normalize_ab(ab), [-1.0, 0.0, 0.5])
    np.testing.assert_allclose(model_io.denormalize_ab(model_io.normalize_ab(ab)), ab)


def test_model_input_shape_and_range(photos):
    L = color.luminance(photos[3])
    x = model_io.model_input(L, 64)
    assert x.shape == (1, 64, 64) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert model_io.model_input(L, (32, 48)).shape == (1, 32, 48)


def test_fit_long_side_never_enlarges_and_rounds():
    assert color.fit_long_side((1000, 500), 512) == (512, 256)
    assert color.fit_long_side((100, 50), 512) == (100, 50)
    assert color.fit_long_side((1000, 500), 512, multiple=4) == (512, 256)
    assert color.fit_long_side((999, 333), 256, multiple=4) == (256, 84)


def test_merging_own_ab_reproduces_the_image(photos):
    for bgr in photos:
        lab = color.bgr_to_lab(bgr)
        ab_norm = model_io.normalize_ab(np.transpose(lab[..., 1:], (2, 0, 1)))
        out = model_io.colorize_output(lab[..., 0], ab_norm)
        assert psnr(out, bgr) > 45


def test_boost_scales_per_channel_and_clamps():
    ab = np.array([[[10.0, -20.0], [100.0, -100.0]]], np.float32)
    out = model_io.boost_ab(ab, (2.0, 1.5))
    np.testing.assert_allclose(out[0, 0], [20.0, -30.0])
    np.testing.assert_allclose(out[0, 1], [color.AB_LIMIT, -color.AB_LIMIT])
    assert np.array_equal(ab[0, 1], [100.0, -100.0])  # input untouched


def test_colorized_output_keeps_the_input_luminance(photos):
    """With the paper's strongest boost (×2), the output's L stays the input's L."""
    for bgr in photos:
        lab = color.bgr_to_lab(bgr)
        small_ab = cv2.resize(lab[..., 1:], (32, 32), interpolation=cv2.INTER_AREA)
        prediction = model_io.normalize_ab(np.transpose(small_ab, (2, 0, 1)))
        out = model_io.colorize_output(lab[..., 0], prediction, boost=(2.0, 2.0))
        delta_levels = np.abs(color.luminance(out) - lab[..., 0]) * 255 / 100
        assert delta_levels.mean() <= 0.5


def test_fit_to_gamut_keeps_l_and_only_shrinks_chroma():
    L = np.full((1, 3), 60.0, np.float32)
    ab = np.array([[[120.0, 120.0], [-120.0, 100.0], [5.0, 5.0]]], np.float32)
    lab = color.merge_l_ab(L, ab)
    fitted = color.fit_to_gamut(lab)
    assert np.array_equal(fitted[..., 0], lab[..., 0])
    assert np.array_equal(fitted[0, 2], lab[0, 2])  # in gamut: unchanged
    assert (color.chroma(fitted) <= color.chroma(lab) + 1e-4).all()
    bgr = cv2.cvtColor(fitted, cv2.COLOR_Lab2LBGR)
    assert bgr.min() >= -1e-3 and bgr.max() <= 1 + 1e-3


def test_upsample_ab_and_merge_shapes():
    ab = np.zeros((2, 8, 8), np.float32)
    up = model_io.upsample_ab(ab, (30, 20))
    assert up.shape == (30, 20, 2)
    with pytest.raises(ValueError, match="upsample ab first"):
        color.merge_l_ab(np.zeros((10, 10), np.float32), up)


def test_grayscale_detection(photos):
    assert not color.is_grayscale(color.bgr_to_lab(photos[0]))
    gray = cv2.cvtColor(cv2.cvtColor(photos[0], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert color.is_grayscale(color.bgr_to_lab(gray))
