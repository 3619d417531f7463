"""The record of training tries: what each run changed and how its epochs scored on the
cross-source photos it validated on, kept in one committed file and shown as one table.

    python -m trainer.tries add NAME RUN_DIR --what "..." [--file FILE]

reads ``RUN_DIR/last.json`` (the run's settings, machine and images seen) and
``RUN_DIR/metrics.csv`` (the per-epoch validation), and adds or replaces the try ``NAME``.
:func:`markdown_table` is the ``tries`` block of MODELS.md (``benchmarks.readme``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from engine.outputs import write_atomic
from engine.system import available_cores, cpu_model

TRIES = Path(__file__).resolve().parent / "checkpoints" / "eval" / "tries.json"
SETTINGS = ("init", "lr", "lr_schedule", "encoder_lr_scale", "weight_decay", "ema_decay",
            "size", "cache_max_side", "max_downscale", "min_scale", "soft_targets", "balance",
            "batch_size", "epoch_size", "freeze_batchnorm")  # fmt: skip
SCORES = ("val_psnr", "val_hue", "gray_psnr", "cross_val_psnr", "cross_gray_psnr",
          "cross_val_auc", "cross_gray_auc", "cross_val_hue")  # fmt: skip


def read_run(run_dir: Path) -> dict:
    """A run's settings, size and per-epoch scores."""
    config = json.loads((run_dir / "last.json").read_text())
    training = config["training"]
    with (run_dir / "metrics.csv").open() as f:
        epochs = [
            {"epoch": int(row["epoch"]), "images_seen": int(row["images_seen"]),
             "minutes": round(float(row["elapsed_s"]) / 60, 1),
             **{k: round(float(row[k]), 4) for k in SCORES if row.get(k)}}
            for row in csv.DictReader(f)
        ]  # fmt: skip
    photos = config["data"]["train"]["photos"]
    return {
        "settings": {k: training.get(k) for k in SETTINGS},
        "device": training.get("device", "cpu"),
        "training_photos": photos,
        "images_seen": config["images_seen"],
        "passes": round(config["images_seen"] / photos, 2),
        "validation": f"{config['data']['cross']['photos']} cross-source photos and "
        f"{config['data']['val']['photos']} in-source ones, whole photos at "
        f"{config['input_size']}², annealed-mean T {config['architecture']['temperature']}",
        "epochs": epochs,
    }


def add(name: str, run_dir: Path, what: str, file: Path = TRIES) -> dict:
    """Add (or replace) the try ``name`` in ``file``."""
    record = json.loads(file.read_text()) if file.is_file() else {"tries": []}
    record["machine"] = {"cpu": cpu_model(), "cores": available_cores()}
    record["tries"] = [t for t in record["tries"] if t["name"] != name]
    record["tries"].append({"name": name, "what": what, **read_run(run_dir)})
    write_atomic(file, (json.dumps(record, indent=2) + "\n").encode())
    return record


def markdown_table(record: dict) -> str:
    """One row per epoch of every try: cross-source PSNR (gray), AuC (gray) and hue, then the
    in-source PSNR (gray) and hue."""
    lines = ["| try | epoch | images seen | cross PSNR dB (gray) | cross AuC (gray) | cross hue | "
             "in-source PSNR dB (gray) | in-source hue |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for t in record["tries"]:
        for e in t["epochs"]:
            lines.append(
                f"| {t['name']} | {e['epoch']} | {e['images_seen']:,} | "
                f"{e['cross_val_psnr']:.2f} ({e['cross_gray_psnr']:.2f}) | "
                f"{e['cross_val_auc']:.4f} ({e['cross_gray_auc']:.4f}) | "
                f"{e['cross_val_hue']:.3f} | {e['val_psnr']:.2f} ({e['gray_psnr']:.2f}) | "
                f"{e['val_hue']:.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    adding = sub.add_parser("add", help="add a run's record")
    adding.add_argument("name")
    adding.add_argument("run_dir", type=Path)
    adding.add_argument("--what", required=True, help="what the try changed, in a sentence")
    adding.add_argument("--file", type=Path, default=TRIES)
    args = parser.parse_args()
    record = add(args.name, args.run_dir, args.what, args.file)
    print(markdown_table(record))


if __name__ == "__main__":
    main()
