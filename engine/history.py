"""What earlier runs in an output folder made, and with which settings (from their logs).

A rerun into the same folder skips outputs that exist; when those were made with another model,
precision, size or boost, :func:`made_otherwise` finds them so the command line can say so
before the run instead of reporting "skipped" in silence.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from engine.io import resolved
from engine.outputs import earlier_records, summary_path

SETTINGS = ("model", "precision", "size", "boost")
"""What makes two runs' outputs differ."""


def _settings(facts: dict) -> dict:
    return {k: facts.get(k) for k in SETTINGS}


def describe_settings(settings: dict) -> str:
    """``vivid-general (fp32, 256 px, boost 1.0,1.0)``."""
    boost = settings.get("boost")
    boost_text = "" if boost is None else f", boost {','.join(f'{b:g}' for b in boost)}"
    return (
        f"{settings.get('model') or '?'} ({settings.get('precision') or 'fp32'}, "
        f"{settings.get('size') or '?'} px{boost_text})"
    )


def output_settings(output_dir: Path) -> dict[Path, dict]:
    """Resolved output path → the settings of the run that wrote it (the latest such run);
    a file's own model (``--model auto``) replaces the run's."""
    made: dict[Path, dict] = {}
    facts_of: dict[Path, dict] = {}
    for log, record in earlier_records(output_dir):
        if record.get("status") != "done" or not record.get("output"):
            continue
        if log not in facts_of:
            try:
                facts_of[log] = json.loads(summary_path(log).read_text())
            except (OSError, json.JSONDecodeError):
                facts_of[log] = {}  # a killed run: its files' own records still name their model
        facts = facts_of[log]
        settings = _settings(facts)
        if facts.get("model") != "auto" and record.get("model"):
            settings["model"] = record["model"]
        made[resolved(Path(record["output"]))] = settings
    return made


def made_otherwise(targets: list[Path], output_dir: Path, current: dict) -> Counter[str]:
    """Of ``targets`` that exist, how many were made with settings other than ``current``
    (``describe()`` of the colorizer), per description of those settings."""
    made = output_settings(output_dir)
    wanted = _settings(current)
    if wanted.get("boost") is not None:
        wanted["boost"] = list(wanted["boost"])
    found: Counter[str] = Counter()
    for target in targets:
        settings = made.get(resolved(target))
        if settings is None or not target.exists():
            continue
        if settings.get("boost") is not None:
            settings = {**settings, "boost": list(settings["boost"])}
        differs = [k for k in SETTINGS if settings.get(k) is not None and settings[k] != wanted[k]]
        if differs:
            found[describe_settings(settings)] += 1
    return found
