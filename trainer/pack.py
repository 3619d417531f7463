"""A compact copy of training folders: every photo of one split re-encoded small, same layout.

For training where the photos must travel (a GPU machine that takes a few tens of MiB per call):
``trainer pack DATA... --out DIR`` writes ``DIR/<category>/<file>.jpg`` at most ``max_side``
pixels long (INTER_AREA, JPEG quality ``quality``). Keys (the path inside the category folder)
are kept, so the train/validation split of the packed folder is the same as the original's, and
only the photos of ``split`` are written (the validation photos stay behind).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2

from engine.color import fit_long_side
from engine.outputs import write_atomic
from trainer.data import Photo, scan_folders, select

PACK_RECORD = "PACK.json"
"""Written into a pack: the names of the folders its photos came from (for the model card)."""


def _pack_one(photo: Photo, out: Path, max_side: int, quality: int) -> int:
    image = cv2.imread(str(photo.path), cv2.IMREAD_COLOR)
    if image is None:
        return 0
    h, w = fit_long_side(image.shape[:2], max_side)
    if (h, w) != image.shape[:2]:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    target = out / photo.category / Path(photo.key).with_suffix(".jpg")
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return 0
    write_atomic(target, data.tobytes())
    return len(data)


def pack(
    roots: Sequence[Path],
    out: Path,
    max_side: int = 256,
    quality: int = 90,
    split: str | None = "train",
    val_fraction: float = 0.15,
) -> tuple[int, int]:
    """Write the packed copy; returns (photos written, bytes)."""
    photos = select(scan_folders(roots), split, val_fraction)
    Path(out).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        sizes = list(pool.map(lambda p: _pack_one(p, Path(out), max_side, quality), photos))
    sources = _recorded_sources(Path(out)) or []
    sources += [Path(r).resolve().name for r in roots if Path(r).resolve().name not in sources]
    write_atomic(Path(out) / PACK_RECORD, (json.dumps({"sources": sources}) + "\n").encode())
    return sum(1 for s in sizes if s), sum(sizes)


def _recorded_sources(folder: Path) -> list[str] | None:
    record = Path(folder) / PACK_RECORD
    return list(json.loads(record.read_text())["sources"]) if record.is_file() else None


def data_sources(root: Path) -> list[str]:
    """The photo folders a data folder stands for: a pack's sources, or the folder's own name."""
    return _recorded_sources(root) or [Path(root).resolve().name]


def pretrained_init(preset: str, out: Path, half: bool = True) -> Path:
    """A checkpoint of ``preset`` with its pretrained encoder loaded (decoder as initialised with
    seed 0), for ``trainer train --init`` where the weights' package is not installed. With
    ``half``, float tensors are stored as float16 (half the size; they load back as float32)."""
    import torch

    from trainer.checkpoint import Checkpoint, save_checkpoint
    from trainer.models import architecture_of, build_from_spec, preset_spec

    spec = preset_spec(preset)
    architecture = architecture_of(spec)
    if architecture.pretrained is None:
        raise ValueError(f"preset {preset!r}: its architecture has no pretrained weights")
    torch.manual_seed(0)
    model = build_from_spec(spec)
    architecture.pretrained(model)
    weights = {
        k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    config = {"preset": preset, "architecture": spec, "pretrained_init": True}
    save_checkpoint(out, Checkpoint(weights, config))
    return Path(out)
