"""Evaluation: turn colour photos to gray, colorize them, and score against the truth.

Each photo is first brought to a fixed long side (512 by default) so large photos do not dominate
the time, then colorized exactly as the engine does (L resized to the model's input size, ab
upsampled and merged with the full-resolution L, boost, gamut fit). Every metric is reported for
the model and for the gray baseline (ab = 0), per category and overall.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.color import (
    bgr_to_lab,
    fit_long_side,
    is_grayscale,
    lab_to_bgr,
    merge_l_ab,
    out_of_gamut,
)
from engine.model_io import (
    Normalization,
    boost_ab,
    colorize_output,
    denormalize_ab,
    denormalize_l,
    model_input,
    upsample_ab,
)
from trainer.data import source_of
from trainer.metrics import (
    HUE_SECTORS,
    ab_error_auc,
    colorfulness,
    hue_accuracy,
    hue_counts_by_sector,
    psnr,
    ssim,
)

METRICS = ("psnr", "ssim", "cf", "delta_cf", "auc", "hue", "out_of_gamut")
"""``hue``: :func:`trainer.metrics.hue_accuracy` (its mean skips photos with no colourful pixel)."""


def score_predictions(
    L_norm: np.ndarray, pred_ab: np.ndarray, truth_ab: np.ndarray, norm: Normalization
) -> dict[str, float]:
    """Mean PSNR, AuC and hue accuracy of model-size predictions (and PSNR and AuC of gray), for
    the validation during training.

    All arrays are normalised model tensors: ``N×1×h×w`` and ``N×2×h×w``.
    """
    scores: dict[str, list[float]] = {
        "val_psnr": [], "val_auc": [], "val_hue": [], "gray_psnr": [], "gray_auc": [],
    }  # fmt: skip
    for L_n, pred, truth in zip(L_norm, pred_ab, truth_ab, strict=True):
        L = denormalize_l(L_n[0], norm)
        truth_hwc = np.transpose(denormalize_ab(truth, norm), (1, 2, 0))
        truth_bgr = lab_to_bgr(merge_l_ab(L, truth_hwc))
        for name, ab in (("val", pred), ("gray", np.zeros_like(pred))):
            out = colorize_output(L, ab, norm)
            out_ab = bgr_to_lab(out)[..., 1:]
            scores[f"{name}_psnr"].append(psnr(out, truth_bgr))
            scores[f"{name}_auc"].append(ab_error_auc(out_ab, truth_hwc))
            if name == "val":
                scores["val_hue"].append(hue_accuracy(out_ab, truth_hwc))
    return {k: _mean(v) for k, v in scores.items()}


def image_scores(
    pred_bgr: np.ndarray, truth_bgr: np.ndarray, out_of_gamut: float = 0.0
) -> dict[str, float]:
    """All metrics of one colorized image against its truth (both 8-bit BGR)."""
    cf_pred, cf_truth = colorfulness(pred_bgr), colorfulness(truth_bgr)
    ab_pred, ab_truth = bgr_to_lab(pred_bgr)[..., 1:], bgr_to_lab(truth_bgr)[..., 1:]
    sectors = hue_counts_by_sector(ab_pred, ab_truth)
    return {
        "hue_sectors": {name: list(counts) for name, counts in sectors.items()},
        "psnr": psnr(pred_bgr, truth_bgr),
        "ssim": ssim(pred_bgr, truth_bgr),
        "cf": cf_pred,
        "delta_cf": abs(cf_pred - cf_truth),
        "auc": ab_error_auc(ab_pred, ab_truth),
        "hue": hue_accuracy(ab_pred, ab_truth),
        "out_of_gamut": out_of_gamut,
    }


def gamut_excess(
    L: np.ndarray, ab_norm: np.ndarray, norm: Normalization, boost: tuple[float, float]
) -> float:
    """Fraction of pixels whose predicted (boosted) ab has no sRGB colour at their L — what the
    engine's gamut fit has to pull in (many such pixels show as red/blue blotches)."""
    ab = boost_ab(upsample_ab(denormalize_ab(ab_norm, norm), L.shape[:2]), boost)
    return float(out_of_gamut(merge_l_ab(L, ab)).mean())


@dataclass
class EvalReport:
    """Per-image scores and their means per category and overall."""

    rows: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def summary(self, by_source: bool = False) -> dict[str, dict[str, dict[str, float]]]:
        """``{group: {"model"|"gray"|"truth": {metric: mean}}}`` with groups = all, the
        categories and, with ``by_source`` where photos of several sources were scored,
        ``source:NAME``. The model's ``hue_sectors`` are hue accuracies per sector of the truth's
        hue, pooled over pixels."""
        groups: dict[str, list[dict]] = {"all": self.rows}
        for row in self.rows:
            groups.setdefault(row["category"], []).append(row)
        if by_source and len({source_of(row["file"]) for row in self.rows}) > 1:
            for row in self.rows:
                groups.setdefault(f"source:{source_of(row['file'])}", []).append(row)
        out = {}
        for group, rows in groups.items():
            out[group] = {"count": len(rows)}
            for variant in ("model", "gray"):
                out[group][variant] = {
                    m: _mean([r[variant].get(m, np.nan) for r in rows]) for m in METRICS
                }
            out[group]["model"]["hue_sectors"] = _pooled_sectors(rows)
            out[group]["truth"] = {"cf": float(np.mean([r["truth_cf"] for r in rows]))}
        return out

    def to_json(self, by_source: bool = False) -> dict:
        return {"settings": self.settings, "summary": self.summary(by_source), "images": self.rows}


