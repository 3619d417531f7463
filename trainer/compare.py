"""The evaluation that decides the default model: every candidate on the **cross-source split**
(whole sources no model trains on, :data:`trainer.data.CROSS_SOURCES`) beside the in-source
validation split, per category and per source, with the same settings; then markdown tables and
contact sheets.

    python -m trainer.compare DATA [DATA…] [--candidate LABEL=MODEL.onnx …]

Candidates: the gray baseline; the paper's ``seed`` MSE recipe (no boost: its ×2 boost scored
below gray before); ``vivid-general``; ``effunet-general``; any ``--candidate``. Each
candidate's report is kept in ``--cache`` by model sha256, so adding a candidate does not score
the others again. The contact sheet shows gray / each ``--sheet`` model / truth for 16
cross-source photos; the failure sheet the cross-source photos where the last candidate loses
most PSNR against gray.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.colorizer import Colorizer
from engine.model_io import colorize_output
from engine.models import MODELS_DIR
from trainer.data import CROSS_SOURCES, scan_folders, select, spread
from trainer.evaluate import EvalReport, evaluate, load_eval_image, load_for_eval
from trainer.metrics import HUE_SECTORS

ROOT = Path(__file__).resolve().parents[1]
NO_BOOST = (1.0, 1.0)
SPLITS = ("cross", "val")
SPLIT_TITLES = {"cross": "cross-source", "val": "in-source validation"}
GROUPS = ("all", "general", "landscape", "people")


@dataclass(frozen=True)
class Candidate:
    label: str
    model: str
    """An .onnx path, or ``auto``."""
    boost: tuple[float, float] | None
    """None: the model's own boost."""


def _sha256(path: str) -> str:
    if not Path(path).is_file():
        return path
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _run(candidate: Candidate, photos, long_side: int) -> EvalReport:
    loaded = load_for_eval(Path(candidate.model))
    return evaluate(
        loaded["predict"], photos, loaded["norm"], candidate.boost or loaded["boost"],
        input_size=loaded["input_size"], long_side=long_side,
        router=loaded.get("router"), predictors=loaded.get("predictors"),
    )  # fmt: skip


def _report(
    candidate: Candidate, sha256: str, split: str, photos, long_side: int, cache: Path | None
) -> tuple[dict, list[dict]]:
    """(summary, per-image rows) of one candidate (its model file's ``sha256``) on one split,
    from ``cache`` where the same model file, boost, photos and long side were scored before."""
    key = json.dumps([sha256, candidate.boost, split, long_side,
                      [f"{p.category}/{p.key}" for p in photos]])  # fmt: skip
    file = None
    if cache is not None:
        file = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"
        if file.is_file():
            stored = json.loads(file.read_text())
            return stored["summary"], stored["images"]
    report = _run(candidate, photos, long_side)
    summary = report.summary(by_source=True)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps({"label": candidate.label, **report.to_json(by_source=True)}))
    return summary, report.rows


def compare(
    data: Path | list[Path],
    candidates: list[Candidate],
    long_side: int = 512,
    val_fraction: float = 0.15,
    splits: tuple[str, ...] = SPLITS,
    cache: Path | None = None,
    limit: int | None = None,
) -> dict:
    """Per split: the photos' count and each candidate's summary (plus gray); ``rows``: the
    per-image rows per split and candidate, for the pictures. With ``limit``, each split is
    scored on that many of its photos, evenly spread over its (sorted) list so every source and
    category keeps its share."""
    scanned = scan_folders(data)
    photos_of = {}
    for split in splits:
        photos = select(scanned, split, val_fraction)
        photos_of[split] = spread(photos, limit) if limit else photos
    sha256 = {c.label: _sha256(c.model) for c in candidates}
    results: dict = {
        "settings": {"long_side": long_side, "val_fraction": val_fraction, "limit": limit,
                     "cross_sources": sorted(CROSS_SOURCES), "never_trained_on": True,
                     "candidates": {c.label: {"model": Path(c.model).name, "boost": c.boost,
                                              "sha256": sha256[c.label]} for c in candidates}},
        "splits": {}, "rows": {},
    }  # fmt: skip
    for split, photos in photos_of.items():
        entry = results["splits"][split] = {"photos": len(photos), "candidates": {}}
        results["rows"][split] = {}
        for candidate in candidates:
            summary, rows = _report(
                candidate, sha256[candidate.label], split, photos, long_side, cache
            )
            if "gray" not in entry["candidates"]:
                entry["candidates"]["gray"] = {
                    group: {"count": g["count"], **g["gray"], "truth_cf": g["truth"]["cf"]}
                    for group, g in summary.items()
                }
            entry["candidates"][candidate.label] = {
                group: {"count": g["count"], **g["model"]} for group, g in summary.items()
            }
            results["rows"][split][candidate.label] = rows
            print(f"{split} {candidate.label}: {json.dumps(summary['all']['model'])}")
    return results


