"""Rebuild the shipped models: trainer checkpoints → ONNX files + manifest in ``engine/models``.

``python -m export.ship [--calib PHOTOS]`` exports every ``trainer/checkpoints/seed-*.safetensors``
(with the parity check) and, with ``--calib`` (the training photos, see ``trainer fetch-data``),
its FP16 and INT8 (cpu flavour) variants with their accuracy against FP32; an INT8 variant is
calibrated on the photos of its model's category folder. It then writes
``engine/models/manifest.json``: each file's sha256, a training summary and the evaluation figures
stored in ``trainer/checkpoints/eval/<category>-{noboost,boost}.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.models import MANIFEST, MODELS_DIR, file_sha256
from export.onnx import export_onnx
from trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "trainer" / "checkpoints"
DEFAULT_MODEL = "vivid-general"
AUTO_MODELS = {"general": "vivid-general", "landscape": "vivid-landscape", "people": "vivid-people"}
"""``--model auto``: the model each category of the classifier sends its photos to."""
CLASSIFIER = "category-classifier.onnx"


def auto_entry(models_dir: Path = MODELS_DIR) -> dict:
    """The manifest's ``auto`` section: the classifier (sha256, its report) and the table."""
    import onnx

    from engine.models import METADATA_KEY

    path = models_dir / CLASSIFIER
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return {
        "classifier": CLASSIFIER,
        "classifier_sha256": file_sha256(path),
        "classifier_report": json.loads(meta[METADATA_KEY]).get("report", {}),
        "models": AUTO_MODELS,
    }


def update_auto(models_dir: Path = MODELS_DIR) -> dict:
    """Rewrite only the ``auto`` section of an existing manifest (after ``trainer classifier``)."""
    manifest = json.loads((models_dir / MANIFEST.name).read_text())
    manifest["auto"] = auto_entry(models_dir)
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _figures(name: str, category: str) -> dict:
    """``trainer eval`` figures of a model: ``eval/<category>-…`` for the seed models (their
    historical names), ``eval/<name>-…`` for the others."""
    stem = category if name.startswith("seed-") else name
    figures = {}
    for variant, boost in (("noboost", "no boost"), ("boost", "model boost")):
        path = CHECKPOINTS / "eval" / f"{stem}-{variant}.json"
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        group = category if category in report["summary"] and category != "general" else "all"
        entry = report["summary"][group]
        figures[boost] = {
            "split": f"{report['settings']['split']} ({group}, {entry['count']} photos)",
            "never_trained_on": True,
            "long_side": report["settings"]["long_side"],
            "model": {k: round(v, 4) for k, v in entry["model"].items()},
            "gray": {k: round(v, 4) for k, v in entry["gray"].items()},
        }
    return figures


def _variants(name: str, fp32: Path, models_dir: Path, calib_dir: Path) -> list[dict]:
    from benchmarks.harness import SAMPLES
    from calibration.dataset import build_set
    from export.precision import compare, convert_fp16, convert_int8

    photos = sorted(SAMPLES.glob("*.jpg"))
    fp16 = convert_fp16(fp32, models_dir / f"{name}-fp16.onnx")
    category_dir = calib_dir / name.split("-", 1)[-1]  # calibrate on the model's own photos
    # a classification head's 222-channel tensors are collected per photo by the calibrator
    # (about 350 MB each at 256²): vivid models calibrate on 16 photos, seed models on 64
    count = 16 if name.startswith("vivid-") else 64
    calib = build_set(category_dir if category_dir.is_dir() else calib_dir, count=count)
    int8 = convert_int8(
        fp32, models_dir / f"{name}-int8.onnx", calib, ROOT / ".calibration-cache", "percentile"
    )
    made = []
    for precision, path in (("fp16", fp16), ("int8", int8)):
        entry = {
            "name": path.stem, "base": name, "precision": precision, "file": path.name,
            "sha256": file_sha256(path),
            "accuracy_vs_fp32": compare(path, fp32, photos).to_dict(),
        }  # fmt: skip
        if precision == "int8":
            entry["calibration"] = {"method": "percentile 99.9", "photos": len(calib),
                                    "set_sha256": calib.sha256}  # fmt: skip
        made.append(entry)
    return made


