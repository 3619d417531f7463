"""An RTX 3060 projection, on paper, from what was measured on another GPU (an H100 or H200,
named by the measurement's machine stage).

Never a measurement. The model's work per image comes from its ONNX graph (FLOPs of every
convolution and matrix product, and the bytes its activations move: each tensor written once and
read once, in FP16), the cards' figures from their published specifications (:data:`CARDS`).
The measured GPU's images/s per batch (``gpu_check.json``'s ``model_only`` rows, FP16) give an
efficiency against a roofline, ``e = max(F/P, B/W) / t`` (F, B per image; P, W the card's peak
FLOP/s and bandwidth; t the measured seconds per image). A batch's time on the target is a fixed
cost per batch (launches and synchronisation, which a smaller card does not shrink: what the
measured card spends beyond ``F/e`` at its smallest batch) plus ``batch × max(F/P', B/W') / e``
with ``e`` measured at the largest batch (:data:`METHOD`; the range: the fixed cost 1–1.5×).
VRAM: the allocator's reserved peak of the batch (else its working memory plus the weights) plus
a CUDA context of 300–500 MiB. The runtime measured is torch eager FP16, not TensorRT. Without a
measurement file only the roofline bound (e = 1) is given, and named so.

    python -m benchmarks.projection --measured gpu_check.json --json projection.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from engine.models import resolve_model


@dataclass(frozen=True)
class Card:
    name: str
    fp16_tensor_tflops: float
    """Dense FP16 tensor-core peak with FP32 accumulation (what autocast and TensorRT use)."""
    bandwidth_gb_s: float
    memory_gib: float
    source: str


CARDS = {
    "h100": Card(
        "NVIDIA H100 SXM",
        989.0,
        3350.0,
        80.0,
        "NVIDIA H100 datasheet: FP16 tensor 1,979 TFLOPS with sparsity (989 dense), HBM3 3.35 TB/s",
    ),
    "h200": Card(
        "NVIDIA H200 SXM",
        989.0,
        4800.0,
        141.0,
        "NVIDIA H200 datasheet: FP16 tensor 1,979 TFLOPS with sparsity (989 dense), HBM3e 4.8 TB/s",
    ),
    "rtx3060": Card(
        "NVIDIA GeForce RTX 3060 12 GB",
        25.6,
        360.0,
        12.0,
        "NVIDIA Ampere GA102 whitepaper, appendix, for the GA106 chip of the RTX 3060 "
        "(GeForce: FP16 tensor with FP32 accumulate at half the FP16-accumulate rate, "
        "51.2 → 25.6 TFLOPS dense at 1.78 GHz boost); 15 Gbps GDDR6 × 192 bit = 360 GB/s",
    ),
}


def graph_work(model: Path, size: int = 256) -> dict:
    """FLOPs, activation bytes (FP16, written + read once) and weight bytes of one image."""
    graph_model = onnx.load(str(model))
    for tensor in graph_model.graph.input:
        dims = tensor.type.tensor_type.shape.dim
        for dim, value in zip(dims, (1, 1, size, size), strict=False):
            dim.Clear()
            dim.dim_value = value
    inferred = shape_inference.infer_shapes(graph_model)
    shapes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if dims and all(dims):
            shapes[info.name] = dims
    weights = {t.name: numpy_helper.to_array(t).shape for t in inferred.graph.initializer}
    weight_shape = {**weights}
    for node in inferred.graph.node:  # weights stored as FP16 reach the convolutions by a Cast
        if node.op_type == "Cast" and node.input[0] in weights:
            weight_shape[node.output[0]] = weights[node.input[0]]
    flops = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes:
            kernel = weight_shape.get(node.input[1])
            if kernel is None:
                continue
            flops += 2 * int(np.prod(shapes[node.output[0]])) * int(np.prod(kernel[1:]))
        elif node.op_type in ("MatMul", "Gemm") and node.output[0] in shapes:
            a = shapes.get(node.input[0]) or weight_shape.get(node.input[0])
            if a:
                flops += 2 * int(np.prod(shapes[node.output[0]])) * int(a[-1])
    activations = sum(
        int(np.prod(shapes[name])) for node in inferred.graph.node for name in node.output
        if name in shapes and name not in weight_shape
    )  # fmt: skip
    weight_count = sum(int(np.prod(s)) for s in weights.values())
    return {
        "model": model.name, "size": size, "gflops": flops / 1e9,
        "activation_mb_fp16": activations * 2 * 2 / 1e6,  # written once, read once
        "weight_mb_fp16": weight_count * 2 / 1e6,
    }  # fmt: skip


def _roofline_seconds(work: dict, card: Card, batch: int) -> float:
    flops = work["gflops"] * 1e9
    moved = work["activation_mb_fp16"] * 1e6 + work["weight_mb_fp16"] * 1e6 / batch
    return max(flops / (card.fp16_tensor_tflops * 1e12), moved / (card.bandwidth_gb_s * 1e9))


METHOD = (
    "time per batch = a fixed cost per batch (launches, synchronisation: what the measured card "
    "spends beyond its roofline at the smallest batch, which a smaller card does not shrink) + "
    "batch × the target's roofline time per image ÷ the efficiency measured at the largest "
    "batch; the range puts the fixed cost between 1× and 1.5× the measured one (a slower host)"
)


def project(work: dict, rows: list[dict], measured_on: Card, target: Card) -> list[dict]:
    """Images/s and VRAM of ``target`` per batch from FP16 ``rows`` measured on ``measured_on``
    (:data:`METHOD`)."""
    fp16 = sorted(
        (r for r in rows if r.get("precision") == "fp16" and r.get("images_per_s")),
        key=lambda r: r["batch"],
    )
    if not fp16:
        return []
    efficiency = {
        r["batch"]: _roofline_seconds(work, measured_on, r["batch"]) * r["images_per_s"]
        for r in fp16
    }
    large = efficiency[fp16[-1]["batch"]]
    first, b = fp16[0], fp16[0]["batch"]
    on_roofline = b * _roofline_seconds(work, measured_on, b) / large
    fixed = max(0.0, b / first["images_per_s"] - on_roofline)
    out = []
    for r in fp16:
        batch = r["batch"]
        compute = batch * _roofline_seconds(work, target, batch) / large
        out.append({
            "batch": batch, "measured_images_per_s": r["images_per_s"],
            "efficiency_measured": round(efficiency[batch], 4),
            "fixed_ms_per_batch": round(fixed * 1e3, 3),
            "projected_images_per_s": [round(batch / (1.5 * fixed + compute)),
                                       round(batch / (fixed + compute))],
            **_vram(work, r, target),
        })  # fmt: skip
    return out


def _vram(work: dict, row: dict, target: Card) -> dict:
    """What the batch holds on the GPU: the allocator's reserved peak where measured (else its
    own working memory plus the weights), plus a CUDA context of 300–500 MiB."""
    if row.get("reserved_mib") is not None:
        base, source = row["reserved_mib"], "max_memory_reserved"
    elif row.get("batch_working_mib") is not None:
        base = row["batch_working_mib"] + work["weight_mb_fp16"] * 1e6 / 2**20
        source = "batch working memory + weights"
    else:
        return {"projected_vram_mib": None, "fits_12_gib": None}
    vram = [round(base + 300), round(base + 500)]
    return {"projected_vram_mib": vram, "vram_from": source,
            "fits_12_gib": vram[1] < target.memory_gib * 1024}  # fmt: skip


def roofline_bound(work: dict, target: Card, batches: list[int]) -> list[dict]:
    """The most images/s ``target`` could reach (e = 1): a bound, not a projection."""
    return [
        {"batch": b, "bound_images_per_s": round(1 / _roofline_seconds(work, target, b))}
        for b in batches
    ]


def read_records(path: Path) -> list[dict]:
    """The stage records of ``gpu_check.json``, or of its journal ``gpu_check.jsonl`` (what a
    run stopped mid-stage leaves; a line cut short is passed over)."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def card_of(gpu_name: str | None) -> str | None:
    """The :data:`CARDS` key of a GPU name as CUDA reports it ("NVIDIA H100 80GB HBM3"), or None."""
    name = (gpu_name or "").lower().replace(" ", "")
    return next((key for key in CARDS if key in name), None)