def _f(value: float, spec: str) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def _metrics_table(split: dict) -> list[str]:
    lines = ["| candidate | group | n | PSNR dB | SSIM | CF | ΔCF | AuC | hue | out of gamut |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, groups in split["candidates"].items():
        for group in GROUPS:
            if group not in groups:
                continue
            m = groups[group]
            lines.append(
                f"| {label} | {group} | {m['count']} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
                f"{m['cf']:.1f} | {m['delta_cf']:.1f} | {m['auc']:.4f} | {m['hue']:.3f} | "
                f"{100 * m['out_of_gamut']:.2f} % |"
            )
    return lines


def _sector_table(results: dict) -> list[str]:
    names = list(HUE_SECTORS)
    lines = [f"| candidate | split | {' | '.join(names)} |",
             "|---|---|" + "---:|" * len(names)]  # fmt: skip
    for split_name, split in results["splits"].items():
        for label, groups in split["candidates"].items():
            sectors = groups["all"].get("hue_sectors")
            if sectors is None:  # gray: no colour, no hue
                continue
            cells = " | ".join(_f(sectors[n], ".3f") for n in names)
            lines.append(f"| {label} | {SPLIT_TITLES[split_name]} | {cells} |")
    return lines


def _source_table(split: dict) -> list[str]:
    sources = sorted(g for g in split["candidates"]["gray"] if g.startswith("source:"))
    gray = split["candidates"]["gray"]
    heads = " | ".join(f"{s[7:]} ({gray[s]['count']})" for s in sources)
    lines = [f"| candidate | {heads} |", "|---|" + "---:|" * len(sources)]
    for label, groups in split["candidates"].items():
        cells = " | ".join(
            f"{groups[s]['psnr']:.2f} dB, hue {groups[s]['hue']:.3f}" for s in sources
        )
        lines.append(f"| {label} | {cells} |")
    return lines


def markdown_table(results: dict) -> str:
    """The tables of :func:`compare`'s results: per split candidate × group (cross-source
    first), hue accuracy per hue sector of the truth, and the cross-source split per source."""
    out: list[str] = []
    for split_name, split in results["splits"].items():
        out += [f"**{SPLIT_TITLES[split_name]}** ({split['photos']} photos)", ""]
        out += [*_metrics_table(split), ""]
    out += ["**Hue accuracy by hue sector of the truth** (all photos of the split)", ""]
    out += _sector_table(results)
    if "cross" in results["splits"]:
        out += ["", "**Cross-source split per source** (PSNR and hue accuracy)", ""]
        out += _source_table(results["splits"]["cross"])
    return "\n".join(out)


def insert_table(document: Path, table: str) -> None:
    """Replace the text between ``<!-- comparison:start -->`` and ``<!-- comparison:end -->``."""
    text = document.read_text()
    start, end = "<!-- comparison:start -->", "<!-- comparison:end -->"
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    document.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")


def _thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * height / h), height), interpolation=cv2.INTER_AREA)


def _locate(data: Path | list[Path], file: str) -> Path:
    """``category/key`` in the first data folder that has it."""
    roots = [data] if isinstance(data, str | Path) else data
    return next(
        (Path(r) / file for r in roots if (Path(r) / file).is_file()), Path(roots[0]) / file
    )


