"""Where the time of the FP32 and the INT8 graph goes, operator by operator (ONNX Runtime's own
profiler), to see which operators INT8 speeds up and which it slows down.

    python -m benchmarks.int8_operators [--json benchmarks/results/int8-operators-<machine>.json]

Both graphs of the default model run ``--runs`` times at batch 8 on every core, with ONNX
Runtime's profiling on; the kernel time of each node is summed per operator type (median run),
after ONNX Runtime's own fusions (so INT8 convolutions show as ``QLinearConv``, FP32 ones as
``FusedConv``/``Conv``). The INT8 graph is the variant ``engine models --make … --precision
int8`` makes.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.machine import provenance
from engine.models import default_model_name, resolve_model
from engine.system import available_cores


def operator_ms(model: Path, batch: int, runs: int) -> dict[str, float]:
    """Median milliseconds per run of each operator type of ``model`` at ``batch``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = available_cores()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(Path("/tmp") / f"profile-{model.stem}")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (batch, 1, 256, 256)).astype(np.float32)
    session.run(None, {name: x})  # warm-up, left out below
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_run: list[dict[str, float]] = []
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            per_run.append(defaultdict(float))
        elif event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and per_run:
            per_run[-1][event["args"]["op_name"]] += event["dur"] / 1e3
    measured = per_run[1:]  # the first model_run is the warm-up
    ops = sorted({op for run in measured for op in run})
    return {op: round(statistics.median(run.get(op, 0.0) for run in measured), 2) for op in ops}


def measure(batch: int, runs: int) -> dict:
    name = default_model_name()
    graphs = {"fp32": resolve_model(name, "fp32").path, "int8": resolve_model(name, "int8").path}
    times = {precision: operator_ms(path, batch, runs) for precision, path in graphs.items()}
    return {
        **provenance(),
        "batch": batch,
        "runs": runs,
        "ms_per_run": times,
        "total_ms": {p: round(sum(t.values()), 1) for p, t in times.items()},
    }


def markdown(result: dict) -> str:
    fp32, int8 = result["ms_per_run"]["fp32"], result["ms_per_run"]["int8"]
    rows = ["| operator | FP32 ms | INT8 ms |", "|---|---:|---:|"]
    for op in sorted(set(fp32) | set(int8), key=lambda o: -(fp32.get(o, 0) + int8.get(o, 0))):
        rows.append(f"| {op} | {fp32.get(op, 0):.1f} | {int8.get(op, 0):.1f} |")
    total = result["total_ms"]
    rows.append(f"| **all** | **{total['fp32']:.1f}** | **{total['int8']:.1f}** |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.batch, args.runs)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
