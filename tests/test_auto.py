"""``--model auto``: the category classifier picks a model per photo; batches stay per model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from engine.auto import AutoColorizer, CategoryClassifier, create_colorizer
from engine.cli import app
from engine.colorizer import Colorizer
from engine.models import auto_table, file_sha256
from engine.pipeline import RunOptions, run
from tests.conftest import photo_paths

runner = CliRunner()


def test_the_shipped_classifier_is_verified_and_reports_its_accuracy():
    table, sha256 = auto_table()
    assert set(table) == {"general", "landscape", "people"}
    classifier = CategoryClassifier(sha256=sha256)
    assert file_sha256(classifier.path) == sha256
    report = classifier.report
    assert sum(report["val_photos"].values()) == 82  # the validation split, never trained on
    assert report["val_balanced_accuracy"] > 0.5  # three classes: chance is 0.33
    assert report["ms_per_image"] < 5


def test_the_classifier_tells_categories_apart_on_the_test_photos():
    classifier = CategoryClassifier()
    predictions = {
        classifier.classify(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)) for path in photo_paths()
    }
    assert len(predictions) >= 2


def test_auto_on_the_command_line_logs_the_model_of_each_photo(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in photo_paths():
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(folder / f"{path.parent.name}-{path.name}"), gray)
    result = runner.invoke(app, ["colorize", str(folder), "-o", str(tmp_path / "out"),
                                 "--model", "auto", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["model"] == "auto" and summary["done"] == len(photo_paths())
    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    used = {r["model"] for r in records}
    models_in_table = set(auto_table()[0].values())  # today one model serves every category
    assert used <= models_in_table and len(used) >= min(2, len(models_in_table))


class _Recording:
    """Wraps an AutoColorizer and records each backend call's (route, batch size)."""

    def __init__(self, auto: AutoColorizer) -> None:
        self.auto, self.calls = auto, []

    def __getattr__(self, name):
        return getattr(self.auto, name)

    def infer(self, batch: np.ndarray, route: str | None = None) -> np.ndarray:
        self.calls.append((route, len(batch)))
        return self.auto.infer(batch, route)


def test_batches_hold_one_model_each(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, path in enumerate(photo_paths()):
        cv2.imwrite(str(folder / f"{i:02d}.jpg"), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    recording = _Recording(create_colorizer("auto"))
    summary = run(recording, [folder], RunOptions(tmp_path / "out", batch_size=4))
    assert summary.done == len(photo_paths())
    routes = {route for route, _ in recording.calls}
    assert len(routes) >= 2 and None not in routes
    assert max(size for _, size in recording.calls) <= 4
    per_route = {r: sum(n for route, n in recording.calls if route == r) for r in routes}
    assert sum(per_route.values()) == len(photo_paths())


def test_auto_runs_on_the_torch_backend_too(tmp_path):
    pytest.importorskip("torch")
    auto = create_colorizer("auto", backend="torch")
    assert {c.describe()["backend"] for c in auto.models.values()} == {"torch"}
    gray = cv2.imread(str(photo_paths()[0]), cv2.IMREAD_GRAYSCALE)
    colour = auto.colorize(gray)
    reference = Colorizer(auto.model_name(auto.route(gray))).colorize(gray)
    assert np.abs(colour.astype(int) - reference).mean() < 1  # torch ≈ ONNX Runtime


def test_auto_on_a_backend_that_cannot_run_here_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["colorize", str(photo_paths()[0]), "-o", str(tmp_path),
                                 "--model", "auto", "--backend", "trt"])  # fmt: skip
    if result.exit_code == 0:
        pytest.skip("TensorRT and a GPU are present: the trt backend runs")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "trt" in result.output