def contact_sheet(
    data: Path | list[Path], files: list[str],
    columns: list[tuple[str, Colorizer | None, tuple | None]],
    out: Path, height: int = 150, long_side: int = 512,
) -> Path:  # fmt: skip
    """A grid: one row per photo, one column per (label, colorizer or None = truth/gray); JPEG
    (quality 90) for a ``.jpg`` path, else PNG."""
    rows = []
    for file in files:
        truth = load_eval_image(_locate(data, file), long_side)
        gray = cv2.cvtColor(cv2.cvtColor(truth, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        cells = []
        for label, colorizer, boost in columns:
            if label == "truth":
                image = truth
            elif colorizer is None:
                image = gray
            else:
                pixels, x = colorizer.preprocess(gray)
                ab = colorizer.infer(x[None])[0]
                norm = colorizer.config.normalization
                image = colorize_output(pixels, ab, norm, boost or colorizer.boost, np.uint8)
            cells.append(_thumbnail(image, height))
        rows.append(cells)
    widths = [max(row[i].shape[1] for row in rows) for i in range(len(columns))]
    pad, title = 4, 22
    sheet = np.full(
        (title + len(rows) * (height + pad), sum(widths) + pad * len(widths), 3), 255, np.uint8
    )
    x = 0
    for i, (label, _, _) in enumerate(columns):
        cv2.putText(sheet, label, (x + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        for r, row in enumerate(rows):
            cell = row[i]
            y = title + r * (height + pad)
            sheet[y : y + height, x : x + cell.shape[1]] = cell
        x += widths[i] + pad
    out.parent.mkdir(parents=True, exist_ok=True)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90] if out.suffix.lower() in (".jpg", ".jpeg") else []
    cv2.imwrite(str(out), sheet, quality or [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def default_candidates() -> list[Candidate]:
    """The shipped models every comparison includes."""
    return [
        Candidate("seed-general", str(MODELS_DIR / "seed-general.onnx"), NO_BOOST),
        Candidate("vivid-general", str(MODELS_DIR / "vivid-general.onnx"), NO_BOOST),
        Candidate("effunet-general", str(MODELS_DIR / "effunet-general.onnx"), NO_BOOST),
    ]


def _labelled(text: str) -> tuple[str, str]:
    label, _, model = text.partition("=")
    if not model:
        raise argparse.ArgumentTypeError(f"{text!r}: use LABEL=MODEL.onnx")
    return label, model


def _pictures(data, rows: dict, sheet: list[Candidate], out: Path) -> None:
    """The contact sheet (16 cross-source photos) and the failure sheet of the last candidate,
    from the cross-source split's per-image ``rows`` per candidate."""
    last = sheet[-1].label
    columns = [("gray", None, None)]
    columns += [(c.label, Colorizer(c.model), c.boost) for c in sheet]
    columns += [("truth", None, None)]
    files = [r["file"] for r in rows[last]]
    chosen = files[:: max(1, len(files) // 16)][:16]
    contact_sheet(data, chosen, columns, out / "contact-sheet.jpg")
    loss = {r["file"]: r["model"]["psnr"] - r["gray"]["psnr"] for r in rows[last]}
    worst = sorted(loss, key=loss.get)[:8]
    contact_sheet(data, worst, columns, out / "failures.jpg")
    print(f"worst for {last} (PSNR vs gray):", {f: round(loss[f], 2) for f in worst})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument(
        "--candidate", type=_labelled, action="append", default=[],
        help="LABEL=MODEL.onnx, scored after the shipped models (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--sheet", action="append", default=[],
        help="a candidate's label for the contact sheets' columns (repeatable; default: "
        "effunet-general and the last candidate)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=ROOT / "trainer/checkpoints/eval/comparison.json"
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "trainer/checkpoints/eval/.cache")
    parser.add_argument("--pictures", type=Path, default=ROOT / "docs/models")
    parser.add_argument(
        "--limit", type=int, default=800,
        help="photos scored per split, spread evenly over it (0: all)",
    )  # fmt: skip
    args = parser.parse_args()
    candidates = default_candidates()
    candidates += [Candidate(label, model, NO_BOOST) for label, model in args.candidate]
    results = compare(args.data, candidates, cache=args.cache, limit=args.limit or None)
    results["settings"]["command"] = shlex.join(["python", "-m", "trainer.compare", *sys.argv[1:]])
    rows = results.pop("rows")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    (args.out.with_suffix(".md")).write_text(markdown_table(results) + "\n")
    print(markdown_table(results))
    for document in (ROOT / "README.md", ROOT / "MODELS.md"):
        insert_table(document, markdown_table(results))
    by_label = {c.label: c for c in candidates}
    labels = args.sheet or list(dict.fromkeys(["effunet-general", candidates[-1].label]))
    _pictures(args.data, rows["cross"], [by_label[label] for label in labels], args.pictures)


if __name__ == "__main__":
    main()
