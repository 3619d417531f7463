"""What a result was measured on: CPU, GPU, runtime versions, and this CPU's fp32 peak."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

import numpy as np

from engine.system import available_cores, cpu_model, gpu_info

RUNTIMES = (
    "onnxruntime", "onnxruntime-gpu", "tensorrt", "tensorrt-rtx", "torch", "numpy",
    "opencv-python-headless",
)  # fmt: skip


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpus": gpu_info(),
        "versions": {name: v for name in RUNTIMES if (v := _version(name))},
    }


def provenance(model: str | None = None, command: str | None = None) -> dict:
    """What every results file records: the command that made it, the model it measured (the
    default when None), the machine, and when."""
    import shlex
    import sys
    from datetime import UTC, datetime

    from engine.models import default_model_name

    if command is None:
        program = Path(sys.argv[0])
        head = "engine" if program.name == "engine" else f"python -m {_module_of(program)}"
        command = " ".join([head, *map(shlex.quote, sys.argv[1:])])
    return {
        "command": command,
        "model_name": model or default_model_name(),
        "machine": machine_info(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _module_of(program: Path) -> str:
    parts = program.resolve().with_suffix("").parts
    return ".".join(parts[parts.index("benchmarks") :]) if "benchmarks" in parts else program.stem


def fp32_matmul_peak_gflops(
    n: int = 1536, seconds: float = 1.0, threads: int | None = None
) -> float:
    """fp32 matrix-product GFLOP/s of ONNX Runtime's own GEMM (MLAS) on this CPU, best of runs.

    The same kernels run the model's convolutions, so it is the fair ceiling for ``gflops``.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n]),
        ],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or available_cores()
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((n, n), dtype=np.float32) for k in ("a", "b")}
    session.run(None, feeds)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feeds)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best
