"""Regenerate the README's measured-performance section from ``benchmarks/results/``.

``python -m benchmarks.readme`` replaces the text between the ``benchmarks:start`` and
``benchmarks:end`` markers with the markdown of every harness report (``*.json`` with a
``results`` list) and the issue-3 comparison (``throughput.json``) found there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.report import markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results")
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def section(results: Path | None = None) -> str:
    results = results or RESULTS
    parts = []
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if "results" in data:
            cmd = data.get("command", "engine benchmark")
            parts.append(f"#### {path.stem}\n\n`{cmd}`\n\n{markdown(data)}")
    throughput = results / "throughput.json"
    if throughput.exists():
        t = json.loads(throughput.read_text())
        s = t["settings"]
        torch = t["torch_eager_fp32_images_per_s"]
        ratio = t["ort_over_torch"]
        parts.append(
            "#### ORT vs end to end vs PyTorch eager (`python -m benchmarks.throughput`)\n\n"
            f"{s['count']} gray {s['width']}×{s['height']} JPEGs, batch {s['batch']}, "
            f"same machine and process: ORT alone **{t['ort_compute_images_per_s']:.1f}** "
            f"images/s; `engine colorize` end to end **{t['e2e_images_per_s']:.1f}** "
            f"({t['e2e_over_compute']:.0%} of ORT alone); PyTorch eager FP32 "
            f"{torch.get('nchw', 0):.1f} (NCHW) / {torch.get('channels_last', 0):.1f} "
            f"(channels-last), so ORT is {ratio.get('nchw', 0):.1f}× / "
            f"{ratio.get('channels_last', 0):.1f}× faster.\n"
        )
    return "\n".join(parts)


def update(readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme}: no {START} … {END} markers")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{section()}\n{END}", text))


if __name__ == "__main__":
    update()
