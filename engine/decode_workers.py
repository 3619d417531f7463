"""Decoding in worker processes: a decoder that crashes takes down a worker, never the run.

libpng, libtiff, libjpeg, OpenJPEG and libwebp are native code; a damaged file can make one of
them crash its process (OpenCV 5's animated-PNG reader does, on some). The pipeline's decode
threads therefore hand each file to a worker process (:class:`DecodeWorkers`) and wait for it. A
worker that dies (a signal, an abort, the kernel's out-of-memory killer) or that does not answer
within the time limit fails its file with one line naming the signal and the decoder it was in,
as the decoders announce each step (:func:`engine.decoders.entering`), and a fresh worker takes
its place.

Workers are fresh interpreters (``python -m engine.decode_workers``), not forks: they never run
the caller's ``__main__`` (a script without a ``__main__`` guard is fine) and hold none of its
threads or locks. A process keeps its pool (:func:`shared_workers`) for its later runs; idle
workers cost ~60 MB each and end with the process. What a worker's native libraries print goes
to this process's descriptor 2 as it is at that moment (where a run collects it).

Pixels come back through shared memory: the worker writes them into an anonymous memory file
(``memfd``) whose descriptor it passes over the socket, and the pipeline's arrays map that
memory directly (no pickling, no copy on the way in; it is freed with the arrays). Where there
is no ``memfd`` (not Linux), the raw bytes go through the socket.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from pathlib import Path

import numpy as np

from engine import decoders
from engine.io import Decoded, ImageError, Job, failure_reason, read_image

DEFAULT_DECODE_TIMEOUT = 600.0
"""Seconds a worker may spend on one file (a 300-megapixel TIFF takes well under a minute)."""
_STAGE_BYTES = 120
_SHARED_MEMORY = hasattr(os, "memfd_create")
_PREFAULT = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
"""Map shared pixels with their pages set up at once: one call, not a fault per page."""
_ENGINE_ROOT = str(Path(__file__).resolve().parents[1])


def can_isolate() -> bool:
    """Whether this process may start workers (a daemonic process, e.g. a worker of a
    ``multiprocessing.Pool``, may not: there the pipeline decodes in threads, unprotected)."""
    return not multiprocessing.current_process().daemon


class DecoderCrashedError(ImageError):
    """The worker process decoding a file died (or hung) on it."""


_shared: DecodeWorkers | None = None
_shared_lock = threading.Lock()


def shared_workers(count: int) -> DecodeWorkers:
    """This process's pool of at least ``count`` workers, started on first use, kept for the
    runs that follow."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodeWorkers(count)
        _shared.grow(count)
        return _shared


class DecodeWorkers:
    """Worker processes; :meth:`read` may be called from many threads (each call takes an idle
    worker, waiting for one)."""

    def __init__(self, count: int = 1) -> None:
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.grow(count)

    def grow(self, count: int) -> None:
        """Start workers until there are ``count``."""
        with self._lock:
            while len(self._workers) < count:
                worker = _Worker()
                self._workers.append(worker)
                self._idle.put(worker)

    def read(
        self,
        job: Job,
        metadata: bool,
        max_pixels: int | None,
        timeout: float | None = DEFAULT_DECODE_TIMEOUT,
    ) -> Decoded:
        """Decode ``job`` in a worker; raises :class:`ImageError` with the reason it failed
        (:class:`DecoderCrashedError` when the worker died or passed ``timeout`` seconds)."""
        worker = self._idle.get()
        try:
            return worker.read(job, metadata, max_pixels, timeout)
        except _WorkerLostError as lost:
            worker.stop()
            with self._lock:
                self._workers.remove(worker)
                worker = _Worker()
                self._workers.append(worker)
            raise DecoderCrashedError(str(lost)) from None
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker (they also stop by themselves when this process ends)."""
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers.clear()

    def __enter__(self) -> DecodeWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WorkerLostError(Exception):
    """The worker died or hung; the message is the file's reason."""


