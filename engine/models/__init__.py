"""Shipped models and model resolution: ``--model NAME``, a category, or ``--model PATH.onnx``.

``manifest.json`` beside this file lists every shipped ONNX model (name, category, file, sha256,
training summary, evaluation figures). A file's sha256 is checked when it is loaded.

What is shipped and what is made: the package ships each model once, in float32 (its weights
stored as float16, :mod:`engine.models.weights`). Its FP16 and INT8 variants are *made on first
use* into the user cache (``$XDG_CACHE_HOME/colorization-engine/variants``), each with a sidecar
JSON holding its sha256 (checked at every load) and its measured accuracy against float32. The
engine's library does not make them itself (the converters live in ``export``/``calibration``):
a builder is registered with :func:`set_variant_builder` — the CLI registers
``export.variants.build_variant`` — and without one a missing variant is a
:class:`VariantMissingError` that says how to make it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from engine.model_io import Normalization
from engine.system import cache_dir

MODELS_DIR = Path(__file__).parent
MANIFEST = MODELS_DIR / "manifest.json"
METADATA_KEY = "colorization"
"""Key of the JSON config in an ONNX model's metadata_props (written by ``export.onnx``)."""


class ModelError(ValueError):
    """A model cannot be found, read or trusted; the message is one line for the user."""


class VariantMissingError(ModelError):
    """A shipped model's FP16/INT8 variant has not been made yet (and no builder is set)."""

    def __init__(self, base: ModelSpec, precision: str) -> None:
        self.base, self.precision = base, precision
        super().__init__(
            f"the {precision} variant of {base.name} is made on first use and is not in the cache "
            f"yet: run `engine models --make {base.name} --precision {precision}` (engine colorize "
            "makes it by itself)"
        )


VariantBuilder = Callable[["ModelSpec", str, Path], "ModelSpec"]
"""(base model, precision, target file) → the made variant; see :func:`set_variant_builder`."""
_variant_builder: VariantBuilder | None = None


def set_variant_builder(builder: VariantBuilder | None) -> None:
    """Make missing FP16/INT8 variants with ``builder`` (None: :class:`VariantMissingError`)."""
    global _variant_builder
    _variant_builder = builder


VARIANT_RECIPES = {"fp16": 1, "int8": 2}
"""How each variant is made, numbered: a change (int8 2: EfficientNet-Lite's first two blocks
kept in float, ``calibration.quantize.float_nodes``) makes the variants of older recipes again."""


def variant_path(base: ModelSpec | ModelInfo, precision: str) -> Path:
    """Where the ``precision`` variant of a shipped model is cached (keyed by the base's sha256
    and the recipe)."""
    recipe = VARIANT_RECIPES.get(precision, 1)
    name = f"{base.name}-{(base.sha256 or '')[:12]}-r{recipe}-{precision}.onnx"
    return cache_dir("variants") / name


def variant_record(path: Path) -> dict | None:
    """The sidecar JSON of a cached variant (None when there is none or it is unreadable)."""
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ModelInfo:
    """A shipped model as the manifest describes it."""

    name: str
    category: str
    file: str
    sha256: str
    description: str = ""
    summary: dict = field(default_factory=dict, compare=False)

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: its ONNX file, the sha256 it must have (None for user files), its name."""

    path: Path
    name: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelConfig:
    """What the engine needs from a model's metadata."""

    normalization: Normalization
    boost: tuple[float, float]
    input_size: int
    category: str
    raw: dict


@cache
def _manifest() -> dict:
    if not MANIFEST.exists():
        return {"default": None, "models": []}
    return json.loads(MANIFEST.read_text())


def shipped_models() -> list[ModelInfo]:
    """Every model in the manifest, in manifest order."""
    return [
        ModelInfo(
            name=m["name"],
            category=m["category"],
            file=m["file"],
            sha256=m["sha256"],
            description=m.get("description", ""),
            summary={k: v for k, v in m.items() if k not in ("name", "category", "file", "sha256")},
        )
        for m in _manifest()["models"]
    ]


def default_model_name() -> str | None:
    return _manifest().get("default")


def auto_table() -> tuple[dict[str, str], str | None]:
    """``--model auto``: category → shipped model name, and the classifier's sha256."""
    auto = _manifest().get("auto")
    if not auto:
        raise ModelError("this release ships no --model auto table")
    return dict(auto["models"]), auto.get("classifier_sha256")


def working_mb_per_image(model: str | Path | None = None) -> float | None:
    """Measured working memory per image of a batch (``working_mb_per_image`` in the manifest,
    from ``benchmarks/results/memory-*.json``) of a shipped model, a category's model, or the
    largest among ``auto``'s models; None for a model never measured (a user's file). Its
    variants are taken to need what it needs."""
    text = None if model is None else str(model)
    if text == "auto":
        try:
            names = set(auto_table()[0].values())
        except ModelError:
            return None
        figures = [working_mb_per_image(name) for name in names]
        known = [f for f in figures if f is not None]
        return max(known) if known and len(known) == len(figures) else None
    try:
        name = resolve_model(text).name
    except ModelError:
        return None
    for info in shipped_models():
        if info.name == name:
            return info.summary.get("working_mb_per_image")
    return None