DESCRIPTIONS = {
    "seed": "Paper's U-Net (seed), MSE on {category}",
    "vivid": "Vivid U-Net: the seed trunk with a classification head over 222 ab colours, "
    "rarity-rebalanced cross-entropy, annealed-mean decoding in the graph; {category}",
}
RECIPES = {"seed": "trainer/recipes/seed_models.sh", "vivid": "trainer/recipes/vivid_models.sh"}


def model_entry(path: Path, models_dir: Path) -> dict:
    """Export one checkpoint to ONNX (with the parity check) and describe it for the manifest."""
    ckpt = load_checkpoint(path)
    name = path.stem
    report = export_onnx(path, models_dir / f"{name}.onnx")
    config = ckpt.config
    print(
        f"{name}: {report.path} sha256 {report.sha256[:12]} parity {report.parity_max_abs_ab:.1e}"
    )
    return {
        "name": name,
        "category": config["category"],
        "file": f"{name}.onnx",
        "sha256": report.sha256,
        "description": DESCRIPTIONS[config["preset"]].format(category=config["category"]),
        "preset": config["preset"],
        "parameters": config["parameters"],
        "input_size": config["input_size"],
        "boost": config["boost"],
        "training": {
            "photos": config["data"]["train"],
            "images_seen_last_phase": config["images_seen"],
            "recipe": RECIPES[config["preset"]],
        },
        "evaluation": _figures(name, config["category"]),
        "parity_max_abs_ab": report.parity_max_abs_ab,
    }


def ship(
    checkpoints: Path = CHECKPOINTS, models_dir: Path = MODELS_DIR, calib_dir: Path | None = None
) -> dict:
    models = []
    for path in sorted(checkpoints.glob("seed-*.safetensors")) + sorted(
        checkpoints.glob("vivid-*.safetensors")
    ):
        entry = model_entry(path, models_dir)
        models.append(entry)
        if calib_dir is not None:
            models += _category_variants(entry, models_dir, calib_dir)
    manifest = {"default": DEFAULT_MODEL, "models": models, "auto": auto_entry(models_dir)}
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _category_variants(entry: dict, models_dir: Path, calib_dir: Path) -> list[dict]:
    made = _variants(entry["name"], models_dir / entry["file"], models_dir, calib_dir)
    for variant in made:
        variant["category"] = entry["category"]
        print(f"  {variant['name']}: {variant['accuracy_vs_fp32']}")
    return made


def ship_one(
    name: str,
    checkpoints: Path = CHECKPOINTS,
    models_dir: Path = MODELS_DIR,
    calib_dir: Path | None = None,
) -> dict:
    """Export one checkpoint (and its variants, with ``calib_dir``) into the existing manifest."""
    manifest = json.loads((models_dir / MANIFEST.name).read_text())
    entry = model_entry(checkpoints / f"{name}.safetensors", models_dir)
    made = [entry] + (_category_variants(entry, models_dir, calib_dir) if calib_dir else [])
    names = {m["name"] for m in made}
    manifest["models"] = [m for m in manifest["models"] if m["name"] not in names] + made
    manifest["default"] = DEFAULT_MODEL
    manifest["auto"] = auto_entry(models_dir)
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calib", type=Path, help="photos to calibrate INT8 on (training set)")
    parser.add_argument("--auto-only", action="store_true", help="only refresh the auto table")
    parser.add_argument("--only", help="export only this checkpoint (e.g. vivid-general)")
    args = parser.parse_args()
    if args.auto_only:
        update_auto()
    elif args.only:
        ship_one(args.only, calib_dir=args.calib)
    else:
        ship(calib_dir=args.calib)
