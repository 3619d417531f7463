"""The repository's shape: what the engine may import, no import cycles, a tree that travels."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "trainer", "export", "calibration", "benchmarks")
UPWARD = ("export", "calibration", "benchmarks", "trainer")
TREE_LIMIT = 50 * 2**20
"""The tracked tree must stay well under what the GPU machine's tool carries (64 MiB a call)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count)."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else ""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _files() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if ".venv" not in p.parts
    }


def test_the_engine_library_imports_no_package_above_it():
    offenders = []
    for name, path in _files().items():
        if not name.startswith("engine") or name.startswith("engine.cli"):
            continue
        allowed = {"trainer"} if name == "engine.backends.torch" else set()
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in UPWARD and top not in allowed:
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_there_is_no_import_cycle_between_files():
    files = _files()
    graph = {
        name: {m for m in _imports(path) if m in files and m != name}
        for name, path in files.items()
    }
    # a package's __init__ importing its own submodules is how a package is built, not a cycle
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (name and t.startswith(name + "."))}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" → ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_tracked_tree_stays_under_its_limit():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked tree cannot be listed")
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    size = sum(f.stat().st_size for f in files if f.is_file())
    assert size < TREE_LIMIT, f"tracked tree is {size / 2**20:.1f} MiB (limit 50 MiB)"
