"""One BackendOptions object reaches every backend: a non-default size and batch arrive."""

from __future__ import annotations

import types

import numpy as np
import pytest

from engine import models
from engine.backends import BackendOptions, create_backend
from engine.colorizer import Colorizer

OPTIONS = BackendOptions(size=96, batch=3, max_batch=5, threads=1)


def _model() -> str:
    return str(models.resolve_model("seed-general").path)


def test_ort_takes_the_size_and_batch_asked_for():
    backend = create_backend("ort", _model(), OPTIONS)
    facts = backend.describe()
    assert (facts["size"], facts["batch"], facts["max_batch"], facts["threads"]) == (96, 3, 5, 1)
    out = backend.run(np.full((3, 1, 96, 96), 50.0, np.float32))
    assert out.shape == (3, 2, 96, 96)


def test_torch_takes_the_size_and_batch_asked_for():
    pytest.importorskip("torch")
    backend = create_backend("torch", _model(), OPTIONS.replace(device="cpu"))
    facts = backend.describe()
    assert (facts["size"], facts["batch"], facts["max_batch"]) == (96, 3, 5)
    out = backend.run(np.full((3, 1, 96, 96), 50.0, np.float32))
    ort_out = create_backend("ort", _model(), OPTIONS).run(
        np.full((3, 1, 96, 96), 50.0, np.float32)
    )
    assert out.shape == (3, 2, 96, 96)
    assert np.abs(out - ort_out).max() < 0.05  # the same model, normalisation in both


def test_tensorrt_builds_its_plan_for_the_size_and_batch_asked_for(monkeypatch):
    """No GPU here: the builder is replaced by one that records what it was asked to build."""
    from engine import tensorrt
    from engine.backends.trt import TrtBackend

    asked = {}

    class StopError(Exception):
        pass

    def fake_build(model, out, runtime, options):
        asked["options"] = options
        raise StopError

    monkeypatch.setattr(tensorrt, "load_runtime", lambda: ("fake", types.SimpleNamespace()))
    monkeypatch.setattr(tensorrt, "build_engine", fake_build)
    with pytest.raises(StopError):
        TrtBackend(_model(), OPTIONS)
    built = asked["options"]
    assert (built.size, built.batch, built.max_batch) == (96, 3, 5)


def test_the_colorizer_hands_its_size_to_the_backend():
    colorizer = Colorizer("seed-general", size=128)
    assert colorizer.backend.describe()["size"] == 128
    gray = np.full((70, 90), 128, np.uint8)
    assert colorizer.colorize(gray).shape == (70, 90, 3)


def test_tf32_reaches_the_convolutions_and_never_the_colour_maths():
    from engine.backends.torch import fp32_precisions

    assert fp32_precisions(True) == {"conv": "tf32", "matmul": "ieee"}
    assert fp32_precisions(False) == {"conv": "ieee", "matmul": "ieee"}
