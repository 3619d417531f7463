"""Every figure in README.md and MODELS.md between generated markers (blocks and inline
``<!-- fig … -->`` figures) equals what its committed results file says."""

from __future__ import annotations

import json

from benchmarks import readme
from benchmarks.ray_scaling import plans
from benchmarks.test_command import readme_test_command, summary_counts
from engine.memory import default_batch_size


def test_every_generated_figure_matches_its_results_file():
    assert readme.stale() == []


def test_a_changed_figure_is_caught(tmp_path):
    doc = tmp_path / "DOC.md"
    good = readme.regenerate("x <!-- fig engine/models/manifest.json default s -->?<!-- /fig --> y")
    doc.write_text(good)
    assert readme.stale((doc,)) == []
    doc.write_text(good.replace("effunet-general<", "vivid-general<"))
    assert readme.stale((doc,))


def test_default_batch_fits_an_eighth_of_an_8_gb_laptop():
    eight_gb = 8 << 30
    assert default_batch_size(36.6, eight_gb) == 8  # effunet-general, measured
    assert default_batch_size(547.3, eight_gb) == 1  # vivid-general: 8 would be 4.4 GB
    assert default_batch_size(110.0, eight_gb) == 8
    assert default_batch_size(None, 2 << 30) == 2  # never measured: 100 MB per image assumed


def test_ray_plan_table_states_both_plans_once_where_they_agree(tmp_path):
    result = {
        "machine": {"cores": 2},
        "mean_input_bytes": 5e5,
        "mean_output_bytes": 5e5,  # 1 MB moved per image: storage caps at 1,000 images/s
        "stage_seconds_per_image": {"decode": 0.005, "preprocess": 0.005, "write": 0.07},
        "ray_overhead_s_per_image": 0.02,  # CPU per image: 0.085 s, 0.125 s with Ray's
    }
    result["plan"] = plans(result)
    (tmp_path / "ray-scaling.json").write_text(json.dumps(result))
    rows = readme.ray_plan_table(tmp_path).splitlines()[2:]
    assert rows[0] == "| 1 | 200 | 94 / 64 | CPU | 2.95 / 4.34 |"
    assert rows[-1] == "| 32 | 6,400 | 3,012 / 2,048 | storage | 0.28 |"


def test_the_readme_test_command_is_what_ci_runs_and_what_gets_timed():
    steps = readme_test_command()
    assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"]
    assert steps[2].startswith("pip install -e ") and steps[-1] == "pytest"
    ci = (readme.ROOT / ".ci" / "run").read_text()
    assert " && ".join(steps[2:]) in ci


def test_pytest_summary_counts():
    line = "==== 244 passed, 3 skipped, 1 deselected, 3 warnings in 207.51s (0:03:27) ===="
    assert summary_counts(line) == {"passed": 244, "skipped": 3, "deselected": 1}
