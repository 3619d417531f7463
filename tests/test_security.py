"""Security: no pickle, no shell, no escape from the output folder, hostile file names are just
names."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.io import ImageError, Job
from engine.outputs import output_path, write_atomic

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "trainer", "export", "calibration", "benchmarks")
FORBIDDEN = {
    r"\bpickle\b(?!\s+bytes)": "pickle",
    r"shell\s*=\s*True": "a shell",
    r"\bos\.(system|popen)\(": "a shell",
    r"torch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load without weights_only=True",
    r"\bnp\.load\([^)]*allow_pickle\s*=\s*True": "pickled numpy arrays",
    r"(?<![.\w])(eval|exec)\(": "eval/exec",
}


def _code_lines(path: Path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip().startswith(('"""', "'''")) or not code.strip():
            continue
        yield number, code


def test_the_source_never_unpickles_or_runs_a_shell():
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, code in _code_lines(path):
                for pattern, what in FORBIDDEN.items():
                    if re.search(pattern, code) and "Never pickle" not in code:
                        problems.append(f"{path.relative_to(ROOT)}:{number}: {what}")
    assert not problems, problems


def test_dot_dot_in_an_output_name_cannot_escape(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    job = Job(tmp_path / "x.png", Path("../../escaped.png"))
    target = output_path(job, out, None, set())
    with pytest.raises(ImageError, match="outside the output folder"):
        write_atomic(target, b"data", root=out)
    assert not (tmp_path / "escaped.png").exists()
    assert not (tmp_path.parent / "escaped.png").exists()


@pytest.mark.parametrize(
    "name",
    ["$(touch PWNED).png", "; touch PWNED;.png", "`touch PWNED`.png", "-rf --help.png",
     "a\nnewline.png", "quote's \"both\".png"],
)  # fmt: skip
def test_hostile_file_names_are_only_names(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(cv2.imencode(".png", np.full((12, 16), 90, np.uint8))[1])
    result = runner.invoke(app, ["colorize", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / name).is_file()
    assert not list(tmp_path.rglob("PWNED"))


def test_an_output_folder_that_does_not_exist_yet_is_made_with_its_sub_folders(tmp_path):
    out = tmp_path / "not-yet" / "out"
    target = out / "a" / "b" / "x.png"
    write_atomic(target, b"data", root=out)
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-yet"]
