"""The ``vivid`` preset: ab classes, rarity weights, annealed-mean decoding inside the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.color import out_of_gamut
from export import onnx as onnx_export
from tests.test_train import _config, twenty_photos  # noqa: F401  (the fixture)
from trainer import bins
from trainer.models import build_model, count_parameters
from trainer.train import load_matching, train


def test_classes_are_the_in_gamut_cells():
    centres = bins.bin_centres()
    assert len(centres) == 222
    assert np.all(np.abs(centres) < bins.EXTENT)
    L = np.full((len(centres), 1), 50.0, np.float32)
    assert out_of_gamut(np.concatenate([L, centres], axis=1)[None]).mean() < 1  # some out at L50
    assert not out_of_gamut(np.array([[[50.0, 0.0, 0.0]]], np.float32)).any()


def test_each_ab_gets_its_nearest_class():
    ab = np.array([[3.0, -47.0, 200.0], [4.0, 12.0, -200.0]], np.float32)
    classes = bins.classes_of(ab)
    centres = bins.bin_centres()[classes]
    assert np.allclose(centres[0], (5, 5)) and np.allclose(centres[1], (-45, 15))
    assert classes.shape == (3,)  # far outside the grid: clamped to the nearest edge class


def test_rarity_weights_favour_rare_colours_and_average_one():
    uniform = bins.rarity_weights(np.ones(len(bins.bin_centres()), np.int64))
    assert np.allclose(uniform, uniform.mean(), rtol=0.05)  # edge classes smooth a little less
    counts = np.ones(len(bins.bin_centres()), np.int64)
    grey = bins.classes_of(np.array([[0.0], [0.0]]))[0]
    counts[grey] = 10_000
    weights = bins.rarity_weights(counts)
    assert weights[grey] < weights.mean() / 2
    assert weights[grey] == weights.min()


def test_vivid_model_outputs_ab_through_the_annealed_mean():
    torch.manual_seed(0)  # a pixel right at a level's rounding edge may differ more: fix the draw
    model = build_model("vivid").eval()
    assert count_parameters(model) - count_parameters(build_model("seed")) == 32 * 220 + 220
    x = torch.rand(2, 1, 32, 48) * 2 - 1  # normalised L
    ab = model(x)
    assert ab.shape == (2, 2, 32, 48)
    level = torch.clamp(torch.round((x[:, 0] + 1) * 50), 0, 100).long()
    allowed = torch.from_numpy(bins.gamut_mask())[level].permute(0, 3, 1, 2)
    scores = model.logits(x).masked_fill(~allowed, -1e4) / model.config.temperature
    probabilities = torch.softmax(scores, dim=1)
    centres = torch.from_numpy(bins.bin_centres() / 128.0)
    expected = torch.einsum("nqhw,qc->nchw", probabilities, centres)
    close = torch.isclose(ab, expected, atol=1e-4, rtol=1e-3)
    assert close.float().mean() > 0.99  # all but L within a hair of a level's rounding edge
    assert torch.abs(ab - expected).max() < 0.05


def test_fine_tuning_from_seed_keeps_the_trunk():
    seed, vivid = build_model("seed"), build_model("vivid")
    new = load_matching(vivid, seed.state_dict())
    assert new == ["decode_weight", "head.bias", "head.weight"]
    torch.testing.assert_close(vivid.encoders[0][0].weight, seed.encoders[0][0].weight)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_vivid_trains_and_exports_with_the_decoding_in_the_graph(twenty_photos, tmp_path):  # noqa: F811
    result = train(_config(twenty_photos, tmp_path / "run", preset="vivid", epochs=1))
    history = result.history
    assert np.isfinite(history[-1]["train_loss"]) and history[-1]["val_loss"] < 1
    onnx_path = tmp_path / "vivid.onnx"
    report = onnx_export.export_onnx(result.last, onnx_path)
    assert report.parity_max_abs_ab < onnx_export.PARITY_LIMIT
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # the graph carries its normalisation: L 0..100 in, ab in LAB units out
    out = session.run(None, {"L": np.full((2, 1, 64, 64), 50.0, np.float32)})[0]
    assert out.shape == (2, 2, 64, 64)
    assert np.abs(out).max() <= bins.EXTENT


def test_decoding_only_picks_colours_that_exist_at_the_pixels_l():
    mask = bins.gamut_mask()
    assert mask.shape == (101, 222)
    assert mask[0].sum() == mask[100].sum() == 4  # black and white: only the neutral classes
    assert mask[50].sum() > 100
    model = build_model("vivid").eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(-3, 3, 222))  # favour arbitrary colours
        black_and_white = torch.tensor([-1.0, 1.0]).reshape(1, 1, 1, 2).repeat(1, 1, 4, 2)
        ab = model(black_and_white)
    assert torch.abs(ab).max() <= 5 / 128  # a mix of the four neutral classes only
    with torch.no_grad():
        mid = model(torch.zeros(1, 1, 4, 4)) * 128  # L = 50
    lab = np.concatenate([np.full((16, 1), 50.0), mid[0].reshape(2, -1).T.numpy()], axis=1)
    assert not out_of_gamut(lab[None].astype(np.float32)).any()


def test_comparison_tables_and_contact_sheet(tmp_path):
    import json
    import shutil

    import cv2

    from engine.colorizer import Colorizer
    from tests.conftest import photo_paths
    from trainer.compare import Candidate, compare, contact_sheet, markdown_table

    data = tmp_path / "photos"
    for i, path in enumerate(photo_paths()[::2]):  # half of them from a held-out source
        target = data / path.parent.name / f"{'flickr8k' if i % 2 else 'src'}__{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    seed = str(Path(__file__).parents[1] / "engine/models/seed-general.onnx")
    candidate = Candidate("seed", seed, (1.0, 1.0))
    cache = tmp_path / "cache"
    results = compare(data, [candidate], long_side=128, val_fraction=0.5, cache=cache)
    assert results["splits"]["cross"]["photos"] == 6
    again = compare(data, [candidate], long_side=128, val_fraction=0.5, cache=cache)
    assert json.dumps(again["splits"]) == json.dumps(results["splits"])  # from the cache
    assert len(list(cache.iterdir())) == 2  # one report per split
    table = markdown_table(results)
    assert "**cross-source** (6 photos)" in table and "| seed | all |" in table
    assert "| gray | all | 6 |" in table and "| seed | cross-source |" in table
    files = [r["file"] for r in results["rows"]["cross"]["seed"]][:3]
    columns = [("gray", None, None), ("seed", Colorizer(seed), None), ("truth", None, None)]
    sheet = cv2.imread(str(contact_sheet(data, files, columns, tmp_path / "s.png", 60)))
    assert sheet.shape[0] == 22 + 3 * 64 and sheet.shape[2] == 3
