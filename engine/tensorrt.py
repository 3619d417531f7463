"""TensorRT engines from our ONNX graphs, cached by everything that makes a plan valid.

Works with ``tensorrt`` 10.x (strongly typed networks) and 11.x, and with ``tensorrt_rtx``
(TensorRT for RTX), chosen by what is installed or by ``runtime``. Precision comes from the ONNX
graph itself (FP32, FP16, or INT8 Q/DQ — symmetric int8 with float bias, the ``trt`` flavour of
``calibration.quantize``). One optimisation profile: dynamic batch (min 1, opt, max) at a fixed
square size. The plan is written atomically with a JSON key beside it; a plan whose key does not
match, or that is missing or empty, is rebuilt (with a message), never trusted.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from engine.models import file_sha256, onnx_config
from engine.outputs import write_atomic
from engine.system import cache_dir as system_cache_dir
from engine.system import gpu_info

RUNTIMES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
INSTALL_HINT = "pip install 'colorization-engine[trt]' (TensorRT for RTX) or pip install tensorrt"


class TensorRTError(RuntimeError):
    """TensorRT is missing or refused the model; the message says which and why."""


def cache_dir() -> Path:
    """Where engines are cached: ``$XDG_CACHE_HOME/colorization-engine/trt`` (or ~/.cache/…)."""
    return system_cache_dir("trt")


def load_runtime(name: str | None = None) -> tuple[str, ModuleType]:
    """The TensorRT module to use: ``name`` if given, else the first one installed."""
    if name is not None and name not in RUNTIMES:
        raise TensorRTError(f"unknown runtime {name!r}; use {' or '.join(RUNTIMES)}")
    for candidate in [name] if name else list(RUNTIMES):
        try:
            return candidate, importlib.import_module(RUNTIMES[candidate])
        except (ImportError, OSError) as exc:  # OSError: the libs package is a download stub
            if name:
                raise TensorRTError(
                    f"{candidate} cannot be imported ({exc}); {INSTALL_HINT}"
                ) from None
    raise TensorRTError(f"no TensorRT runtime is installed; {INSTALL_HINT}")


@dataclass(frozen=True)
class BuildOptions:
    """The optimisation profile and builder limits."""

    batch: int = 8
    max_batch: int = 32
    size: int = 256
    workspace_mb: int = 1024

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= self.max_batch:
            raise TensorRTError(f"need 1 ≤ --batch ({self.batch}) ≤ --max-batch ({self.max_batch})")
        if self.size % 4:
            raise TensorRTError(f"--size {self.size} must be divisible by 4")


@dataclass
class BuildReport:
    plan: Path
    key: dict
    cache_hit: bool
    seconds: float
    message: str = ""


def _gpu() -> dict:
    """The first GPU's name and compute capability (None, None without one)."""
    first = next(iter(gpu_info()), {})
    return {"name": first.get("name"), "cc": first.get("compute_capability")}


def _sm_suffix(gpu: dict) -> str:
    """``-sm86`` for a GPU of compute capability 8.6; empty without one."""
    return f"-sm{gpu['cc'].replace('.', '')}" if gpu["cc"] else ""


def engine_key(model: Path, runtime: str, module: ModuleType, options: BuildOptions) -> dict:
    """Everything a plan depends on; a cached plan is used only when its key is equal.

    A TensorRT plan is made for one GPU (its name and compute capability are in the key); a
    TensorRT for RTX plan is not (its kernels are compiled on the device when it runs, into the
    runtime cache), so a plan built on a machine without a GPU is reused where one is."""
    config = onnx_config(model)
    return {
        "onnx_sha256": file_sha256(model),
        "runtime": runtime,
        "runtime_version": module.__version__,
        "gpu": {"name": None, "cc": None} if runtime == "tensorrt-rtx" else _gpu(),
        "precision": config.get("precision", "fp32"),
        "calibration": config.get("calibration"),
        "profile": {"min": [1, 1, options.size, options.size],
                    "opt": [options.batch, 1, options.size, options.size],
                    "max": [options.max_batch, 1, options.size, options.size]},
        "builder": {"workspace_mb": options.workspace_mb, "strongly_typed": True},
    }  # fmt: skip


