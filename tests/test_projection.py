"""The RTX 3060 projection: the graph's FLOPs agree with the trainer's count, and a projection
from measured rows is a range below the measured card and at or below the roofline bound."""

from __future__ import annotations

import json

import pytest

from benchmarks import projection
from engine.models import resolve_model


@pytest.fixture(scope="module")
def work() -> dict:
    return projection.graph_work(resolve_model("effunet-general").path, 256)


def test_graph_flops_match_the_trainers_count(work):
    pytest.importorskip("torch")
    from trainer.checkpoint import load_checkpoint
    from trainer.models import count_macs

    checkpoint = resolve_model("effunet-general").path.parents[2] / "trainer/checkpoints"
    model = load_checkpoint(checkpoint / "effunet-general.safetensors").build_model().eval()
    expected = 2 * count_macs(model, 256, 256) / 1e9
    assert work["gflops"] == pytest.approx(expected, rel=0.03)
    assert work["activation_mb_fp16"] > 10 and work["weight_mb_fp16"] > 1


def test_projection_is_a_range_below_the_measured_card_and_the_bound(work):
    h200, rtx = projection.CARDS["h200"], projection.CARDS["rtx3060"]
    rows = [
        {"precision": "fp16", "batch": 1, "images_per_s": 900.0, "batch_working_mib": 60.0},
        {"precision": "fp16", "batch": 32, "images_per_s": 9000.0, "batch_working_mib": 1500.0},
        {"precision": "fp32", "batch": 32, "images_per_s": 3000.0},
    ]
    projected = projection.project(work, rows, h200, rtx)
    assert [p["batch"] for p in projected] == [1, 32]  # FP16 rows only
    bounds = projection.roofline_bound(work, rtx, [1, 32])
    bound = {b["batch"]: b["bound_images_per_s"] for b in bounds}
    for row in projected:
        low, high = row["projected_images_per_s"]
        assert 0 < low <= high <= bound[row["batch"]]
        assert 0 < row["efficiency_measured"] <= 1
    assert projected[1]["projected_images_per_s"][1] < 9000 / 4  # a far smaller card
    assert projected[1]["projected_vram_mib"][0] > 1500 and projected[1]["fits_12_gib"]


def test_the_measured_card_comes_from_the_gpu_name_and_the_journal_is_read(tmp_path):
    assert projection.card_of("NVIDIA H100 80GB HBM3") == "h100"
    assert projection.card_of("NVIDIA H200") == "h200"
    assert projection.card_of("Tesla T4") is None
    records = [
        {"stage": "machine", "status": "ok", "result": {"gpu": "NVIDIA H100 80GB HBM3"}},
        {"stage": "model_only", "status": "ok", "result": {"rows": [
            {"precision": "fp16", "batch": 8, "images_per_s": 4000.0, "batch_working_mib": 900},
        ]}},
    ]  # fmt: skip
    journal = tmp_path / "gpu_check.jsonl"
    journal.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"stage": "colo')
    report = projection.main(["--measured", str(journal), "--json", str(tmp_path / "p.json")])
    assert report["measured_on"]["name"] == "NVIDIA H100 SXM"
    assert report["rows"][0]["batch"] == 8
    with pytest.raises(SystemExit, match="Tesla T4"):
        records[0]["result"]["gpu"] = "Tesla T4"
        journal.write_text("".join(json.dumps(r) + "\n" for r in records))
        projection.main(["--measured", str(journal)])


def test_small_batches_keep_the_measured_fixed_cost_and_vram_uses_the_reserved_peak(work):
    h100, rtx = projection.CARDS["h100"], projection.CARDS["rtx3060"]
    rows = [
        {"precision": "fp16", "batch": 1, "images_per_s": 800.0, "reserved_mib": 100.0},
        {"precision": "fp16", "batch": 128, "images_per_s": 20000.0, "reserved_mib": 4000.0},
    ]
    small, large = projection.project(work, rows, h100, rtx)
    assert small["fixed_ms_per_batch"] > 0
    assert small["projected_images_per_s"][1] < 800  # never faster than the launches allow
    assert small["projected_vram_mib"] == [400, 600] and small["vram_from"] == "max_memory_reserved"
    bound = projection.roofline_bound(work, rtx, [128])[0]["bound_images_per_s"]
    assert large["projected_images_per_s"][1] <= bound
