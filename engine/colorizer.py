"""The Python API: ``Colorizer(model=…, backend=…)``, used by the command line too.

>>> from engine import Colorizer                            # doctest: +SKIP
>>> colour = Colorizer().colorize(cv2.imread("scan.jpg"))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.backends import BackendOptions, create_backend
from engine.model_io import colorize_output, image_model_input
from engine.models import (
    ModelSpec,
    read_model_config,
    resolve_model,
    verify,
    working_mb_per_image,
)


class Colorizer:
    """A model on a backend, with the engine's pre- and post-processing.

    ``model``: a shipped model name, a category (``general``, ``people``, ``landscape``) or a path
    to an ``.onnx`` file; ``size``: inference resolution (default: the model's training size);
    ``boost``: ab factors after prediction (default: the model's own); ``precision``: fp32, or
    the fp16/int8 variant of a named model (made on first use, see ``engine.models``).
    ``backend=None`` loads no backend: such a colorizer does the pre- and post-processing only
    (the CPU stages of a distributed run). ``options`` (:class:`BackendOptions`: batch, max
    batch, device…) replaces ``size``/``threads``/``precision`` when given; whatever is asked
    reaches the backend. ``backend="torch"`` runs the model's FP32 checkpoint (``precision``
    fp16/bf16 is its autocast type); on CUDA the stages run on the GPU (``device_resident``,
    default: whenever the torch backend is on CUDA; see :mod:`engine.device_colorizer`).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        backend: str | None = "ort",
        size: int | None = None,
        boost: tuple[float, float] | None = None,
        threads: int | None = None,
        precision: str = "fp32",
        *,
        options: BackendOptions | None = None,
        device_resident: bool | None = None,
    ) -> None:
        options = options or BackendOptions(size=size, threads=threads, precision=precision)
        # torch runs the source checkpoint of the FP32 model, in the precision asked (autocast)
        file_precision = "fp32" if backend == "torch" else options.precision
        self.spec: ModelSpec = resolve_model(model, file_precision)
        verify(self.spec)
        self.config = read_model_config(self.spec.path)
        self.size = options.size or self.config.input_size
        if self.size % 4:
            raise ValueError(f"size {self.size} must be divisible by 4")
        self.boost = boost or self.config.boost
        self.options = options.replace(size=self.size)
        self.backend = (
            None if backend is None else create_backend(backend, str(self.spec.path), self.options)
        )
        self.device_stages = self._device_stages(device_resident)
        self.working_mb_per_image = working_mb_per_image(self.spec.name)
        """Measured working memory per image of a batch (None: never measured)."""

    def _device_stages(self, wanted: bool | None):
        """The GPU-resident stages where the backend keeps tensors on a device, else None."""
        device = getattr(self.backend, "device", None)
        if not hasattr(self.backend, "run_tensor") or wanted is False:
            if wanted:
                raise ValueError("device_resident needs the torch backend")
            return None
        if wanted is None and device.type != "cuda":
            return None
        from engine.device_colorizer import DeviceStages

        return DeviceStages(self.backend, self.size, self.config.normalization, self.boost)

    # The three stages, exposed separately so the pipeline can run them in different threads.

    def preprocess(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gray/BGR(A) pixels → (what :meth:`postprocess` takes L from, model input ``1×s×s``).

        The first is ``pixels`` itself: the full-resolution L is computed again, tile by tile,
        when the output is made, so no full-size float copy is held meanwhile.
        """
        if self.device_stages is not None:
            return self.device_stages.preprocess(pixels)
        return pixels, image_model_input(pixels, self.size, self.config.normalization)

    def batch_inputs(self, inputs: Sequence) -> np.ndarray:
        """The model inputs of several images → one batch (a device tensor on the GPU path)."""
        if self.device_stages is not None and not isinstance(inputs[0], np.ndarray):
            return self.device_stages.stack(inputs)
        return np.stack(inputs)

    def route(self, pixels: np.ndarray) -> str | None:
        """Which model colorizes ``pixels``: always this one (see ``engine.auto``)."""
        return None

    def model_name(self, route: str | None = None) -> str:
        return self.spec.name

    def infer(self, batch: np.ndarray, route: str | None = None) -> np.ndarray:
        """Model inputs ``N×1×s×s`` → normalised ab ``N×2×s×s``."""
        if self.backend is None:
            raise RuntimeError("this colorizer was built without a backend (backend=None)")
        if self.device_stages is not None and not isinstance(batch, np.ndarray):
            return self.device_stages.infer(batch)
        return self.backend.run(batch)

    def postprocess(
        self,
        source: np.ndarray,
        ab: np.ndarray,
        dtype: np.dtype,
        alpha: np.ndarray | None = None,
        route: str | None = None,
    ) -> np.ndarray:
        """The input's pixels (or its L plane) and predicted ab → BGR image of ``dtype``, BGRA
        with ``alpha``; the input's L is kept exactly."""
        if self.device_stages is not None and not isinstance(source, np.ndarray):
            return self.device_stages.postprocess(source, ab, dtype, alpha)
        return colorize_output(source, ab, self.config.normalization, self.boost, dtype, alpha)

    def colorize_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Colorize several gray/BGR(A) images (uint8/uint16) in one backend call.

        Outputs are BGR of the input's dtype and size; an input's alpha is not carried (the
        file pipeline carries it).
        """
        prepared = [self.preprocess(image) for image in images]
        if not prepared:
            return []
        ab = self.infer(self.batch_inputs([x for _, x in prepared]))
        return [
            self.postprocess(L, a, image.dtype)
            for (L, _), a, image in zip(prepared, ab, images, strict=True)
        ]

    def colorize(self, image: np.ndarray) -> np.ndarray:
        """Colorize one gray/BGR(A) image; returns BGR of the same size and dtype."""
        return self.colorize_batch([image])[0]

    def colorize_paths(self, inputs: Sequence[str | Path], output_dir: str | Path, **options):
        """Colorize files, folders and globs into ``output_dir`` via :mod:`engine.pipeline`."""
        from engine.pipeline import RunOptions, run

        return run(self, inputs, RunOptions(output_dir=Path(output_dir), **options))

    def describe(self) -> dict:
        return {
            "model": self.spec.name,
            "precision": self.config.raw.get("precision", "fp32"),
            "model_path": str(self.spec.path),
            "size": self.size,
            "boost": list(self.boost),
            **(self.backend.describe() if self.backend else {"backend": None}),
        }
