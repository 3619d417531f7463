"""The crash journal: which files were being decoded when a run (or a decoder) died.

Before a file is decoded, a ``start`` line naming it is appended to the run's journal in the
output folder (``colorize-log-decoding-<host>-<pid>.journal``); when its decoding ends in a
living process (read or refused) an ``end`` line follows; when the worker decoding it dies, a
``crashed`` line with the reason. The lines
reach the operating system before the decoder starts, so they survive the run's process being
killed (``kill -9``, a crash in native code, the out-of-memory killer).

At the start of the next run, in the journals of runs that no longer run (a run sharing the
folder keeps its own), a file with a ``start`` and no ``end`` is a suspect: unless
``--retry-crashed`` is given it is recorded as failed, with the reason, and not decoded again, so
that a file which takes its decoder down cannot stop a folder from ever finishing. The suspects
move into the new run's journal and the old journals are removed, so journals never grow past
the suspects; a run that ends with none removes its own.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from engine.io import LOG_PREFIX, Job, resolved
from engine.outputs import writer_gone, writer_tag

JOURNAL_PREFIX = f"{LOG_PREFIX}decoding-"
JOURNAL_SUFFIX = ".journal"
STOPPED_REASON = "the previous run stopped while decoding this file"
RETRY_ADVICE = "--retry-crashed tries it again"

Key = tuple[str, int | None]


def job_key(job: Job) -> Key:
    return str(resolved(job.source)), job.page


class CrashJournal:
    """The journal of one output folder (see the module docstring)."""

    def __init__(self, output_dir: Path) -> None:
        output_dir = Path(output_dir)
        self.path = output_dir / f"{JOURNAL_PREFIX}{writer_tag()}{JOURNAL_SUFFIX}"
        self._lock = threading.Lock()
        finished = _finished_journals(output_dir)
        self.suspects: dict[Key, str] = {}
        for journal in finished:
            self.suspects.update(_unfinished(journal))
        self._open = set(self.suspects)  # started and not ended: kept if any at the end
        self._file = self.path.open("w", encoding="utf-8")
        self._write([self._line("start", key, why) for key, why in self.suspects.items()])
        for journal in finished:
            with contextlib.suppress(OSError):
                journal.unlink()

    def reason(self, job: Job) -> str | None:
        """Why ``job`` is not to be decoded again (an earlier run died on it), or None."""
        earlier = self.suspects.get(job_key(job))
        if earlier is None:
            return None
        return f"{earlier}; {RETRY_ADVICE}"

    def started(self, job: Job) -> None:
        key = job_key(job)
        self._open.add(key)
        self._write([self._line("start", key)])

    def ended(self, job: Job) -> None:
        key = job_key(job)
        self._open.discard(key)
        self._write([self._line("end", key)])

    def crashed(self, job: Job, reason: str) -> None:
        self._write([self._line("crashed", job_key(job), reason)])

    def close(self) -> None:
        """Close the journal; remove it when no file is left unfinished."""
        with self._lock, contextlib.suppress(OSError):
            self._file.close()
            if not self._open:
                self.path.unlink()

    @staticmethod
    def _line(event: str, key: Key, reason: str | None = None) -> str:
        record = {"event": event, "source": key[0], "page": key[1]}
        if reason is not None:
            record["reason"] = reason
        return json.dumps(record)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._lock, contextlib.suppress(OSError, ValueError):  # full disk, closed
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()  # in the kernel's hands: it outlives this process


def _finished_journals(output_dir: Path) -> list[Path]:
    """The journals in ``output_dir`` whose run no longer runs."""
    now, found = time.time(), []
    for path in sorted(output_dir.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}")):
        tag = path.name[len(JOURNAL_PREFIX) : -len(JOURNAL_SUFFIX)]
        with contextlib.suppress(OSError):
            if writer_gone(tag, now - path.stat().st_mtime):
                found.append(path)
    return found


def _unfinished(journal: Path) -> dict[Key, str]:
    """The files a journal started and never ended, with what is known of why."""
    open_files: dict[Key, str] = {}
    with contextlib.suppress(OSError):
        for line in journal.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                key = (str(record["source"]), record["page"])
                if record["event"] == "start":
                    open_files[key] = record.get("reason") or STOPPED_REASON
                elif record["event"] == "crashed":
                    open_files[key] = f"{record['reason']} in an earlier run"
                elif record["event"] == "end":
                    open_files.pop(key, None)
    return open_files
