"""The GPU-resident torch path (``engine.device_colorizer``), run here on CPU tensors: the same
stages a CUDA run takes, from decoded pixels to the finished image, checked against the numpy
path of the same model (bounds in LAB ΔE)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine import color  # noqa: E402
from engine.backends import BackendOptions  # noqa: E402
from engine.colorizer import Colorizer  # noqa: E402

PHOTOS = sorted((Path(__file__).parent / "data" / "photos").rglob("*.jpg"))[:3]
MODEL = "seed-general"  # small: the test is about the stages, not the model


def _gray(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)


@pytest.fixture(scope="module")
def pair():
    options = BackendOptions(size=128, device="cpu", threads=2)
    on_device = Colorizer(MODEL, "torch", options=options, device_resident=True)
    reference = Colorizer(MODEL, "torch", options=options, device_resident=False)
    return on_device, reference


def _delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(color.bgr_to_lab(a) - color.bgr_to_lab(b), axis=-1)


def test_device_stages_keep_tensors_until_the_image_is_done(pair):
    on_device, _ = pair
    source, x = on_device.preprocess(_gray(PHOTOS[0]))
    assert isinstance(source, torch.Tensor) and isinstance(x, torch.Tensor)
    ab = on_device.infer(on_device.batch_inputs([x, x]))
    assert isinstance(ab, torch.Tensor) and ab.shape == (2, 2, 128, 128)
    out = on_device.postprocess(source, ab[0], np.uint8)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.shape == (*source.shape, 3)


def test_device_path_matches_the_numpy_path(pair):
    on_device, reference = pair
    images = [_gray(p) for p in PHOTOS]
    got = on_device.colorize_batch(images)
    expected = reference.colorize_batch(images)
    for image, a, b in zip(images, got, expected, strict=True):
        delta_e = _delta_e(a, b)
        assert delta_e.mean() < 0.1 and np.percentile(delta_e, 99.9) < 2.0
        # the input's own L is kept on both paths
        assert np.abs(color.luminance(a) - color.luminance(image)).mean() < 0.5


def test_device_path_keeps_16_bit_depth_and_alpha(pair):
    on_device, reference = pair
    gray16 = _gray(PHOTOS[0]).astype(np.uint16) * 257
    alpha = np.full(gray16.shape, 40000, np.uint16)
    source, x = on_device.preprocess(gray16)
    out = on_device.postprocess(source, on_device.infer(x[None])[0], np.uint16, alpha)
    assert out.dtype == np.uint16 and out.shape == (*gray16.shape, 4)
    assert (out[:, :, 3] == 40000).all()
    expected = reference.colorize(gray16)
    delta_e = _delta_e((out[:, :, :3] // 257).astype(np.uint8), (expected // 257).astype(np.uint8))
    assert delta_e.mean() < 0.6


def test_file_pipeline_runs_on_the_device_path(pair, tmp_path):
    on_device, _ = pair
    folder = tmp_path / "in"
    folder.mkdir()
    for path in PHOTOS:
        cv2.imwrite(str(folder / path.name), _gray(path))
    summary = on_device.colorize_paths([folder], tmp_path / "out", batch_size=2)
    assert summary.done == len(PHOTOS) and summary.failed == 0
    assert len(list((tmp_path / "out").glob("*.jpg"))) == len(PHOTOS)


def test_bf16_autocast_runs_on_cpu_and_stays_close():
    options = BackendOptions(size=96, device="cpu", precision="bf16")
    bf16 = Colorizer(MODEL, "torch", options=options)
    fp32 = Colorizer(MODEL, "torch", options=options.replace(precision="fp32"))
    assert bf16.backend.describe()["precision"] == "bf16"
    assert bf16.spec.name == fp32.spec.name  # torch runs the FP32 checkpoint in either case
    x = np.full((1, 1, 96, 96), 0.0, np.float32)
    x[..., 40:] = 0.5
    delta = np.abs(bf16.infer(x) - fp32.infer(x)) * bf16.config.normalization.ab_scale
    assert delta.mean() < 2.0


def test_torch_refuses_fp16_on_cpu_and_unknown_precisions():
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        Colorizer(MODEL, "torch", options=BackendOptions(device="cpu", precision="fp16"))
    with pytest.raises(ValueError, match="runs fp32, fp16, bf16, not int8"):
        Colorizer(MODEL, "torch", options=BackendOptions(device="cpu", precision="int8"))
