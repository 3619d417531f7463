"""Rebuild the shipped models: trainer checkpoints → ONNX files + manifest in ``engine/models``.

``python -m export.ship`` exports every ``trainer/checkpoints/{seed,vivid,effunet}-*.safetensors``
(with the parity check, weights stored as float16) and writes ``engine/models/manifest.json``:
each file's sha256, a training summary, the data's terms and the evaluation figures stored in
``trainer/checkpoints/eval/``. FP16 and INT8 variants are not shipped: they are made on first use
into the user cache (:mod:`export.variants`).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.models import MANIFEST, MODELS_DIR, file_sha256
from export.onnx import export_onnx
from trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "trainer" / "checkpoints"
DEFAULT_MODEL = "effunet-general"
AUTO_MODELS = {c: "effunet-general" for c in ("general", "landscape", "people")}
"""``--model auto``: every category goes to effunet-general, which beats the vivid category models
on their own categories (MODELS.md); the classifier stays for category models that win."""
FAMILIES = ("seed", "vivid", "effunet")
OPEN_DATA = "openly licensed photos only (trainer fetch-data; ../shared/data/train)"
RESEARCH_DATA = (
    "openly licensed photos and research / non-commercial photo sets (ImageNet samples, BSDS500, "
    "UTKFace, street fashion, pets, weather; ../shared/data/extra): not for commercial use"
)
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


DESCRIPTIONS = {
    "seed": "Paper's U-Net (seed), MSE on {category}",
    "vivid": "Vivid U-Net: the seed trunk with a classification head over 222 ab colours, "
    "rarity-rebalanced cross-entropy, annealed-mean decoding in the graph; {category}",
    "effunet": "EfficientNet-Lite0 encoder (ImageNet weights) with a U-Net decoder and a 222-class "
    "head at 1/4 resolution, annealed-mean decoding with the gamut mask in the graph; {category}",
}
RECIPES = {
    "seed": "trainer/recipes/seed_models.sh",
    "vivid": "trainer/recipes/vivid_models.sh",
    "effunet": "trainer/recipes/effunet_gpu.sh",
}


def _sources(config: dict) -> list[str]:
    data = config.get("data", {})
    return data.get("sources") or data.get("roots") or []


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
        "family": config["preset"],
        "file": f"{name}.onnx",
        "sha256": report.sha256,
        "description": DESCRIPTIONS[config["preset"]].format(category=config["category"]),
        "preset": config["preset"],
        "parameters": config["parameters"],
        "input_size": config["input_size"],
        "boost": config["boost"],
        "training": {
            "photos": config["data"]["train"],
            "data": RESEARCH_DATA if "extra" in _sources(config) else OPEN_DATA,
            "images_seen_last_phase": config["images_seen"],
            "device": config.get("training", {}).get("device", "cpu"),
            "recipe": RECIPES[config["preset"]],
        },
        "evaluation": _figures(name, config["category"]),
        "parity_max_abs_ab": report.parity_max_abs_ab,
        **working_memory(name),
    }


MEMORY_RESULTS = ROOT / "benchmarks" / "results"


def working_memory(name: str, results: Path = MEMORY_RESULTS) -> dict:
    """``working_mb_per_image``: how much a run's peak RSS grows per image of the batch, from
    ``benchmarks/results/memory-<name>.json`` (the slope between its smallest and largest
    batch, each measured in a fresh process); {} when the model was not measured."""
    path = results / f"memory-{name}.json"
    if not path.exists():  # a category model: its family's general model, the same network
        path = results / f"memory-{name.rsplit('-', 1)[0]}-general.json"
    if not path.exists():
        return {}
    rows = sorted(json.loads(path.read_text())["results"], key=lambda r: r["batch"])
    low, high = rows[0], rows[-1]
    if high["batch"] == low["batch"]:
        return {}
    slope = (high["peak_rss_mb"] - low["peak_rss_mb"]) / (high["batch"] - low["batch"])
    return {"working_mb_per_image": round(max(slope, 1.0), 1), "working_mb_source": path.name}


def update_working_memory(models_dir: Path = MODELS_DIR) -> dict:
    """Rewrite only the working-memory figures of the manifest's models (after a memory run)."""
    manifest = json.loads((models_dir / MANIFEST.name).read_text())
    for entry in manifest["models"]:
        entry.pop("working_mb_per_image", None)
        entry.pop("working_mb_source", None)
        entry.update(working_memory(entry["name"]))
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def ship(checkpoints: Path = CHECKPOINTS, models_dir: Path = MODELS_DIR) -> dict:
    """Export every shipped family's checkpoints and write the manifest."""
    models = []
    for family in FAMILIES:
        for path in sorted(checkpoints.glob(f"{family}-*.safetensors")):
            models.append(model_entry(path, models_dir))
    manifest = {"default": DEFAULT_MODEL, "models": models, "auto": auto_entry(models_dir)}
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def ship_one(name: str, checkpoints: Path = CHECKPOINTS, models_dir: Path = MODELS_DIR) -> dict:
    """Export one checkpoint into the existing manifest."""
    manifest = json.loads((models_dir / MANIFEST.name).read_text())
    entry = model_entry(checkpoints / f"{name}.safetensors", models_dir)
    manifest["models"] = [m for m in manifest["models"] if m["name"] != name] + [entry]
    manifest["default"] = DEFAULT_MODEL
    manifest["auto"] = auto_entry(models_dir)
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--auto-only", action="store_true", help="only refresh the auto table")
    parser.add_argument("--only", help="export only this checkpoint (e.g. vivid-general)")
    parser.add_argument(
        "--memory-only", action="store_true",
        help="only refresh working_mb_per_image (from benchmarks/results/memory-*.json)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.memory_only:
        update_working_memory()
    elif args.auto_only:
        update_auto()
    elif args.only:
        ship_one(args.only)
    else:
        ship()
