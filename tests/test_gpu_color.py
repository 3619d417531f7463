"""engine.gpu_color (torch) against engine.color / engine.model_io (numpy), on CPU tensors.

Bounds: L within 1e-3; LAB within 0.05 of OpenCV's (its own matrix) and round trip within 1e-3;
the gamut fit lands inside the gamut with L unchanged, ΔE ≤ 1.5 from the numpy fit on any pixel
and 0.01 on average (the same edge table; the few pixels it leaves are bisected in float32 on
either side); the model input within 0.05 L on average (area reduction at non-integer ratios
weighs border pixels a little differently); the 8-bit colour output within 1 level on average
and ΔE ≤ 2 on any pixel (0.05 on average) of ``model_io.colorize_output``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import color, model_io
from tests.conftest import photo_paths

torch = pytest.importorskip("torch")
gpu_color = pytest.importorskip("engine.gpu_color")


def _photos(count: int = 4) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photo_paths()[:count]]


def test_luminance_matches_the_numpy_one_for_colour_and_gray():
    for image in _photos():
        expected = color.luminance(image)
        got = gpu_color.luminance(torch.from_numpy(image)[None])[0].numpy()
        assert np.abs(got - expected).max() < 1e-3
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        got = gpu_color.luminance(torch.from_numpy(gray)[None])[0].numpy()
        assert np.abs(got - color.luminance(gray)).max() < 1e-3


def test_lab_conversion_matches_and_round_trips():
    image = _photos(1)[0]
    linear = torch.from_numpy(color.srgb_to_linear(image / 255.0).astype(np.float32))
    lab = gpu_color.linear_bgr_to_lab(linear)
    assert np.abs(lab.numpy() - color.bgr_to_lab(image)).max() < 0.05  # OpenCV's own matrix
    assert (gpu_color.lab_to_linear_bgr(lab) - linear).abs().max() < 1e-3


def test_gamut_fit_keeps_l_lands_inside_and_agrees_with_the_numpy_fit():
    rng = np.random.default_rng(0)
    lab = np.stack(
        [rng.uniform(0, 100, 20000), rng.uniform(-127, 127, 20000), rng.uniform(-127, 127, 20000)],
        axis=-1,
    ).astype(np.float32)
    assert color.out_of_gamut(lab).mean() > 0.5  # most of these are no sRGB colour
    expected = color.fit_to_gamut(lab)
    got = gpu_color.fit_to_gamut(torch.from_numpy(lab)).numpy()
    assert not color.out_of_gamut(got).any()
    np.testing.assert_array_equal(got[:, 0], lab[:, 0])
    delta_e = np.linalg.norm(got - expected, axis=-1)
    assert delta_e.max() <= 1.5 and delta_e.mean() < 0.01


def test_model_input_resizes_exactly_as_the_engine_does():
    """Area when shrinking, bilinear when enlarging, OpenCV's mixed rule in between: the
    matrix resampler matches ``engine.color.resize_plane`` to float rounding."""
    rng = np.random.default_rng(0)
    for shape in [(128, 192), (108, 192), (37, 53), (300, 41)]:
        L = rng.uniform(0, 100, shape).astype(np.float32)
        for size in (128, 96, 300, (50, 400), (20, 20), (400, 30), (37, 106)):
            expected = color.resize_plane(L, size)
            got = gpu_color.model_input(torch.from_numpy(L)[None], size)[0, 0].numpy()
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-3, (shape, size)
    for image in _photos():
        L = color.luminance(image)
        expected = model_io.model_input(L, 256, model_io.IDENTITY_NORMALIZATION)
        got = gpu_color.model_input(torch.from_numpy(L)[None], 256)[0].numpy()
        assert np.abs(got - expected).max() < 1e-3


def test_colour_output_matches_the_engines():
    rng = np.random.default_rng(1)
    for image in _photos():
        ab = cv2.resize(rng.uniform(-90, 90, (8, 8, 2)).astype(np.float32), (64, 64))
        ab = np.transpose(ab, (2, 0, 1))  # smooth, partly out of the gamut
        expected = model_io.colorize_output(image, ab, model_io.IDENTITY_NORMALIZATION, (1.2, 1.2))
        got = gpu_color.colorize_output(
            torch.from_numpy(image)[None], torch.from_numpy(ab)[None], (1.2, 1.2)
        )[0]
        got = np.clip(np.round(got.numpy()), 0, 255).astype(np.uint8)
        assert np.abs(got.astype(int) - expected).mean() < 1.0
        delta_e = np.linalg.norm(color.bgr_to_lab(got) - color.bgr_to_lab(expected), axis=-1)
        assert delta_e.max() <= 2.0 and delta_e.mean() < 0.05


def test_constants_and_resize_weights_are_made_once_per_device(monkeypatch):
    """After a first call, colorizing more images of the same size builds no tensor from host
    data (on a GPU each would be a blocking host→device copy)."""
    pixels = torch.randint(0, 256, (2, 60, 80), dtype=torch.uint8)
    ab = torch.randn(2, 2, 16, 16) * 20
    gpu_color.colorize_output(pixels, ab, (1.2, 1.2))
    gpu_color.model_input(gpu_color.luminance(pixels), 16)
    made = []
    for name in ("as_tensor", "tensor", "from_numpy"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, real=real, **k: made.append(1) or real(*a, **k))
    gpu_color.colorize_output(pixels, ab, (1.2, 1.2))
    gpu_color.model_input(gpu_color.luminance(pixels), 16)
    assert made == []
