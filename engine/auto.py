"""``--model auto``: a tiny category classifier picks the category model for each photo.

The classifier (``engine/models/category-classifier.onnx``, trained by ``trainer classifier``)
reads the photo's L at 64×64 and names a category; the manifest's ``auto`` table maps each
category to a shipped model. All category models run on the same backend; the pipeline groups
photos into batches per model (:meth:`AutoColorizer.route`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.backends import BackendOptions
from engine.colorizer import Colorizer
from engine.interfaces import ColorizerProtocol
from engine.model_io import Normalization, image_model_input
from engine.models import METADATA_KEY, MODELS_DIR, ModelError, auto_table, file_sha256

CLASSIFIER = "category-classifier.onnx"


class CategoryClassifier:
    """The category classifier on ONNX Runtime (CPU: it costs well under a millisecond)."""

    def __init__(self, path: Path | None = None, sha256: str | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path or MODELS_DIR / CLASSIFIER)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: the category classifier is missing (reinstall)")
        if sha256 is not None and file_sha256(self.path) != sha256:
            raise ModelError(f"{self.path}: sha256 does not match the manifest (reinstall)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        config = json.loads(meta.get(METADATA_KEY, "{}"))
        if config.get("kind") != "category-classifier":
            raise ModelError(f"{self.path}: not a category classifier")
        self.categories: list[str] = config["categories"]
        self.size: int = config["input_size"]
        self.normalization = Normalization.from_dict(config["normalization"])
        self.report: dict = config.get("report", {})

    def classify(self, pixels: np.ndarray) -> str:
        """The category of one gray/BGR(A) image."""
        return self.classify_input(image_model_input(pixels, self.size, self.normalization))

    def classify_input(self, x: np.ndarray) -> str:
        """The category of one prepared input (normalised L ``1×size×size``)."""
        logits = self.session.run(None, {"L": x[None].astype(np.float32, copy=False)})[0][0]
        return self.categories[int(np.argmax(logits))]


class AutoColorizer:
    """The :class:`~engine.colorizer.ColorizerProtocol` over several category models, chosen per
    image; every model is built from ``recipe`` (its ``model`` is ignored)."""

    def __init__(self, recipe: ColorizerRecipe | None = None) -> None:
        recipe = recipe or ColorizerRecipe(model="auto")
        table, classifier_sha256 = auto_table()
        self.classifier = CategoryClassifier(sha256=classifier_sha256)
        built = {  # one colorizer per model, however many categories it serves
            name: Colorizer(name, recipe.backend, boost=recipe.boost, options=recipe.options)
            for name in dict.fromkeys(table.values())
        }
        self.models = {category: built[name] for category, name in table.items()}
        missing = set(self.classifier.categories) - set(self.models)
        if missing:
            raise ModelError(f"the auto table names no model for {', '.join(sorted(missing))}")
        sizes = {c.size for c in self.models.values()}
        norms = {json.dumps(c.config.normalization.to_dict()) for c in self.models.values()}
        if len(sizes) != 1 or len(norms) != 1:
            raise ModelError("the auto models must share their input size and normalisation")
        self.first = next(iter(self.models.values()))
        self.size = self.first.size
        figures = [c.working_mb_per_image for c in built.values()]
        self.working_mb_per_image = None if None in figures else max(figures)

    def route(self, pixels: np.ndarray) -> str:
        """Which model colorizes ``pixels`` (its category)."""
        return self.classifier.classify(pixels)

    def preprocess(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.first.preprocess(pixels)  # the models share size and normalisation

    def batch_inputs(self, inputs: Sequence) -> np.ndarray:
        return self.first.batch_inputs(inputs)

    def infer(self, batch: np.ndarray, route: str | None = None) -> np.ndarray:
        return self.models[route or "general"].infer(batch)

    def postprocess(self, source, ab, dtype, alpha=None, route: str | None = None) -> np.ndarray:
        return self.models[route or "general"].postprocess(source, ab, dtype, alpha)

    def model_name(self, route: str | None) -> str:
        return self.models[route or "general"].spec.name

    def colorize_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.colorize(image) for image in images]

    def colorize(self, image: np.ndarray) -> np.ndarray:
        model = self.models[self.route(image)]
        return model.colorize(image)

    def describe(self) -> dict:
        backend = self.first.describe()
        return {
            **backend,
            "model": "auto",
            "models": {category: c.spec.name for category, c in self.models.items()},
            "classifier": {"file": str(self.classifier.path), **self.classifier.report},
        }


@dataclass(frozen=True)
class ColorizerRecipe:
    """Everything that builds a colorizer: what the command line, the Python API and each worker
    of a Ray cluster (where its models are loaded) pass instead of a list of arguments."""

    model: str | None = None
    """A shipped model name, a category, a path to an .onnx file, ``auto``, or None (default)."""
    backend: str | None = "ort"
    boost: tuple[float, float] | None = None
    options: BackendOptions = field(default_factory=BackendOptions)

    def build(self, with_backend: bool = True) -> ColorizerProtocol:
        """The colorizer; without its backend it does the pre- and post-processing only."""
        recipe = self if with_backend else replace(self, backend=None)
        if str(recipe.model) == "auto":
            return AutoColorizer(recipe)
        return Colorizer(recipe.model, recipe.backend, boost=recipe.boost, options=recipe.options)


def create_colorizer(
    model: str | Path | None = None,
    backend: str | None = "ort",
    boost: tuple[float, float] | None = None,
    **options: object,
) -> ColorizerProtocol:
    """A :class:`Colorizer` for one model, or an :class:`AutoColorizer` for ``model="auto"``;
    ``options`` are :class:`BackendOptions` fields (size, batch, threads, precision, device…)."""
    known = {k: v for k, v in options.items() if v is not None}
    model_text = None if model is None else str(model)
    return ColorizerRecipe(model_text, backend, boost, BackendOptions(**known)).build()
