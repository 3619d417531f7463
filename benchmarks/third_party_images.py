"""``engine colorize`` over a collection of odd and broken image files that nobody here wrote.

``python -m benchmarks.third_party_images [--json benchmarks/results/third-party-images.json]``

The collection is Pillow's own test images (``Tests/images`` of the Pillow source distribution
matching the installed Pillow, fetched from PyPI with ``pip download``: hundreds of files in
dozens of formats, many truncated, fuzzed or deliberately malformed). One ``engine colorize``
run over them records: how many image files were colorized, failed (by kind: two inputs with one
output name, over the pixel limit, not decodable) or ignored (by extension, and which of those
Pillow reads: formats the engine does not take, such as icons and textures); every failed file
that Pillow itself decodes (the engine's gap, which should be none); and every stderr line that
the engine did not write (which should be none).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections import Counter
from pathlib import Path

from benchmarks.machine import provenance

RESULTS = Path(__file__).parent / "results" / "third-party-images.json"
ENGINE_LINE = re.compile(
    r"failed \S.*: \S.*|ignored: \d+ files? \(.*\), listed in the log|log: \S+\.jsonl|"
    r"colorize ━.*|[┏┃┡│└].*|\S+ on \w+( on Ray)?"
)
"""Every line ``engine colorize`` itself writes to stderr (a console wide enough for no wraps)."""


def fetch_pillow_images(folder: Path) -> tuple[Path, str]:
    """Pillow's ``Tests/images`` (for the installed version) extracted under ``folder``."""
    import PIL

    version = PIL.__version__
    download = folder / "sdist"
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"pillow=={version}", "--no-binary", ":all:",
         "--no-deps", "-q", "-d", str(download)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    archives = list(download.glob("*.tar.gz"))
    if fetched.returncode != 0 or len(archives) != 1:
        raise SystemExit(f"pip download pillow=={version} (sdist) failed: {fetched.stderr[-500:]}")
    archive = archives[0]
    images = folder / "images"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/Tests/images/" in m.name and m.isfile()]
        for member in members:
            member.name = member.name.split("/Tests/images/", 1)[1]
        tar.extractall(images, members=members, filter="data")
    return images, version


def pillow_decodes(path: Path) -> bool:
    """Whether Pillow reads the whole image (its own decompression-bomb limit applies)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
        return True
    except Exception:
        return False


def failure_kind(reason: str) -> str:
    if "is also the output of" in reason:
        return "shared_output_name"
    if "megapixels, over the limit" in reason:
        return "over_pixel_limit"
    return "not_decodable"


def run(images: Path, out: Path) -> dict:
    """One ``engine colorize`` over ``images``; the run's account of each file, checked."""
    env = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "colorize", str(images), "-o", str(out), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    records = [json.loads(x) for x in Path(summary["log_path"]).read_text().splitlines()]
    failed = [(r, failure_kind(r["reason"])) for r in records if r["status"] == "failed"]
    kinds = Counter(kind for _, kind in failed)
    gaps = [
        str(Path(r["source"]).relative_to(images))
        for r, kind in failed
        if kind == "not_decodable" and pillow_decodes(Path(r["source"]))
    ]
    readable = Counter(  # ignored (not taken as images) but Pillow reads them
        Path(r["source"]).suffix.lower() or "(none)"
        for r in records
        if r["status"] == "ignored" and pillow_decodes(Path(r["source"]))
    )
    lines = [x.strip() for x in done.stderr.splitlines() if x.strip()]
    return {
        "exit_code": done.returncode,
        "files": sum(1 for p in images.rglob("*") if p.is_file()),
        "image_files": summary["planned"],
        "done": summary["done"],
        "failed": summary["failed"],
        "failed_by_kind": dict(kinds),
        "failed_that_pillow_decodes": gaps,
        "ignored": sum(summary["ignored"].values()),
        "ignored_by_extension": summary["ignored"],
        "ignored_that_pillow_decodes": dict(readable.most_common()),
        "stderr_lines": len(lines),
        "stderr_lines_not_from_the_engine": [x for x in lines if not ENGINE_LINE.fullmatch(x)],
        "decoder_messages_kept_out_of_the_console": len(summary.get("decoder_messages", [])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, version = fetch_pillow_images(Path(tmp))
        result = {**provenance(), "collection": f"Pillow {version} Tests/images (PyPI sdist)"}
        result.update(run(images, Path(tmp) / "out"))
    result["counts"] = {  # the lists' lengths, for the README's figures
        key: len(result[key])
        for key in ("failed_that_pillow_decodes", "stderr_lines_not_from_the_engine")
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
