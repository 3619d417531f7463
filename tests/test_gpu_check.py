"""``benchmarks/gpu_check.py`` runs every stage it can on this CPU, records each as it ends,
and one failing stage loses nothing else; the CUDA-only stages say why they were skipped."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from benchmarks import gpu_check


def _records(out):
    return [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]


def test_every_stage_runs_or_says_why_on_a_cpu(tmp_path):
    gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    records = {r["stage"]: r for r in _records(tmp_path)}
    assert list(records) == list(gpu_check.STAGES)
    for name in ("machine", "parity", "model_only", "colour", "end_to_end"):
        assert records[name]["status"] == "ok", records[name]
    for name in ("cuda_graphs", "trt_standin"):
        assert records[name]["status"] == "skipped" and "CUDA" in records[name]["reason"]
    parity = records["parity"]["result"]["cases"]
    assert parity["fp32"]["mean_abs_ab"] < 0.2 and parity["fp32"]["image_delta_e_mean"] < 0.5
    assert parity["fp16"] == {"skipped": "needs CUDA"}
    rounding = records["parity"]["result"]["graph_weight_rounding"]
    assert rounding["mean_abs_ab"] == parity["fp32"]["mean_abs_ab"]
    assert parity["bf16"]["vs_torch_fp32"]["mean_abs_ab"] > 0  # bf16 against torch's own fp32
    rows = records["model_only"]["result"]["rows"]
    assert {(r["precision"], r["batch"]) for r in rows} == {
        ("fp32", 1),
        ("fp32", 4),
        ("bf16", 1),
        ("bf16", 4),
    }
    assert all(r["images_per_s"] > 0 for r in rows)
    e2e = records["end_to_end"]["result"]
    assert e2e["torch_file_pipeline"]["failed"] == 0 and e2e["cpu_ort_pipeline"]["failed"] == 0
    assert e2e["gpu_in_memory"]["images_per_s"] > 0
    assert json.loads((tmp_path / "gpu_check.json").read_text())[0]["stage"] == "machine"


def test_a_failing_stage_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    def broken(settings, deadline):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setitem(gpu_check.STAGES, "parity", (broken, 1))
    gpu_check.run_stages(gpu_check.quick(), ["parity", "machine"], tmp_path / "gpu_check.jsonl")
    first, second = _records(tmp_path)
    assert first["status"] == "failed" and "illegal memory access" in first["error"]
    assert second["status"] == "ok"
    assert first["traceback"].rstrip().endswith("an illegal memory access was encountered")
    assert "in broken" in first["traceback"]  # the innermost frame, where the error arose


def test_a_failing_row_is_recorded_and_the_stage_keeps_its_other_rows(tmp_path, monkeypatch):
    real = gpu_check._rate

    def rate(times, batch):
        if batch == 4:
            raise RuntimeError("CUDA error: out of memory\nsecond line")
        return real(times, batch)

    monkeypatch.setattr(gpu_check, "_rate", rate)
    gpu_check.run_stages(gpu_check.quick(), ["model_only"], tmp_path / "gpu_check.jsonl")
    (record,) = _records(tmp_path)
    assert record["status"] == "ok"
    rows = {(r["precision"], r["batch"]): r for r in record["result"]["rows"]}
    assert rows[("fp32", 4)]["error"] == "RuntimeError: CUDA error: out of memory"
    assert rows[("fp32", 1)]["images_per_s"] > 0 and rows[("bf16", 1)]["images_per_s"] > 0


def _deep(depth: int):
    if depth == 0:
        raise RuntimeError("CUDA error: deep inside")
    return _deep(depth - 1)


def test_the_traceback_keeps_the_innermost_frames(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.STAGES, "parity", (lambda s, d: _deep(30), 1))
    gpu_check.run_stages(gpu_check.quick(), ["parity"], tmp_path / "gpu_check.jsonl")
    trace = _records(tmp_path)[0]["traceback"]
    assert 'raise RuntimeError("CUDA error: deep inside")' in trace  # the innermost frame kept
    assert "run_stages" not in trace and "<lambda>" not in trace  # the outermost left out


def test_the_json_holds_every_stage_so_far_after_each_stage(tmp_path, monkeypatch):
    seen = []

    def peek(settings, deadline):
        seen.append(json.loads((tmp_path / "gpu_check.json").read_text()))
        return {}

    monkeypatch.setitem(gpu_check.STAGES, "colour", (peek, 1))
    gpu_check.run_stages(gpu_check.quick(), ["machine", "colour"], tmp_path / "gpu_check.jsonl")
    assert [r["stage"] for r in seen[0]] == ["machine"]  # written before the next stage began
    assert [r["stage"] for r in json.loads((tmp_path / "gpu_check.json").read_text())] == [
        "machine", "colour",
    ]  # fmt: skip


def test_without_cuda_the_full_check_refuses_to_start(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path)])
    assert stopped.value.code == 2 and "--device cpu --quick" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.jsonl").exists()


@pytest.mark.gpu
def test_trt_slots_on_the_real_cuda_runtime():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (the stand-in runs on the real CUDA runtime)")
    pytest.importorskip("cuda.bindings", reason="needs cuda-python")
    from benchmarks.trt_standin import run_standin

    facts = run_standin(max_batch=8, size=64, images=21, rounds=2)
    assert facts["correct"] and facts["device_mib_not_given_back"] < 1


def test_the_stage_deadlines_fit_in_80_percent_of_the_timeout():
    names = list(gpu_check.STAGES)
    scale = gpu_check.deadline_scale(names, 480)
    assert sum(gpu_check.STAGES[n][1] for n in names) * scale <= 0.8 * 480 + 1e-9
    assert gpu_check.deadline_scale(names, 10_000) == 1.0
