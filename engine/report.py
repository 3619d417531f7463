"""``engine report``: one HTML page that shows a run's before/after pairs, per-file status and
timing, and the run's summary — self-contained (styles, script and thumbnails inline, no network)
and made from the run logs, so it works after a run and during one.

Clicking a pair opens a full-size comparison with a slider. The full-size images are the input
and output files themselves, linked by relative paths (nothing is copied), except formats that
browsers do not show (TIFF, JPEG 2000, PNM, TGA, PCX, SGI, PSD): those get a full-size JPEG
preview in ``colorize-report-files/`` beside the page. With ``embed`` they are all inside the
page.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from string import Template
from urllib.parse import quote

import cv2
import numpy as np

from engine.color import convert_depth
from engine.io import REPORT_ASSETS, ImageError, read_image
from engine.outputs import LOG_PREFIX, summary_path, write_atomic

REPORT_NAME = "colorize-report.html"
TEMPLATE = Template((Path(__file__).parent / "report_template.html").read_text(encoding="utf-8"))
"""The page: its styles and script, with ``$name`` slots for the content."""
MAX_FILE_ROWS = 5000
"""Rows of the file table (every failed file is listed, however many)."""
BROWSER_FORMATS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif"})
"""Formats every current browser shows, so the files themselves are linked."""


@dataclass
class RunInfo:
    """One run, from its log and (once it ended) its summary file."""

    log: Path
    records: int = 0
    summary: dict | None = None
    """The summary file's content; None while the run is going on (or after it was killed)."""

    @property
    def state(self) -> str:
        if self.summary is None:
            return "running or killed"
        return f"stopped: {self.summary['stopped']}" if self.summary.get("stopped") else "ended"


@dataclass
class Entry:
    """One input: its latest meaningful record (a done record outlives later "output exists")."""

    source: str
    output: str | None
    status: str
    reason: str | None
    seconds: float
    model: str | None
    page: int | None
    stages: dict[str, float] | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        return self.source, self.page


@dataclass
class Report:
    """What the page shows, and where it was written."""

    path: Path
    runs: list[RunInfo]
    entries: list[Entry]
    pairs: int
    """Before/after pairs shown (files whose output exists, up to the limit)."""
    counts: dict[str, int] = field(default_factory=dict)


def read_runs(output_dir: Path) -> tuple[list[RunInfo], list[Entry]]:
    """Every run log in ``output_dir`` (oldest first) and one entry per input."""
    runs: list[RunInfo] = []
    latest: dict[tuple[str, int | None], Entry] = {}
    for log in sorted(output_dir.glob(f"{LOG_PREFIX}*.jsonl")):
        run = RunInfo(log)
        summary = summary_path(log)
        if summary.is_file():
            try:
                run.summary = json.loads(summary.read_text())
            except (OSError, json.JSONDecodeError):
                run.summary = None
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                entry = Entry(
                    record["source"], record.get("output"), record["status"],
                    record.get("reason"), float(record.get("seconds") or 0.0),
                    record.get("model"), record.get("page"), record.get("stages"),
                )  # fmt: skip
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a killed run
            if entry.status not in ("done", "skipped", "failed"):
                continue  # files of the input folders that are not images ("ignored")
            run.records += 1
            previous = latest.get(entry.key)
            if previous is None or previous.status != "done" or entry.status == "done":
                latest[entry.key] = entry
        runs.append(run)
    return runs, list(latest.values())


