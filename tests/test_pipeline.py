"""engine colorize: the pipeline, file handling and the Colorizer API (ONNX Runtime, CPU)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from engine import Colorizer, color
from engine.cli import app
from engine.pipeline import RunOptions, run
from tests.conftest import photo_paths

runner = CliRunner()


def _gray(i: int) -> np.ndarray:
    return cv2.imread(str(photo_paths()[i]), cv2.IMREAD_GRAYSCALE)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Gray 8-bit JPEGs in nested folders, a 16-bit gray PNG, an RGBA PNG and a colour JPEG."""
    root = tmp_path / "scans"
    (root / "box1" / "folder a").mkdir(parents=True)
    (root / "box2").mkdir()
    cv2.imwrite(str(root / "box1" / "one.jpg"), _gray(0))
    cv2.imwrite(str(root / "box1" / "folder a" / "two.jpg"), _gray(1))
    cv2.imwrite(str(root / "box2" / "deep16.png"), _gray(2).astype(np.uint16) * 257 + 3)
    bgra = cv2.cvtColor(cv2.imread(str(photo_paths()[3])), cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = np.linspace(0, 255, bgra.shape[1], dtype=np.uint8)[None, :]
    cv2.imwrite(str(root / "box2" / "alpha.png"), bgra)
    cv2.imwrite(str(root / "colour.jpg"), cv2.imread(str(photo_paths()[4])))
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_outputs_mirror_the_tree_with_same_size_format_and_depth(colorizer, archive, tmp_path):
    out = tmp_path / "out"
    summary = run(colorizer, [archive], RunOptions(out))
    assert (summary.done, summary.failed, summary.skipped) == (5, 0, 0)
    for source in [p for p in archive.rglob("*") if p.is_file()]:
        target = out / source.relative_to(archive)
        assert target.is_file(), target
        original = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
        result = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
        assert result.shape[:2] == original.shape[:2]
        assert result.dtype == original.dtype
    alpha_in = cv2.imread(str(archive / "box2" / "alpha.png"), cv2.IMREAD_UNCHANGED)[:, :, 3]
    alpha_out = cv2.imread(str(out / "box2" / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert alpha_out.shape[2] == 4 and np.array_equal(alpha_out[:, :, 3], alpha_in)
    assert cv2.imread(str(out / "box1" / "one.jpg"), cv2.IMREAD_UNCHANGED).ndim == 3  # colour
    log = Path(summary.log_path)
    assert log.parent == out and len(log.read_text().splitlines()) == 5


def test_output_luminance_equals_the_input(colorizer, archive, tmp_path):
    out = tmp_path / "out"
    run(colorizer, [archive], RunOptions(out, fmt="png"))
    for name in ("box1/one", "box1/folder a/two"):
        source = cv2.imread(str(archive / f"{name}.jpg"), cv2.IMREAD_UNCHANGED)
        result = cv2.imread(str(out / f"{name}.png"))
        delta_levels = np.abs(color.luminance(result) - color.luminance(source)) * 255 / 100
        assert delta_levels.mean() <= 0.5 and np.percentile(delta_levels, 99) <= 1.0
    deep_in = cv2.imread(str(archive / "box2" / "deep16.png"), cv2.IMREAD_UNCHANGED)
    deep_out = cv2.imread(str(out / "box2" / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert deep_out.dtype == np.uint16
    delta = np.abs(color.luminance(deep_out) - color.luminance(deep_in)) * 65535 / 100
    assert delta.mean() <= 0.5 * 257  # within half an 8-bit level, at 16-bit precision


def test_rerun_skips_everything_and_overwrite_redoes(colorizer, archive, tmp_path):
    out = tmp_path / "out"
    run(colorizer, [archive], RunOptions(out))
    again = run(colorizer, [archive], RunOptions(out))
    assert (again.done, again.skipped, again.failed) == (0, 5, 0)
    redo = run(colorizer, [archive], RunOptions(out, overwrite=True))
    assert redo.done == 5


def test_bad_files_are_reported_and_the_run_goes_on(archive, tmp_path):
    (archive / "box1" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (archive / "box2" / "notes.png").write_text("this is not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["colorize", str(archive), "-o", str(out), "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["done"], summary["failed"]) == (5, 2)
    records = [json.loads(line) for line in Path(summary["log_path"]).read_text().splitlines()]
    failed = {Path(r["source"]).name: r["reason"] for r in records if r["status"] == "failed"}
    assert set(failed) == {"corrupt.jpg", "notes.png"}
    assert "truncated JPEG" in failed["corrupt.jpg"]
    assert "not a decodable image" in failed["notes.png"]
    assert "corrupt.jpg" in result.output and "Traceback" not in result.output
    assert not list(out.rglob(".colorize-tmp-*"))


def test_output_into_the_input_folder_never_touches_inputs(colorizer, archive):
    before = _snapshot(archive)
    summary = run(colorizer, [archive], RunOptions(archive))
    assert summary.done == 5
    after = _snapshot(archive)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs byte-for-byte
    added = sorted(set(after) - set(before))
    assert "box1/one_colorized.jpg" in added and len([a for a in added if "_colorized" in a]) == 5
    rerun = run(colorizer, [archive], RunOptions(archive))  # outputs are not taken as inputs
    assert (rerun.done, rerun.skipped, rerun.failed) == (0, 5, 0)
    assert {k: v for k, v in _snapshot(archive).items() if k in before} == before


def test_globs_single_files_and_format_choice(colorizer, archive, tmp_path):
    out = tmp_path / "out"
    pattern = str(archive / "box1" / "**" / "*.jpg")
    summary = run(colorizer, [pattern, archive / "colour.jpg"], RunOptions(out, fmt="png"))
    assert summary.done == 3
    assert (out / "one.png").is_file() and (out / "folder a" / "two.png").is_file()
    assert (out / "colour.png").is_file()


def test_two_inputs_with_one_output_name(colorizer, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "same.jpg"), _gray(5))
    cv2.imwrite(str(src / "same.png"), _gray(6))
    summary = run(colorizer, [src], RunOptions(tmp_path / "out", fmt="tif"))
    assert (summary.done, summary.failed) == (1, 1)
    assert "also the output of" in summary.failures[0].reason
    assert summary.failures[0].reason.endswith(
        "rename one or leave out --format (each then keeps its own format)"
    )
    Image.fromarray(_gray(7)).save(src / "same.gif")  # its output is a PNG (GIF: 256 colours)
    summary = run(colorizer, [src], RunOptions(tmp_path / "out2"))
    (failure,) = summary.failures  # same.gif (sorted first) has same.png's output name
    assert failure.source.endswith("same.png") and failure.reason.endswith("same.gif; rename one")


def test_missing_input_and_empty_folder_are_usage_errors(tmp_path):
    result = runner.invoke(app, ["colorize", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["colorize", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no images found" in result.output


def test_colorizer_api_on_arrays(colorizer):
    gray = _gray(7)
    out = colorizer.colorize(gray)
    assert out.shape == (*gray.shape, 3) and out.dtype == np.uint8
    deep = colorizer.colorize(gray.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16
    batch = colorizer.colorize_batch([gray, _gray(8)])
    assert len(batch) == 2 and np.array_equal(batch[0], out)


def test_size_and_boost_options(tmp_path):
    plain = Colorizer(size=128, boost=(1.0, 1.0))
    assert plain.size == 128 and plain.boost == (1.0, 1.0)
    strong = Colorizer(size=128, boost=(3.0, 3.0))
    gray = _gray(9)
    chroma_plain = color.chroma(color.bgr_to_lab(plain.colorize(gray))).mean()
    chroma_strong = color.chroma(color.bgr_to_lab(strong.colorize(gray))).mean()
    assert chroma_strong > 1.5 * chroma_plain
    with pytest.raises(ValueError, match="divisible by 4"):
        Colorizer(size=130)


def test_int8_variant_colorizes_with_the_same_luminance(archive, tmp_path):
    int8 = Colorizer(precision="int8")
    summary = run(int8, [archive / "box1"], RunOptions(tmp_path / "out", fmt="png"))
    assert summary.done == 2
    source = cv2.imread(str(archive / "box1" / "one.jpg"), cv2.IMREAD_UNCHANGED)
    result = cv2.imread(str(tmp_path / "out" / "one.png"))
    assert (np.abs(color.luminance(result) - color.luminance(source)) * 2.55).mean() <= 0.5


def test_trt_backend_without_a_gpu_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["colorize", str(tmp_path), "-o", str(tmp_path / "o"), "-b", "trt"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "backend 'trt' cannot run here" in lines[0]
