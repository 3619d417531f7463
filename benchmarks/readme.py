"""Every measured figure in README.md and MODELS.md, regenerated from its committed results file.

``python -m benchmarks.readme`` rewrites, in both documents:

* **blocks** between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``: ``benchmarks`` (every
  ``engine benchmark`` report in ``benchmarks/results/`` but the memory runs), ``memory`` (peak
  RSS per model and batch, ``memory-*.json``), ``reliability`` (``soak.json``,
  ``large-image-*.json``), ``comparison`` (``trainer/checkpoints/eval/comparison.json``),
  ``tries`` (the training tries, ``trainer/checkpoints/eval/tries.json``) and
  ``ray-plan`` (the scale-out plan of ``ray-scaling.json``);
* **inline figures** ``<!-- fig FILE PATH FORMAT -->text<!-- /fig -->``: the value at ``PATH`` in
  the JSON ``FILE`` (relative to the repository), formatted with Python's ``FORMAT`` spec. A path
  is dot-separated keys; ``key[a=1,b=x]`` picks the first item of a list whose fields match.

:func:`stale` lists what differs; a test keeps it empty, so a figure in the prose cannot drift
from the file it came from. Every results file names its command, model and machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from benchmarks.report import markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
DOCUMENTS = (ROOT / "README.md", ROOT / "MODELS.md")
COMPARISON = ROOT / "trainer" / "checkpoints" / "eval" / "comparison.json"
FIGURE = re.compile(r"<!-- fig (\S+) (\S+) (\S*) -->(.*?)<!-- /fig -->", re.S)


def _machine_line(data: dict) -> str:
    machine = data.get("machine", {})
    return f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"


def section(results: Path | None = None) -> str:
    """The ``benchmarks`` block: each harness report (not the memory runs) as a table."""
    results = results or RESULTS
    parts = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if "results" in data and not path.name.startswith("memory-"):
            parts.append(f"#### {path.stem}\n\n`{data.get('command', '?')}`\n\n{markdown(data)}")
    return "\n".join(parts)


def memory_table(results: Path | None = None) -> str:
    """The ``memory`` block: peak RSS of the whole ``engine colorize`` pipeline per model and
    batch, each row in a fresh process."""
    results = results or RESULTS
    rows, machine, command = [], "?", "?"
    for path in sorted(results.glob("memory-*.json")):
        data = json.loads(path.read_text())
        machine, command = _machine_line(data), data.get("command", "?")
        for r in data["results"]:
            rows.append(
                f"| `{data['model_name']}` | {r['batch']} | {r['peak_rss_mb']:,.0f} | "
                f"{r['images_per_s']:.1f} |"
            )
    if not rows:
        return ""
    head = (
        f"Peak RSS of `engine colorize` end to end (1024×768 JPEGs, each row a fresh process; "
        f"{machine}; e.g. `{command}`):\n\n"
        "| model | batch | peak RSS MB | images/s |\n|---|---:|---:|---:|"
    )
    return head + "\n" + "\n".join(rows)


def reliability_table(results: Path | None = None) -> str:
    """The ``reliability`` block: the soak and the largest-image runs."""
    results = results or RESULTS
    lines = ["| check | command | model | result |", "|---|---|---|---|"]
    soak = results / "soak.json"
    if soak.exists():
        s = json.loads(soak.read_text())
        rss = s["rss_mb"]
        warm = next(k for k in rss if k.startswith("after_"))
        lines.append(
            f"| soak: {s['files']:,} files (JPEG/PNG, 300×400 … 1600×1200), one run | "
            f"`{s['command']}` | `{s['model_name']}` | {s['seconds']:.1f} s, "
            f"{s['images_per_s']:.1f} img/s; RSS {rss[warm]:.0f} MB after "
            f"{warm.removeprefix('after_')} files, peak {rss['peak']:.0f} MB, {rss['end']:.0f} MB "
            f"at the end ({s['growth_after_warmup']:+.1%}; bound: +{s['max_growth']:.0%}) |"
        )
    for path in sorted(results.glob("large-image-*.json")):
        big = json.loads(path.read_text())
        lines.append(
            f"| one {big['width']}×{big['height']} gray JPEG ({big['megapixels']:.0f} MP) | "
            f"`{big['command']}` | `{big['model_name']}` | {big['seconds']:.1f} s, peak RSS "
            f"{big['peak_rss_mb']['large_image_run']:,} MB: {big['large_image_bytes_per_pixel']}"
            f" bytes per pixel above a small image's run (bound: {big['bound_bytes_per_pixel']}) |"
        )
    return "\n".join(lines)


def ray_plan_table(results: Path | None = None) -> str:
    """The ``ray-plan`` block: hours for a million images with N GPU workers, from
    ``ray-scaling.json``'s plan (CPU per image from the stages alone / with Ray's overhead)."""
    path = (results or RESULTS) / "ray-scaling.json"
    if not path.exists():
        return ""
    plan = json.loads(path.read_text())["plan"]
    lines = [
        "| GPU workers | GPU images/s | CPU images/s (stages / with Ray overhead) | bottleneck "
        "| hours for 10⁶ |",
        "|---:|---:|---:|---|---:|",
    ]
    names = {"cpu": "CPU", "gpu": "GPU", "storage": "storage"}
    for lean, heavy in zip(plan["stages"], plan["stages_plus_ray_overhead"], strict=True):
        bottleneck = [names[lean["bottleneck"]], names[heavy["bottleneck"]]]
        hours = [f"{lean['hours']:.2f}", f"{heavy['hours']:.2f}"]
        lines.append(
            f"| {lean['gpu_workers']} | {lean['gpu_images_per_s']:,.0f} | "
            f"{lean['cpu_images_per_s']:,.0f} / {heavy['cpu_images_per_s']:,.0f} | "
            f"{' / '.join(dict.fromkeys(bottleneck))} | {' / '.join(dict.fromkeys(hours))} |"
        )
    return "\n".join(lines)


def comparison_table() -> str:
    from trainer.compare import markdown_table

    return markdown_table(json.loads(COMPARISON.read_text()))


def tries_table() -> str:
    from trainer.tries import TRIES, markdown_table

    return markdown_table(json.loads(TRIES.read_text()))


def int8_operators_table(results: Path | None = None) -> str:
    """The ``int8-operators`` block: time per operator type of the FP32 and INT8 graphs."""
    from benchmarks.int8_operators import markdown

    folder = results or RESULTS
    data = json.loads((folder / "int8-operators-cpu-2core-amd-epyc.json").read_text())
    return f"{_machine_line(data)}\n\n{markdown(data)}"


BLOCKS: dict[str, Callable[[], str]] = {
    "benchmarks": section,
    "int8-operators": int8_operators_table,
    "memory": memory_table,
    "reliability": reliability_table,
    "comparison": comparison_table,
    "tries": tries_table,
    "ray-plan": ray_plan_table,
}


def _select(data, path: str):
    for part in re.findall(r"[^.\[]+(?:\[[^\]]*\])?", path):
        name, _, where = part.partition("[")
        if name:
            data = data[int(name)] if isinstance(data, list) else data[name]
        if where:
            wanted = dict(item.split("=", 1) for item in where.rstrip("]").split(","))
            data = next(
                item for item in data
                if all(str(item.get(k)) == v for k, v in wanted.items())
            )  # fmt: skip
    return data


def figure(file: str, path: str, spec: str) -> str:
    """The text of one inline figure."""
    value = _select(json.loads((ROOT / file).read_text()), path)
    return format(value, spec) if spec else str(value)


def regenerate(text: str, blocks: dict[str, Callable[[], str]] | None = None) -> str:
    """``text`` with every block it has and every inline figure made anew."""
    blocks = BLOCKS if blocks is None else blocks
    for name, make in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start in text:
            pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
            block = f"{start}\n{make()}\n{end}"
            text = pattern.sub(lambda _, block=block: block, text)

    def one(match: re.Match) -> str:
        file, path, spec, _ = match.groups()
        return f"<!-- fig {file} {path} {spec} -->{figure(file, path, spec)}<!-- /fig -->"

    return FIGURE.sub(one, text)


def stale(documents: tuple[Path, ...] = DOCUMENTS) -> list[str]:
    """What differs from its results file: ``document: block NAME`` or ``document: figure``."""
    found = []
    for document in documents:
        text = document.read_text()
        for name, make in BLOCKS.items():
            start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
            if start in text and text.split(start)[1].split(end)[0].strip() != make().strip():
                found.append(f"{document.name}: block {name}")
        for match in FIGURE.finditer(text):
            file, path, spec, shown = match.groups()
            if figure(file, path, spec) != shown:
                found.append(f"{document.name}: figure {file} {path} shows {shown!r}")
    return found


def update(documents: tuple[Path, ...] = DOCUMENTS) -> None:
    for document in documents:
        document.write_text(regenerate(document.read_text()))


if __name__ == "__main__":
    update()