def default_plan_path(key: dict) -> Path:
    p = key["profile"]
    name = (
        f"{key['onnx_sha256'][:16]}-{key['runtime']}-{key['runtime_version']}-{key['precision']}"
        f"-b{p['opt'][0]}-{p['max'][0]}-s{p['opt'][2]}"
    )
    return cache_dir() / f"{name}{_sm_suffix(key['gpu'])}.plan"


def _cached(plan: Path, key: dict) -> str | None:
    """None when ``plan`` can be reused for ``key``, else why it cannot."""
    key_file = plan.with_suffix(".json")
    if not plan.exists():
        return "no cached plan"
    try:
        stored = json.loads(key_file.read_text())
    except (OSError, json.JSONDecodeError):
        return "its key file is missing or corrupt"
    if stored != key:
        changed = sorted(k for k in key if stored.get(k) != key[k])
        return f"it was built for another {', '.join(changed)}"
    if plan.stat().st_size == 0:
        return "the plan file is empty"
    return None


def error_logger(module: ModuleType):
    """A TensorRT logger that prints nothing and keeps the errors (``.errors``), so that a failed
    build says why in our one line instead of "failed" alone or TensorRT's own log lines."""

    class ErrorLog(module.ILogger):
        def __init__(self) -> None:
            module.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, message) -> None:
            if severity in (module.ILogger.ERROR, module.ILogger.INTERNAL_ERROR):
                self.errors.append(" ".join(str(message).split()))

    return ErrorLog()


def timing_cache_path(module: ModuleType) -> Path:
    """The builder's timing cache: per TensorRT version and GPU (timings are the GPU's own)."""
    return cache_dir() / f"timing-{module.__version__}{_sm_suffix(_gpu())}.cache"


def _build(model: Path, module: ModuleType, runtime: str, options: BuildOptions) -> bytes:
    logger = error_logger(module)
    builder = module.Builder(logger)
    flags = 0
    strongly_typed = getattr(module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = module.OnnxParser(network, logger)
    if not parser.parse(model.read_bytes()):
        errors = "; ".join(
            " ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)
        )
        raise TensorRTError(f"{model}: {runtime} cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(module.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    s = options.size
    profile.set_shape(
        network.get_input(0).name, (1, 1, s, s), (options.batch, 1, s, s),
        (options.max_batch, 1, s, s),
    )  # fmt: skip
    config.add_optimization_profile(profile)
    timing_file = None
    if runtime == "tensorrt":  # TensorRT for RTX has no timing cache (it tunes on the device)
        timing_file = timing_cache_path(module)
        data = timing_file.read_bytes() if timing_file.exists() else b""
        # a cache from another TensorRT or GPU is ignored rather than refused
        config.set_timing_cache(config.create_timing_cache(data), True)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        why = logger.errors[-1] if logger.errors else "no reason given"
        raise TensorRTError(
            f"{model}: {runtime} {module.__version__} failed to build an engine: {why}"
        )
    timing = config.get_timing_cache() if timing_file is not None else None
    if timing is not None:
        write_atomic(timing_file, bytes(memoryview(timing.serialize())))
    return bytes(memoryview(plan))


def build_engine(
    model: Path | str,
    plan: Path | str | None = None,
    runtime: str | None = None,
    options: BuildOptions | None = None,
) -> BuildReport:
    """The engine of ``model`` at ``plan`` (default: the cache), built only when needed."""
    model = Path(model)
    if not model.is_file():
        raise TensorRTError(f"{model}: no such model file")
    options = options or BuildOptions()
    runtime, module = load_runtime(runtime)
    key = engine_key(model, runtime, module, options)
    plan = Path(plan) if plan else default_plan_path(key)
    reason = _cached(plan, key)
    if reason is None:
        return BuildReport(plan, key, True, 0.0, f"cache hit: {plan}")
    started = time.perf_counter()
    data = _build(model, module, runtime, options)
    write_atomic(plan, data)
    write_atomic(plan.with_suffix(".json"), (json.dumps(key, indent=2) + "\n").encode())
    seconds = time.perf_counter() - started
    message = f"built {plan} in {seconds:.1f}s ({reason})"
    return BuildReport(plan, key, False, seconds, message)
