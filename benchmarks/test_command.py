"""How long the README's test command takes on a fresh virtual environment, step by step.

``python -m benchmarks.test_command [--json benchmarks/results/test-command.json]``

Takes the README's own command (the ``python3 -m venv .venv && … && pytest`` line), runs it with
the virtual environment in a temporary folder instead of ``.venv``, and times each step: the
install, ``ruff check .`` and ``pytest``. Records the pytest summary line, the environment's size
on disk (what a first install downloads, roughly) and where pip took its wheels from, plus the
usual provenance. The install's time depends on the network; the tests' on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "test-command.json"


def readme_test_command(readme: Path = ROOT / "README.md") -> list[str]:
    """The README's test command, split into its ``&&`` steps."""
    for line in readme.read_text().splitlines():
        if line.startswith("python3 -m venv .venv") and "pytest" in line:
            return [step.strip() for step in line.split("&&")]
    raise SystemExit(f"{readme}: no 'python3 -m venv .venv … pytest' line")


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def pip_sources() -> str:
    """Where pip takes wheels from (its index and find-links settings), in one line."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    )
    kept = [ln for ln in done.stdout.splitlines() if "index-url" in ln or "find-links" in ln]
    return "; ".join(kept) or "PyPI (pip's default index)"


def run_steps(steps: list[str], venv: Path) -> dict:
    """Each step after the venv's creation and activation, timed, with the venv on PATH."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    seconds: dict[str, float] = {}
    tail = ""
    for step in steps:
        if step.startswith(("python3 -m venv", ". ", "source ")):
            continue
        started = time.perf_counter()
        done = subprocess.run(
            shlex.split(step), cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        seconds[step] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{step!r} failed ({done.returncode}):\n{done.stdout[-3000:]}")
        tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return {"seconds": seconds, "last_line": tail}


def summary_counts(line: str) -> dict[str, int]:
    """``241 passed, 3 skipped, 3 warnings in 230.66s`` → {'passed': 241, ...}."""
    return {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|failed|deselected)", line)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    steps = readme_test_command()
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        measured = run_steps(steps, venv)
        venv_mb = folder_mb(venv)
    seconds = measured["seconds"]
    install = next(s for s in seconds if s.startswith("pip install"))
    tests = next(s for s in seconds if s.startswith("pytest"))
    result = {
        **provenance(),
        "readme_command": " && ".join(steps),
        "steps_seconds": seconds,
        "install_seconds": seconds[install],
        "test_seconds": seconds[tests],
        "total_seconds": sum(seconds.values()),
        "pytest_summary": measured["last_line"],
        "pytest_counts": summary_counts(measured["last_line"]),
        "venv_mb": venv_mb,
        "pip_sources": pip_sources(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
