"""The category classifier behind ``--model auto``: a tiny CNN on the L channel that says which
category model (general, landscape, people) should colorize a photo.

Input: the photo's normalised L at 64×64 through the engine's own pre-processing
(:func:`engine.model_io.image_model_input`); five stride-2 conv-BN-ReLU stages (16→128 channels),
global average pooling and a linear layer: about 0.1 M parameters, well under a millisecond per
image on a CPU. Trained on the training split of the colorization data (same hash split, so no
validation photo is ever seen) with flips, crops and class-balanced cross-entropy; exported to
ONNX with its categories and accuracy in the metadata.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.io import read_image
from engine.model_io import SEED_NORMALIZATION, image_model_input
from engine.models import METADATA_KEY
from trainer.data import scan_folder, select

CLASSIFIER_SIZE = 64
CATEGORIES = ("general", "landscape", "people")


class CategoryNet(nn.Module):
    """L ``N×1×64×64`` → category logits ``N×len(CATEGORIES)``."""

    def __init__(self, classes: int = len(CATEGORIES), widths=(16, 32, 64, 96, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for width in widths:
            layers += [
                nn.Conv2d(c_in, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x).mean(dim=(2, 3)))


@dataclass
class ClassifierReport:
    train_photos: dict[str, int]
    val_photos: dict[str, int]
    val_accuracy: float
    val_balanced_accuracy: float
    confusion: list[list[int]]
    """Rows: true category, columns: predicted (order of ``CATEGORIES``)."""
    ms_per_image: float
    parameters: int
    seconds: float


def _inputs(paths: list[Path], size: int) -> np.ndarray:
    """Each photo's normalised L at ``size×size``, read and reduced as the engine does."""
    return np.stack([image_model_input(read_image(p).pixels, size) for p in paths])


def _augment(batch: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Random crops of 75–100 % of the side, resized to ``size``, and horizontal flips."""
    out = np.empty((len(batch), 1, size, size), np.float32)
    full = batch.shape[-1]
    for i, image in enumerate(batch):
        side = int(rng.integers(int(0.75 * full), full + 1))
        y, x = rng.integers(0, full - side + 1, 2)
        crop = torch.from_numpy(image[:, y : y + side, x : x + side])[None]
        crop = nn.functional.interpolate(crop, size=(size, size), mode="area")[0]
        out[i] = crop.numpy()[:, :, ::-1] if rng.random() < 0.5 else crop.numpy()
    return out


def _split(data: Path, split: str, val_fraction: float) -> tuple[list[Path], np.ndarray]:
    photos = [p for p in select(scan_folder(data), split, val_fraction) if p.category in CATEGORIES]
    return [p.path for p in photos], np.array([CATEGORIES.index(p.category) for p in photos])


def train_classifier(
    data: Path, out: Path, epochs: int = 60, val_fraction: float = 0.15, seed: int = 0
) -> ClassifierReport:
    """Train on ``data``'s training split, report on its validation split, export ``out`` (ONNX)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_paths, train_y = _split(data, "train", val_fraction)
    val_paths, val_y = _split(data, "val", val_fraction)
    train_x = _inputs(train_paths, 2 * CLASSIFIER_SIZE)
    val_x = _inputs(val_paths, CLASSIFIER_SIZE)
    counts = np.bincount(train_y, minlength=len(CATEGORIES))
    weights = torch.tensor(
        counts.sum() / (len(CATEGORIES) * np.maximum(counts, 1)), dtype=torch.float32
    )
    model = CategoryNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=0.05)
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(train_x))
        for start in range(0, len(order), 32):
            index = order[start : start + 32]
            x = torch.from_numpy(_augment(train_x[index], rng, CLASSIFIER_SIZE))
            loss = loss_fn(model(x), torch.from_numpy(train_y[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(val_x)).argmax(dim=1).numpy()
    confusion = np.zeros((len(CATEGORIES),) * 2, np.int64)
    np.add.at(confusion, (val_y, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    report = ClassifierReport(
        train_photos=dict(zip(CATEGORIES, map(int, counts), strict=True)),
        val_photos=dict(zip(CATEGORIES, map(int, np.bincount(val_y, minlength=3)), strict=True)),
        val_accuracy=round(float((predicted == val_y).mean()), 4),
        val_balanced_accuracy=round(float(per_class.mean()), 4),
        confusion=confusion.tolist(),
        ms_per_image=0.0,
        parameters=sum(p.numel() for p in model.parameters()),
        seconds=0.0,
    )
    export_classifier(model, out, report)
    report.ms_per_image = round(measure_ms_per_image(out), 3)
    report.seconds = round(time.perf_counter() - started, 1)
    export_classifier(model, out, report)  # again, with the measured cost in its metadata
    return report


def export_classifier(model: CategoryNet, out: Path, report: ClassifierReport) -> None:
    """ONNX (dynamic batch, opset 17) with categories, input size, normalisation and figures."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    x = torch.zeros(1, 1, CLASSIFIER_SIZE, CLASSIFIER_SIZE)
    torch.onnx.export(
        model.eval(), (x,), str(tmp), input_names=["L"], output_names=["logits"],
        dynamic_axes={"L": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    graph = onnx.load(str(tmp))
    config = {
        "kind": "category-classifier",
        "categories": list(CATEGORIES),
        "input_size": CLASSIFIER_SIZE,
        "normalization": SEED_NORMALIZATION.to_dict(),
        "report": report.__dict__,
    }
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(config)
    onnx.save(graph, str(tmp))
    tmp.replace(out)


def measure_ms_per_image(path: Path, batch: int = 1, runs: int = 200) -> float:
    """Median milliseconds per image of the exported classifier on ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.zeros((batch, 1, CLASSIFIER_SIZE, CLASSIFIER_SIZE), np.float32)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {"L": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000 / batch