class _Worker:
    """One worker process, the socket to it, and the page where it names its decoder."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.conn = Connection(ours.detach())
        path = os.pathsep.join(filter(None, [_ENGINE_ROOT, os.environ.get("PYTHONPATH")]))
        with tempfile.TemporaryFile() as stage_file:  # the mapping outlives the file object
            stage_file.truncate(_STAGE_BYTES)
            self.stage = mmap.mmap(stage_file.fileno(), _STAGE_BYTES)
            fds = (theirs.fileno(), stage_file.fileno())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.decode_workers", *map(str, fds), str(os.getpid())],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": path},
            )  # fmt: skip
        theirs.close()
        threading.Thread(target=_forward_lines, args=(self.process.stderr,), daemon=True).start()

    def read(
        self, job: Job, metadata: bool, max_pixels: int | None, timeout: float | None
    ) -> Decoded:
        try:
            self.conn.send((job, metadata, max_pixels))
            if not wait([self.conn], timeout):
                late = f"decoder did not finish within {timeout:g} s ({self._where()})"
                raise _WorkerLostError(late)
            reply = self.conn.recv()
            if reply[0] == "error":
                raise ImageError(reply[1])
            _, layouts, meta = reply
            arrays = _receive_arrays(self.conn, layouts)
        except (EOFError, OSError, ConnectionError):
            raise _WorkerLostError(self._death()) from None
        pixels, alpha = arrays[0], arrays[1] if len(arrays) > 1 else None
        return Decoded(pixels, alpha, meta)

    def _where(self) -> str:
        return bytes(self.stage).split(b"\0")[0].decode(errors="replace") or "before decoding"

    def _death(self) -> str:
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        if code is None or code >= 0:
            how = "closed its socket" if code is None else f"exited with code {code}"
            return f"decoder crashed (its process {how} in {self._where()})"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", out of memory?" if -code == signal.SIGKILL else ""
        return f"decoder crashed ({name} in {self._where()}{hint})"

    def stop(self) -> None:
        self.conn.close()
        try:
            self.process.wait(1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _forward_lines(stream) -> None:
    """A worker's stderr → this process's descriptor 2, line by line, as it is now."""
    with stream:
        for line in stream:
            try:
                os.write(2, line)
            except OSError:
                return


def main(args: list[str]) -> None:
    """A worker: ``python -m engine.decode_workers SOCKET_FD STAGE_FD PARENT_PID``."""
    conn = Connection(int(args[0]))
    stage = mmap.mmap(int(args[1]), _STAGE_BYTES)
    os.close(int(args[1]))
    _serve(conn, stage, int(args[2]))


def _serve(conn: Connection, stage: mmap.mmap, parent: int) -> None:
    """A worker's loop: decode each file asked for, answer with its pixels or its reason."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def announce(text: str) -> None:
        stage[:] = text.encode()[: _STAGE_BYTES - 1].ljust(_STAGE_BYTES, b"\0")

    decoders.set_stage_listener(announce)
    busy = threading.Event()
    threading.Thread(target=_exit_when_orphaned, args=(conn, busy), daemon=True).start()
    while True:
        try:
            job, metadata, max_pixels = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the socket or died
        announce("")
        busy.set()
        try:
            decoded = read_image(job.source, metadata, max_pixels, job.page)
        except Exception as exc:  # every failure becomes the file's reason
            conn.send(("error", failure_reason(exc)))
            busy.clear()
            continue
        arrays = [decoded.pixels] if decoded.alpha is None else [decoded.pixels, decoded.alpha]
        layouts = [(a.shape, a.dtype.str) for a in arrays]
        conn.send(("ok", layouts, decoded.metadata))
        _send_arrays(conn, arrays, parent)
        busy.clear()


def _exit_when_orphaned(conn: Connection, busy: threading.Event, every: float = 0.5) -> None:
    """End this worker when the run's process is gone, even while a decoder hangs: the run
    never writes to a busy worker, so a socket that turns readable then has been closed."""
    while True:
        time.sleep(every)
        if busy.is_set() and conn.poll():
            os._exit(0)


def _send_arrays(conn: Connection, arrays: list[np.ndarray], parent: int) -> None:
    if not _SHARED_MEMORY:
        for array in arrays:
            conn.send_bytes(np.ascontiguousarray(array))
        return
    size = max(1, sum(a.nbytes for a in arrays))
    fd = os.memfd_create("decoded", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size, flags=_PREFAULT) as memory:
            offset = 0
            for array in arrays:
                view = np.ndarray(array.shape, array.dtype, memory, offset)
                view[...] = array
                del view  # the memory map cannot close while a view holds it
                offset += array.nbytes
        send_handle(conn, fd, parent)
    finally:
        os.close(fd)


def _receive_arrays(conn: Connection, layouts: list[tuple[tuple, str]]) -> list[np.ndarray]:
    shapes = [(shape, np.dtype(dtype)) for shape, dtype in layouts]
    if not _SHARED_MEMORY:
        return [np.frombuffer(bytearray(conn.recv_bytes()), d).reshape(s) for s, d in shapes]
    fd = recv_handle(conn)
    try:
        size = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in shapes)
        memory = mmap.mmap(fd, max(1, size), flags=_PREFAULT)
    finally:
        os.close(fd)
    arrays, offset = [], 0
    for shape, dtype in shapes:
        arrays.append(np.ndarray(shape, dtype, memory, offset))  # keeps the map alive
        offset += arrays[-1].nbytes
    return arrays


if __name__ == "__main__":
    main(sys.argv[1:])
