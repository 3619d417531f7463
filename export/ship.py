"""Rebuild the shipped models: trainer checkpoints → ONNX files + manifest in ``engine/models``.

``python -m export.ship`` exports every ``trainer/checkpoints/seed-*.safetensors`` (with the parity
check), and writes ``engine/models/manifest.json`` with each file's sha256, a training summary and
the evaluation figures stored in ``trainer/checkpoints/eval/<category>-{noboost,boost}.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.models import MANIFEST, MODELS_DIR
from export.onnx import export_onnx
from trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "trainer" / "checkpoints"
DEFAULT_MODEL = "seed-general"


def _figures(category: str) -> dict:
    figures = {}
    for variant, boost in (("noboost", "no boost"), ("boost", "model boost")):
        path = CHECKPOINTS / "eval" / f"{category}-{variant}.json"
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


def ship(checkpoints: Path = CHECKPOINTS, models_dir: Path = MODELS_DIR) -> dict:
    models = []
    for path in sorted(checkpoints.glob("seed-*.safetensors")):
        ckpt = load_checkpoint(path)
        name = path.stem
        report = export_onnx(path, models_dir / f"{name}.onnx")
        config = ckpt.config
        models.append(
            {
                "name": name,
                "category": config["category"],
                "file": f"{name}.onnx",
                "sha256": report.sha256,
                "description": f"Paper's U-Net ({config['preset']}), MSE on {config['category']}",
                "preset": config["preset"],
                "parameters": config["parameters"],
                "input_size": config["input_size"],
                "boost": config["boost"],
                "training": {
                    "photos": config["data"]["train"],
                    "images_seen_last_phase": config["images_seen"],
                    "recipe": "trainer/recipes/seed_models.sh",
                },
                "evaluation": _figures(config["category"]),
                "parity_max_abs_ab": report.parity_max_abs_ab,
            }
        )
        print(
            f"{name}: {report.path} sha256 {report.sha256[:12]}"
            f" parity {report.parity_max_abs_ab:.1e}"
        )
    manifest = {"default": DEFAULT_MODEL, "models": models}
    (models_dir / MANIFEST.name).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    ship()