def _pooled_sectors(rows: list[dict]) -> dict[str, float]:
    """Hue accuracy per sector over all the rows' pixels (NaN for a sector no truth pixel is in)."""
    pooled = {}
    for name in HUE_SECTORS:
        counts = [r["model"]["hue_sectors"][name] for r in rows]
        right, total = (sum(c[i] for c in counts) for i in (0, 1))
        pooled[name] = right / total if total else float("nan")
    return pooled


def _mean(values: list[float]) -> float:
    """Mean over the values that are numbers (NaN: the metric does not apply to that photo)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def load_eval_image(path: Path, long_side: int) -> np.ndarray | None:
    """8-bit BGR photo at most ``long_side`` long (None when unreadable)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    h, w = fit_long_side(image.shape[:2], long_side)
    if (h, w) != image.shape[:2]:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return image


Predictor = Callable[[np.ndarray], np.ndarray]
"""Normalised L batch ``N×1×s×s`` → normalised ab ``N×2×s×s`` (a model on some runtime)."""


def torch_predictor(model: torch.nn.Module, device: torch.device | None = None) -> Predictor:
    """A predictor running a PyTorch model (eval mode, no gradients)."""
    device = device or torch.device("cpu")
    model = model.to(device).eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


def evaluate(
    predict: Predictor,
    photos: Sequence,
    norm: Normalization,
    boost: tuple[float, float],
    input_size: int = 256,
    long_side: int = 512,
    batch_size: int = 8,
    gray_threshold: float = 1.8,
    router: Callable[[np.ndarray], str] | None = None,
    predictors: dict[str, Predictor] | None = None,
) -> EvalReport:
    """Score ``predict`` on ``photos`` (``trainer.data.Photo`` items), skipping grayscale ones.

    With ``router`` (full-resolution L → a key of ``predictors``), each photo goes to the
    predictor its route names, as ``--model auto`` does; ``predict`` is then unused.
    """
    report = EvalReport()
    started = time.perf_counter()
    for start in range(0, len(photos), batch_size):
        chunk = []
        for photo in photos[start : start + batch_size]:
            truth = load_eval_image(photo.path, long_side)
            if truth is None:
                continue
            lab = bgr_to_lab(truth)
            if is_grayscale(lab, gray_threshold):
                continue
            chunk.append((photo, truth, lab[..., 0]))
        if not chunk:
            continue
        batch = np.stack([model_input(L, input_size, norm) for _, _, L in chunk])
        routes = [router(L) if router else None for _, _, L in chunk]
        pred = np.empty((len(chunk), 2, *batch.shape[2:]), np.float32)
        for route in set(routes):
            index = [i for i, r in enumerate(routes) if r == route]
            run = predictors[route] if router else predict
            pred[index] = np.asarray(run(batch[index]), np.float32)
        for (photo, truth, L), ab, route in zip(chunk, pred, routes, strict=True):
            excess = gamut_excess(L, ab, norm, boost)
            report.rows.append(
                {
                    "file": f"{photo.category}/{photo.key}",
                    "category": photo.category,
                    "route": route,
                    "model": image_scores(colorize_output(L, ab, norm, boost), truth, excess),
                    "gray": image_scores(colorize_output(L, np.zeros_like(ab), norm), truth),
                    "truth_cf": colorfulness(truth),
                }
            )
    report.settings = {
        "boost": list(boost),
        "input_size": input_size,
        "long_side": long_side,
        "images": len(report.rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return report


def load_for_eval(path: Path, device: str = "cpu", temperature: float | None = None) -> dict:
    """A predictor with its normalisation, boost, input size and split, from a checkpoint
    (PyTorch), an ONNX model (ONNX Runtime, as the engine runs it), or ``auto``. ``temperature``
    replaces a checkpoint's annealed-mean temperature (classes heads)."""
    if str(path) == "auto":
        from engine.auto import AutoColorizer
        from engine.model_io import model_input

        auto = AutoColorizer()
        classifier, config = auto.classifier, auto.first.config

        def router(L):
            return classifier.classify_input(
                model_input(L, classifier.size, classifier.normalization)
            )

        return {
            "predict": None, "router": router,
            "predictors": {c: m.infer for c, m in auto.models.items()},
            "norm": config.normalization, "boost": config.boost, "input_size": config.input_size,
            "val_fraction": config.raw.get("training", {}).get("val_fraction", 0.15),
        }  # fmt: skip
    if path.suffix.lower() == ".onnx":
        from engine.colorizer import Colorizer

        colorizer = Colorizer(str(path))
        config = colorizer.config
        training = config.raw.get("training", {})
        return {
            "predict": colorizer.infer, "norm": config.normalization, "boost": config.boost,
            "input_size": config.input_size, "val_fraction": training.get("val_fraction", 0.15),
        }  # fmt: skip
    from trainer.checkpoint import load_checkpoint
    from trainer.device import pick_device

    ckpt = load_checkpoint(path)
    if temperature is not None:  # a classes head's annealed-mean temperature, for a sweep
        ckpt.config["architecture"] = {**ckpt.architecture, "temperature": temperature}
    return {
        "predict": torch_predictor(ckpt.build_model(), pick_device(device)),
        "norm": ckpt.normalization, "boost": ckpt.boost,
        "input_size": ckpt.config.get("input_size", 256),
        "val_fraction": ckpt.config.get("training", {}).get("val_fraction", 0.15),
    }  # fmt: skip