def build_report(
    output_dir: Path,
    path: Path | None = None,
    thumb_px: int = 240,
    max_pairs: int = 1000,
    embed: bool = False,
) -> Report:
    """Write the report page for ``output_dir`` (default: ``colorize-report.html`` inside it);
    ``embed`` puts the full-size images inside the page too (:class:`FullSizeLinks`)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir}: no such folder")
    runs, entries = read_runs(output_dir)
    if not runs:
        raise FileNotFoundError(f"{output_dir}: no run logs ({LOG_PREFIX}*.jsonl) in this folder")
    path = Path(path or output_dir / REPORT_NAME)
    links = FullSizeLinks(path.parent, path.parent / REPORT_ASSETS, embed)
    entries.sort(key=lambda e: (e.status != "failed", e.source, e.page or 0))
    cards, shown = [], 0
    for entry in entries:
        # Done, or skipped because an earlier (perhaps interrupted) run wrote the output.
        if entry.status == "failed" or not entry.output or not Path(entry.output).is_file():
            continue
        if shown >= max_pairs:
            break
        card = _card(entry, shown, links, thumb_px)
        if card:
            cards.append(card)
            shown += 1
    counts = {s: sum(e.status == s for e in entries) for s in ("done", "skipped", "failed")}
    page = _page(output_dir, runs, entries, cards, counts, max_pairs)
    write_atomic(path, page.encode(), replace=True)
    return Report(path, runs, entries, shown, counts)


# ------------------------------------------------------------------------------ images


def _thumbnail(pixels: np.ndarray, px: int) -> str:
    """A JPEG data URI of ``pixels`` with its long side ``px``."""
    h, w = pixels.shape[:2]
    scale = min(1.0, px / max(h, w))
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    ok, data = cv2.imencode(".jpg", convert_depth(small, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        raise ImageError("cannot encode a thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode()


@dataclass
class FullSizeLinks:
    """How the compare view reaches the full-size images: relative links to the files (or to
    JPEG previews of formats browsers do not show), or, with ``embed``, the images inside the
    page (one file that can be sent on; large)."""

    page_dir: Path
    assets: Path
    embed: bool = False

    def url(self, file: Path, pixels: np.ndarray, name: str, page: int | None) -> str:
        suffix = file.suffix.lower()
        shown_as_is = suffix in BROWSER_FORMATS and page is None
        if self.embed:
            if shown_as_is:
                mime = mimetypes.types_map.get(suffix, "image/jpeg")
                return f"data:{mime};base64," + base64.b64encode(file.read_bytes()).decode()
            return "data:image/jpeg;base64," + base64.b64encode(_preview(pixels)).decode()
        if shown_as_is:
            target = file
        else:
            target = self.assets / f"{name}.jpg"
            write_atomic(target, _preview(pixels), replace=True)
        relative = os.path.relpath(target.resolve(), self.page_dir.resolve())
        return quote(relative.replace(os.sep, "/"))


def _preview(pixels: np.ndarray) -> bytes:
    """A full-size JPEG of ``pixels`` for formats browsers do not show."""
    return cv2.imencode(".jpg", convert_depth(pixels, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])[
        1
    ].tobytes()


def _timing(entry: Entry) -> str:
    return f"{entry.seconds:.2f} s" if entry.status == "done" else "written by an earlier run"


def _card(entry: Entry, index: int, links: FullSizeLinks, px: int) -> str | None:
    """The grid card of one done file (None when its input is gone or cannot be read)."""
    try:
        page = None if entry.page is None else entry.page - 1
        before = read_image(Path(entry.source), page=page).pixels
        after = read_image(Path(entry.output)).pixels
    except (ImageError, OSError):
        return None
    name = f"{index:06d}"
    before_url = links.url(Path(entry.source), before, f"{name}-before", page)
    after_url = links.url(Path(entry.output), after, f"{name}-after", None)
    h, w = after.shape[:2]
    title = Path(entry.source).name + ("" if entry.page is None else f" (page {entry.page})")
    e = html.escape
    return (
        f'<figure class="pair" tabindex="0" data-before="{e(before_url)}" '
        f'data-after="{e(after_url)}" data-title="{e(title)}" data-size="{w}×{h}">'
        f'<div class="thumbs"><img alt="before: {e(title)}" src="{_thumbnail(before, px)}">'
        f'<img alt="after: {e(title)}" src="{_thumbnail(after, px)}"></div>'
        f'<figcaption><span class="name" title="{e(entry.source)}">{e(title)}</span>'
        f"<span>{w}×{h} · {_timing(entry)} · {e(entry.model or '')}</span></figcaption>"
        "</figure>"
    )


# ------------------------------------------------------------------------------ the page


def _summary_rows(
    runs: list[RunInfo], counts: dict[str, int], entries: list[Entry]
) -> list[tuple[str, str]]:
    """The summary, built from the files' own records (model, stages), and the runs' times."""
    ended = [r.summary for r in runs if r.summary]
    rows = [
        ("inputs", f"{sum(counts.values()):,}"),
        ("done / skipped / failed",
         f"{counts['done']:,} / {counts['skipped']:,} / {counts['failed']:,}"),
        ("runs", f"{len(runs)} ({sum(r.summary is None for r in runs)} running or killed)"),
    ]  # fmt: skip
    done = [x for x in entries if x.status == "done"]
    models = Counter(x.model or "?" for x in done)
    if models:
        rows.append(("model", ", ".join(f"{m} ({n:,})" for m, n in models.most_common())))
    stages: Counter[str] = Counter()
    for entry in done:
        stages.update(entry.stages or {})
    total = sum(stages.values())
    if total:
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in stages.items())
        rows.append(("stage shares (files done)", shares))
        rows.append(("seconds per file done (median)", f"{median(x.seconds for x in done):.2f}"))
    if ended:
        last = ended[-1]
        seconds = sum(s.get("seconds", 0.0) for s in ended)
        made = sum(s.get("done", 0) for s in ended)
        where = last.get("backend", "?") + (" on Ray" if last.get("ray") else "")
        rows += [
            ("backend (last run)", where),
            ("time (ended runs)", f"{seconds:.1f} s, {made / max(seconds, 1e-9):.2f} images/s"),
            ("megapixels done", f"{sum(s.get('megapixels', 0.0) for s in ended):.1f}"),
        ]  # fmt: skip
        ignored = last.get("ignored") or {}
        if ignored:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(ignored.items(), key=lambda i: -i[1]))
            rows.append(("ignored (not images, last run)", f"{sum(ignored.values())} ({kinds})"))
    return rows


def _page(output_dir, runs, entries, cards, counts, max_pairs) -> str:
    e = html.escape
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>"
                   for k, v in _summary_rows(runs, counts, entries))  # fmt: skip
    run_rows = "".join(
        f"<tr><td>{e(r.log.name)}</td><td>{e(r.state)}</td><td>{r.records}</td>"
        f"<td>{e(str((r.summary or {}).get('started_at', '')))}</td>"
        f"<td>{(r.summary or {}).get('seconds', 0):.1f}</td></tr>"
        for r in runs
    )
    listed = entries[: max(MAX_FILE_ROWS, counts["failed"])]  # failed files come first
    file_rows = "".join(
        f'<tr class="{e(x.status)}"><td title="{e(x.source)}">{e(Path(x.source).name)}'
        f"{'' if x.page is None else f' (page {x.page})'}</td><td>{e(x.status)}</td>"
        f"<td>{x.seconds:.2f}</td><td>{e(x.model or '')}</td><td>{e(x.reason or '')}</td></tr>"
        for x in listed
    )
    more = ""
    if counts["done"] > len(cards):
        more = f"<p class=note>Showing {len(cards):,} of {counts['done']:,} pairs.</p>"
    if len(entries) > len(listed):
        file_rows += (
            f"<tr><td colspan=5>… {len(entries) - len(listed):,} more in the logs</td></tr>"
        )
    return TEMPLATE.substitute(
        title=e(f"Colorization report — {output_dir}"), generated=e(generated),
        summary=rows, runs=run_rows, files=file_rows, cards="".join(cards), more=more,
        pairs=len(cards), stamp=int(time.time()),
    )  # fmt: skip
