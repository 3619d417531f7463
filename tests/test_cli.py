"""The ``trainer`` and ``engine`` command lines: help for every option, eval, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from engine.cli import app as engine_app
from tests.conftest import PHOTOS
from trainer.cli import app as trainer_app

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "trainer" / "checkpoints"
runner = CliRunner()


def commands_of(app: typer.Typer) -> dict:
    """``name`` → click command of every command of ``app``, sub-groups' as ``"export onnx"``."""
    group = typer.main.get_command(app)
    commands = dict(group.commands)
    for name, sub in group.commands.items():  # sub-groups such as `engine export`
        commands.update({f"{name} {n}": c for n, c in getattr(sub, "commands", {}).items()})
    return commands


@pytest.mark.parametrize("app", [trainer_app, engine_app], ids=["trainer", "engine"])
def test_every_command_and_option_has_help(app):
    commands = commands_of(app)
    assert commands
    for name, command in commands.items():
        assert command.help, f"{name} has no help"
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help and len(param.help) > 10, f"{name} {param.name}"
            else:
                assert getattr(param, "help", None), f"{name} argument {param.name}"
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, result.output


def test_eval_scores_the_shipped_model_against_gray(tmp_path):
    out = tmp_path / "report.json"
    ckpt = CHECKPOINTS / "seed-general.safetensors"
    result = runner.invoke(
        trainer_app,
        ["eval", str(ckpt), str(PHOTOS), "--split", "all", "--long-side", "128",
         "--input-size", "128", "--device", "cpu", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert set(summary) == {"all", "general", "landscape", "people"}
    assert summary["all"]["count"] == 24
    metrics = {"psnr", "ssim", "cf", "delta_cf", "auc", "hue", "out_of_gamut"}
    assert set(summary["all"]["gray"]) == metrics
    assert set(summary["all"]["model"]) == metrics | {"hue_sectors"}
    assert summary["all"]["gray"]["out_of_gamut"] == 0
    assert 0 < summary["all"]["model"]["out_of_gamut"] < 0.5  # boosted ×2: some leave the gamut
    assert summary["all"]["gray"]["cf"] < 0.05
    assert summary["all"]["model"]["cf"] > 5  # the model adds colour
    assert report["settings"]["boost"] == [2.0, 2.0]
    assert len(report["images"]) == 24
    command = report["settings"]["command"]
    assert command.startswith(f"trainer eval {ckpt} {PHOTOS} --split all --val-fraction ")
    assert "--long-side 128 --boost model --input-size 128" in command


def test_eval_summary_only_leaves_out_the_per_image_scores(tmp_path):
    out = tmp_path / "summary.json"
    args = ["eval", str(CHECKPOINTS / "seed-people.safetensors"), str(PHOTOS), "--split", "all",
            "-c", "people", "--long-side", "64", "--json", str(out), "--summary-only"]  # fmt: skip
    assert runner.invoke(trainer_app, args).exit_code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"settings", "summary"} and report["summary"]["all"]["count"] == 8
    assert report["settings"]["command"].endswith("--category people")


def test_eval_boost_none_and_bad_boost(tmp_path):
    ckpt = CHECKPOINTS / "seed-people.safetensors"
    args = ["eval", str(ckpt), str(PHOTOS), "--split", "all", "-c", "people", "--long-side", "96"]
    result = runner.invoke(trainer_app, [*args, "--boost", "none", "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["settings"]["boost"] == [1.0, 1.0] and report["summary"]["all"]["count"] == 8
    bad = runner.invoke(trainer_app, [*args, "--boost", "loud"])
    assert bad.exit_code == 2 and "--boost 'loud'" in bad.output


def test_eval_scores_read_whole_on_a_narrow_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    args = ["eval", str(CHECKPOINTS / "seed-people.safetensors"), str(PHOTOS), "--split", "all",
            "-c", "people", "--long-side", "64"]  # fmt: skip
    result = runner.invoke(trainer_app, args)
    assert result.exit_code == 0 and "…" not in result.output
    assert re.search(r"model: PSNR \d+\.\d\d dB, SSIM 0\.\d{4}, CF", result.output)


def test_eval_of_a_non_checkpoint_is_one_clear_line(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"nope")
    result = runner.invoke(trainer_app, ["eval", str(junk), str(PHOTOS)])
    assert result.exit_code == 2
    assert "not a readable safetensors checkpoint" in result.output
    assert "Traceback" not in result.output


def test_train_cli_rejects_bad_size(tmp_path):
    result = runner.invoke(trainer_app, ["train", str(PHOTOS), "-o", str(tmp_path), "--size", "66"])
    assert result.exit_code == 2 and "divisible by 4" in result.output


def test_engine_info_json():
    result = runner.invoke(engine_app, ["info", "--json"])
    assert result.exit_code == 0
    facts = json.loads(result.stdout)
    assert facts["engine"] and facts["onnxruntime_providers"]["CPUExecutionProvider"] == "works"
    assert set(facts["backends"]) == {"ort", "trt", "torch"}


def test_eval_of_an_onnx_model_matches_its_checkpoint(tmp_path):
    results = {}
    for name, path in (
        ("ckpt", CHECKPOINTS / "seed-landscape.safetensors"),
        ("onnx", Path(__file__).parents[1] / "engine" / "models" / "seed-landscape.onnx"),
    ):
        out = tmp_path / f"{name}.json"
        args = ["eval", str(path), str(PHOTOS), "--split", "all", "-c", "landscape"]
        result = runner.invoke(trainer_app, [*args, "--long-side", "96", "--json", str(out)])
        assert result.exit_code == 0, result.output
        results[name] = json.loads(out.read_text())["summary"]["all"]["model"]
    for metric in ("psnr", "auc"):
        assert results["onnx"][metric] == pytest.approx(results["ckpt"][metric], abs=0.02)


def test_names_and_messages_that_look_like_markup_are_printed_as_they_are(tmp_path):
    """Square brackets (an archive's "[draft] scan.jpg", an extra's name) are text, not styles."""
    folder = tmp_path / "[draft] box"
    folder.mkdir()
    (folder / "[bold]broken.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(engine_app, ["colorize", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"failed {folder / '[bold]broken.jpg'}: " in result.output
    result = runner.invoke(engine_app, ["colorize", str(folder), "--format", "[red]x"])
    assert result.exit_code == 2 and "--format '[red]x'" in result.output


def test_ray_without_the_extra_is_one_line_and_creates_nothing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    out = tmp_path / "out"
    result = runner.invoke(engine_app, ["colorize", "--ray", str(PHOTOS), "-o", str(out)])
    assert result.exit_code == 2
    assert "pip install 'colorization-engine[ray]'" in result.output
    assert not out.exists()


HELP_PAGES = """
import json, sys
from typer.testing import CliRunner
from engine.cli import app as engine_app
from tests.test_cli import commands_of
from trainer.cli import app as trainer_app
pages = {}
for prefix, app in (("engine", engine_app), ("trainer", trainer_app)):
    for name, command in commands_of(app).items():
        opts = [o for p in command.params for o in (*p.opts, *p.secondary_opts) if o[0] == "-"]
        text = CliRunner().invoke(app, [*name.split(), "--help"]).output
        pages[f"{prefix} {name}"] = {"opts": opts, "text": text}
json.dump(pages, sys.stdout)
"""


@pytest.mark.parametrize("columns", ["80", "130"])
def test_help_names_every_option_whole_at_any_width(columns):
    """80 columns: click's plain help (rich's panels cut "--no-matmul-pe…" there); 130: rich."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": columns}
    done = subprocess.run([sys.executable, "-c", HELP_PAGES], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    pages = json.loads(done.stdout)
    assert len(pages) > 10
    for name, page in pages.items():
        words = set(re.findall(r"--?[\w-]+", page["text"]))
        assert set(page["opts"]) <= words, (name, set(page["opts"]) - words)
        assert ("╭" in page["text"]) == (columns == "130"), name  # panels only where they fit