def measured_card(records: list[dict]) -> str:
    """The card the records were measured on, from their machine stage's GPU name."""
    machine = next((r for r in records if r.get("stage") == "machine"), {})
    gpu = (machine.get("result") or {}).get("gpu")
    key = card_of(gpu)
    if key is None:
        raise SystemExit(f"measured on {gpu or 'no GPU'}: not a card of {', '.join(CARDS)}; "
                         "name it with --measured-card")  # fmt: skip
    return key


def _model_only_rows(records: list[dict], path: Path) -> list[dict]:
    for record in records:
        if record.get("stage") == "model_only" and record.get("status") == "ok":
            return record["result"]["rows"]
    raise SystemExit(f"{path}: no model_only stage that ended ok")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default=None, help="shipped model name (default: the default)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--measured", type=Path, help="gpu_check.json (or its journal, .jsonl) of the measured GPU"
    )
    parser.add_argument(
        "--measured-card", default=None, choices=sorted(CARDS),
        help="the measured card (default: from the machine stage's GPU name)",
    )  # fmt: skip
    parser.add_argument("--target", default="rtx3060", choices=sorted(CARDS))
    parser.add_argument("--json", type=Path, help="write the projection here")
    args = parser.parse_args(argv)
    work = graph_work(resolve_model(args.model).path, args.size)
    records = read_records(args.measured) if args.measured else []
    card = args.measured_card or (measured_card(records) if args.measured else "h100")
    target, measured_on = CARDS[args.target], CARDS[card]
    report: dict = {"kind": "projection on paper, not a measurement", "work": work,
                    "target": target.__dict__, "measured_on": measured_on.__dict__,
                    "method": METHOD,
                    "runtime_measured": "torch eager FP16 (gpu_check's model_only rows), "
                    "not TensorRT"}  # fmt: skip
    if args.measured:
        rows = _model_only_rows(records, args.measured)
        report["rows"] = project(work, rows, measured_on, target)
    else:
        report["kind"] = "roofline bound (efficiency 1): no measurement given"
        report["rows"] = roofline_bound(work, target, [1, 8, 32, 64, 128, 256])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    per_image = f"{work['gflops']:.2f} GFLOP, {work['activation_mb_fp16']:.0f} MB moved per image"
    print(f"{report['kind']}: {target.name}, {work['model']} at {args.size}² ({per_image})")
    for row in report["rows"]:
        print(json.dumps(row))
    return report


if __name__ == "__main__":
    main()
