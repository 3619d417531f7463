"""Open a report page in headless Chromium (Debian's ``chromium``, driven by Playwright).

Used by the report's browser test and by ``python -m benchmarks.report_screenshot``. Playwright's
own browser download is never used: the system Chromium is launched by path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
"""Headless as root on a machine with no network: no sandbox, no background connections."""


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser() -> str | None:
    """Why a page cannot be rendered here (None: it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "needs Debian's chromium (apt-get install -y chromium)"
    return None


@dataclass
class PageProblems:
    """What went wrong while a page was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    """Requests that left the machine's files (a self-contained page makes none)."""

    def __bool__(self) -> bool:
        return bool(
            self.console_errors or self.page_errors or self.failed_requests
            or self.external_requests
        )  # fmt: skip


@contextmanager
def open_page(path: Path, width: int = 1280, height: int = 900) -> Iterator[tuple]:
    """Yield ``(page, problems)`` for the HTML file ``path``; the browser closes afterwards."""
    from playwright.sync_api import sync_playwright

    problems = PageProblems()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on(
                "console",
                lambda m: problems.console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.page_errors.append(str(e)))
            page.on("requestfailed", lambda r: problems.failed_requests.append(r.url))
            page.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith(("file:", "data:"))
                    else problems.external_requests.append(r.url)
                ),
            )
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page, problems
        finally:
            browser.close()
