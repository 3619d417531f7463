"""The evaluation that decides the default model: every candidate on the validation split, per
category, with the same settings, then a markdown table and contact sheets.

    python -m trainer.compare DATA [DATA…] [--out trainer/checkpoints/eval/comparison.json]

Candidates: the gray baseline; the paper's ``seed`` MSE recipe without and with its boost; the
``vivid`` model (no boost); ``--model auto``; ``effunet`` (the pretrained-encoder model). The
contact sheet shows gray / seed (boosted) / vivid / effunet / truth for a dozen validation photos;
the failure sheets show the validation photos where a model loses most PSNR against gray.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.colorizer import Colorizer
from engine.model_io import colorize_output
from engine.models import MODELS_DIR
from trainer.data import scan_folders, select
from trainer.evaluate import EvalReport, evaluate, load_eval_image, load_for_eval

ROOT = Path(__file__).resolve().parents[1]
NO_BOOST = (1.0, 1.0)


@dataclass(frozen=True)
class Candidate:
    label: str
    model: str
    """An .onnx path, or ``auto``."""
    boost: tuple[float, float] | None
    """None: the model's own boost."""


def _run(candidate: Candidate, photos, long_side: int) -> EvalReport:
    loaded = load_for_eval(Path(candidate.model))
    return evaluate(
        loaded["predict"], photos, loaded["norm"], candidate.boost or loaded["boost"],
        input_size=loaded["input_size"], long_side=long_side,
        router=loaded.get("router"), predictors=loaded.get("predictors"),
    )  # fmt: skip


def compare(
    data: Path | list[Path],
    candidates: list[Candidate],
    long_side: int = 512,
    val_fraction: float = 0.15,
) -> dict:
    """Summaries per candidate (plus gray), and the per-image rows for the pictures."""
    photos = select(scan_folders(data), "val", val_fraction)
    results: dict = {"settings": {"split": "val", "photos": len(photos), "long_side": long_side,
                                  "never_trained_on": True}, "candidates": {}}  # fmt: skip
    for candidate in candidates:
        report = _run(candidate, photos, long_side)
        summary = report.summary()
        if "gray" not in results["candidates"]:
            results["candidates"]["gray"] = {
                group: {"count": entry["count"], **entry["gray"], "truth_cf": entry["truth"]["cf"]}
                for group, entry in summary.items()
            }
        results["candidates"][candidate.label] = {
            group: {"count": entry["count"], **entry["model"]} for group, entry in summary.items()
        }
        results.setdefault("rows", {})[candidate.label] = report.rows
        print(f"{candidate.label}: {json.dumps(summary['all']['model'])}")
    return results


def markdown_table(results: dict) -> str:
    """One table: candidate × group, the five quality metrics and the out-of-gamut share."""
    head = "| candidate | group | n | PSNR dB | SSIM | CF | ΔCF | AuC | hue | out of gamut |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, groups in results["candidates"].items():
        for group in ("all", "general", "landscape", "people"):
            if group not in groups:
                continue
            m = groups[group]
            lines.append(
                f"| {label} | {group} | {m['count']} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
                f"{m['cf']:.1f} | {m['delta_cf']:.1f} | {m['auc']:.4f} | {m['hue']:.3f} | "
                f"{100 * m['out_of_gamut']:.2f} % |"
            )
    return "\n".join(lines)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--vivid", type=Path, default=MODELS_DIR / "vivid-general.onnx")
    parser.add_argument("--effunet", type=Path, default=MODELS_DIR / "effunet-general.onnx")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "trainer/checkpoints/eval/comparison.json"
    )
    parser.add_argument("--pictures", type=Path, default=ROOT / "docs/models")
    args = parser.parse_args()
    seed = str(MODELS_DIR / "seed-general.onnx")
    candidates = [
        Candidate("seed, no boost", seed, NO_BOOST),
        Candidate("seed, paper's boost ×2", seed, None),
        Candidate("vivid, no boost", str(args.vivid), NO_BOOST),
        Candidate("auto", "auto", NO_BOOST),
        Candidate("effunet, no boost", str(args.effunet), NO_BOOST),
    ]
    results = compare(args.data, candidates)
    rows = results.pop("rows")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    (args.out.with_suffix(".md")).write_text(markdown_table(results) + "\n")
    print(markdown_table(results))
    for document in (ROOT / "README.md", ROOT / "MODELS.md"):
        insert_table(document, markdown_table(results))
    files = [r["file"] for r in rows["effunet, no boost"]]
    chosen = files[:: max(1, len(files) // 12)][:12]
    seed_model, vivid_model = Colorizer(seed), Colorizer(str(args.vivid))
    effunet_model = Colorizer(str(args.effunet))
    columns = [("gray", None, None), ("seed x2", seed_model, (2.0, 2.0)),
               ("vivid", vivid_model, NO_BOOST), ("effunet", effunet_model, NO_BOOST),
               ("truth", None, None)]  # fmt: skip
    contact_sheet(args.data, chosen, columns, args.pictures / "contact-sheet.jpg")
    for label, key in (("effunet", "effunet, no boost"), ("vivid", "vivid, no boost")):
        loss = {r["file"]: r["model"]["psnr"] - r["gray"]["psnr"] for r in rows[key]}
        worst = sorted(loss, key=loss.get)[:6]
        contact_sheet(args.data, worst, columns, args.pictures / f"{label}-failures.jpg")
        print(f"worst for {label} (PSNR vs gray):", {f: round(loss[f], 2) for f in worst})


if __name__ == "__main__":
    main()
