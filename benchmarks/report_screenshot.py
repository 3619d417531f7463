"""Screenshots of ``engine report`` for the docs: ``python -m benchmarks.report_screenshot``.

Colorizes ``examples/`` into a temporary folder with the default model, writes the report, and
saves the grid (``docs/report.png``) and the compare view with its slider
(``docs/report-compare.png``) from headless Chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.browser import missing_browser, open_page
from engine.auto import create_colorizer
from engine.pipeline import RunOptions, run
from engine.report import build_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=ROOT / "examples")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    reason = missing_browser()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "colorized"
        colorizer = create_colorizer()
        run(colorizer, [args.input], RunOptions(out), facts=colorizer.describe())
        report = build_report(out)
        args.docs.mkdir(parents=True, exist_ok=True)
        with open_page(report.path, width=1280, height=820) as (page, problems):
            page.screenshot(path=str(args.docs / "report.png"))
            page.locator(".pair").nth(1).click()
            page.wait_for_function("document.getElementById('after').complete")
            page.locator("#slider").fill("55")
            page.screenshot(path=str(args.docs / "report-compare.png"))
        if problems:
            print(f"error: the page had problems: {problems}", file=sys.stderr)
            return 1
    print(f"wrote {args.docs / 'report.png'} and {args.docs / 'report-compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
