"""Calibration sets: photos chosen deterministically from a folder, preprocessed as the engine does.

Photos are ordered by the sha256 of their path relative to the folder (so a selection spreads over
sub-folders and never depends on listing order) and the first ``count`` readable ones are used. The
set's own sha256 covers every chosen file's path and bytes, the input size and the normalisation,
so a calibration cache is reused only for exactly the same inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.io import ImageError, discover, read_image
from engine.model_io import IDENTITY_NORMALIZATION, Normalization, image_model_input


@dataclass
class CalibrationSet:
    """Normalised model inputs ``N×1×s×s`` and where they came from."""

    inputs: np.ndarray
    files: list[str]
    sha256: str
    size: int

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(self, batch: int = 1) -> Iterator[np.ndarray]:
        for start in range(0, len(self.inputs), batch):
            yield self.inputs[start : start + batch]

    def describe(self) -> dict:
        return {"count": len(self), "size": self.size, "sha256": self.sha256, "files": self.files}


def build_set(
    folder: Path | str,
    count: int = 64,
    size: int = 256,
    norm: Normalization = IDENTITY_NORMALIZATION,
) -> CalibrationSet:
    """The calibration set of ``folder``: ``count`` photos, ``size``² model inputs in the model's
    normalisation (``norm``: the identity of every graph that carries its own)."""
    folder = Path(folder)
    jobs = discover([folder])
    ranked = sorted(jobs, key=lambda j: hashlib.sha256(j.relative.as_posix().encode()).hexdigest())
    digest = hashlib.sha256(json.dumps({"size": size, "norm": norm.to_dict()}).encode())
    inputs, files = [], []
    for job in ranked:
        if len(inputs) == count:
            break
        try:
            decoded = read_image(job.source)
        except ImageError:
            continue
        inputs.append(image_model_input(decoded.pixels, size, norm))
        files.append(job.relative.as_posix())
        digest.update(job.relative.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(job.source.read_bytes()).digest())
    if not inputs:
        raise ValueError(f"{folder}: no readable images for calibration")
    return CalibrationSet(np.stack(inputs), files, digest.hexdigest(), size)
