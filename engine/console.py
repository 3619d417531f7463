"""A quiet console: what native libraries print on their own is kept, never shown raw.

libtiff, libpng and OpenJPEG write warnings and errors straight to file descriptor 2 (OpenCV's
own log is silenced, and Pillow's log becomes the file's reason, in :mod:`engine.decoders`).
:class:`NativeMessages` points descriptor 2 at a pipe for the length of a run and collects
those lines, while Python's ``sys.stderr`` — where the engine's own messages go — is pointed at
the real terminal, so the console holds only the engine's lines. The collected lines go into
the run's summary file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading


class NativeMessages:
    """Context manager: collects native writes to descriptor 2 in ``lines`` (the first
    ``keep``; ``count`` counts all)."""

    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self.lines: list[str] = []
        self.count = 0
        self._saved: int | None = None

    def __enter__(self) -> NativeMessages:
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):  # no descriptor 2 (embedded): nothing to do
            self._saved = None
            return self
        os.dup2(write_end, 2)
        os.close(write_end)
        self._python_stderr = None
        if _writes_to_descriptor_2(sys.stderr):  # else (a test's capture) it stays as it is
            self._python_stderr = sys.stderr
            sys.stderr = open(
                os.dup(self._saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace"
            )
        self._reader = threading.Thread(target=self._read, args=(read_end,), daemon=True)
        self._reader.start()
        return self

    def _read(self, fd: int) -> None:
        with open(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "backslashreplace").rstrip()
                if not line:
                    continue
                self.count += 1
                if len(self.lines) < self.keep:
                    self.lines.append(line)

    def __exit__(self, *exc_info) -> None:
        if self._saved is None:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        if self._python_stderr is not None:
            ours, sys.stderr = sys.stderr, self._python_stderr
            ours.close()
        os.dup2(self._saved, 2)  # the pipe's last write end closes: the reader sees its end
        os.close(self._saved)
        self._reader.join(timeout=2)


def _writes_to_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