PRECISIONS = ("fp32", "fp16", "int8")


def resolve_model(spec: str | Path | None = None, precision: str = "fp32") -> ModelSpec:
    """``None`` → the default model; a shipped name; a category (its default model); a path.

    With ``precision`` other than fp32, a shipped model resolves to its variant of that precision:
    one the manifest lists (``base`` + ``precision``), else the cached one made on first use
    (made now by the registered builder, or :class:`VariantMissingError`); a path is taken as it is.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    base = _resolve_base(spec)
    if precision == "fp32" or base.sha256 is None:
        return base
    for info in shipped_models():
        if info.summary.get("base") == base.name and info.summary.get("precision") == precision:
            return ModelSpec(info.path, info.name, info.sha256)
    return cached_variant(base, precision)


def verified_variant(base: ModelSpec | ModelInfo, precision: str) -> ModelSpec | None:
    """The cached ``precision`` variant of ``base`` when its file matches its sidecar's sha256."""
    path = variant_path(base, precision)
    record = variant_record(path)
    if record and path.is_file() and file_sha256(path) == record.get("sha256"):
        return ModelSpec(path, f"{base.name}-{precision}", record["sha256"])
    return None


def cached_variant(base: ModelSpec, precision: str) -> ModelSpec:
    """The cached ``precision`` variant of ``base``, made first when missing and a builder is set.

    A cached file whose sha256 differs from its sidecar's is made again (or refused)."""
    found = verified_variant(base, precision)
    if found is not None:
        return found
    if _variant_builder is None:
        raise VariantMissingError(base, precision)
    return _variant_builder(base, precision, variant_path(base, precision))


def _resolve_base(spec: str | Path | None) -> ModelSpec:
    models = [m for m in shipped_models() if m.summary.get("precision", "fp32") == "fp32"]
    text = str(spec) if spec is not None else default_model_name()
    if text is None:
        raise ModelError("no shipped models found; pass --model PATH.onnx")
    by_name = {m.name: m for m in models}
    if text in by_name:
        info = by_name[text]
        return ModelSpec(info.path, info.name, info.sha256)
    variants = {m.name: m for m in shipped_models()}
    if text in variants:  # a variant named directly
        info = variants[text]
        return ModelSpec(info.path, info.name, info.sha256)
    category = [m for m in models if m.category == text]
    if category:  # the default family's model of that category, else the default model
        default = default_model_name() or ""
        family = default.split("-")[0] + "-"
        info = next((m for m in category if m.name.startswith(family)), None)
        info = info or by_name.get(default) or category[0]
        return ModelSpec(info.path, info.name, info.sha256)
    path = Path(text)
    if path.suffix.lower() == ".onnx" or path.exists():
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        return ModelSpec(path, path.stem)
    known = ", ".join(sorted({*by_name, *(m.category for m in models)}))
    raise ModelError(
        f"unknown model {text!r}; known: {known}, auto (a model per photo), or a path to a .onnx "
        "file; each name's FP16/INT8 variant is --precision fp16|int8 (`engine models`)"
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(spec: ModelSpec) -> None:
    """Raise :class:`ModelError` when a shipped model's file is missing or its sha256 differs."""
    if not spec.path.is_file():
        raise ModelError(f"{spec.path}: model file is missing")
    if spec.sha256 is not None:
        actual = file_sha256(spec.path)
        if actual != spec.sha256:
            raise ModelError(
                f"{spec.path}: sha256 {actual[:12]}… does not match the manifest's "
                f"{spec.sha256[:12]}…; the file is corrupt or was replaced (reinstall the package)"
            )


def metadata_config(model) -> dict:
    """The JSON config stored in a loaded ONNX model's metadata ({} when there is none)."""
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props.get(METADATA_KEY, "{}"))


def set_metadata_config(model, config: dict) -> None:
    """Replace a loaded ONNX model's metadata with ``config`` (the only entry we write)."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(config)


def onnx_config(path: Path) -> dict:
    """The JSON config in the metadata of the ONNX file at ``path`` (weights are not parsed)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for bad files
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return metadata_config(model)


def read_model_config(path: Path) -> ModelConfig:
    """What the engine needs from the ONNX model at ``path`` (normalisation, boost, size…)."""
    raw = onnx_config(path)
    if not raw:
        raise ModelError(
            f"{path}: ONNX file has no '{METADATA_KEY}' metadata;"
            " export it with `engine export onnx`"
        )
    a, b = raw.get("boost", (1.0, 1.0))
    return ModelConfig(
        normalization=Normalization.from_dict(raw["normalization"]),
        boost=(float(a), float(b)),
        input_size=int(raw.get("input_size", 256)),
        category=raw.get("category", "general"),
        raw=raw,
    )
