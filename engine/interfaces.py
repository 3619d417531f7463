"""What the pipelines need of a colorizer, written down once (no implementation here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class ColorizerProtocol(Protocol):
    """What the file pipeline (``engine.pipeline.run``) and the Ray stages need of a colorizer:
    :class:`Colorizer` (one model) and ``engine.auto.AutoColorizer`` (a model per photo) both
    satisfy it. ``route`` names the model a photo goes to (None: the only one); ``infer`` and
    ``postprocess`` take that route, so photos are batched per model. On the GPU path
    (``engine.device_colorizer``) the sources, model inputs and ab are device tensors: the
    pipelines only pass them on, and ``batch_inputs`` stacks them."""

    size: int
    working_mb_per_image: float | None
    """Backend working memory per image of a batch, measured per shipped model (None: not)."""

    def preprocess(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def route(self, pixels: np.ndarray) -> str | None: ...

    def batch_inputs(self, inputs: Sequence) -> np.ndarray: ...

    def infer(self, batch: np.ndarray, route: str | None = None) -> np.ndarray: ...

    def postprocess(
        self,
        source: np.ndarray,
        ab: np.ndarray,
        dtype: np.dtype,
        alpha: np.ndarray | None = None,
        route: str | None = None,
    ) -> np.ndarray: ...

    def model_name(self, route: str | None = None) -> str: ...

    def colorize_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def colorize(self, image: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict: ...
