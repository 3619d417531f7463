"""Decoding in worker processes: a decoder that crashes takes down a worker, never the run.

libpng, libtiff, libjpeg, OpenJPEG and libwebp are native code; a damaged file can make one of
them crash its process (OpenCV 5's animated-PNG reader does, on some). The pipeline's decode
threads therefore hand each file to a worker process of their own (:class:`DecodeWorkers`) and
wait for it. A worker that dies (a signal, an abort, the kernel's out-of-memory killer) or that
does not answer within the time limit fails its file with one line naming the signal and the
decoder it was in, as the decoders announce each step (:func:`engine.decoders.entering`), and
a fresh worker takes its place.

Pixels come back through shared memory: the worker writes them into an anonymous memory file
(``memfd``) whose descriptor it passes over the pipe, and the pipeline's arrays map that memory
directly (no pickling, no copy on the way in; it is freed with the arrays). Where there is no
``memfd`` (not Linux), the raw bytes go through the pipe.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

import numpy as np

from engine import decoders
from engine.io import Decoded, ImageError, Job, failure_reason, read_image

DEFAULT_DECODE_TIMEOUT = 600.0
"""Seconds a worker may spend on one file (a 300-megapixel TIFF takes well under a minute)."""
_STAGE_BYTES = 120
_SHARED_MEMORY = hasattr(os, "memfd_create")


class DecoderCrashedError(ImageError):
    """The worker process decoding a file died (or hung) on it."""


def read_decoded(job: Job, metadata: bool, max_pixels: int | None) -> Decoded:
    """What a worker does with a file: :func:`engine.io.read_image` on ``job``'s page."""
    return read_image(job.source, metadata, max_pixels, job.page)


class DecodeWorkers:
    """``count`` worker processes; :meth:`read` is called from up to ``count`` threads at once."""

    def __init__(self, count: int, timeout: float | None = DEFAULT_DECODE_TIMEOUT) -> None:
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        if self._context.get_start_method() == "forkserver":
            self._context.set_forkserver_preload(["engine.decode_workers"])
        self.timeout = timeout
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers = [_Worker(self._context) for _ in range(max(1, count))]
        for worker in self._workers:
            self._idle.put(worker)

    def read(self, job: Job, metadata: bool, max_pixels: int | None) -> Decoded:
        """Decode ``job`` in a worker; raises :class:`ImageError` with the reason it failed."""
        worker = self._idle.get()
        try:
            return worker.read(job, metadata, max_pixels, self.timeout)
        except _WorkerLostError as lost:
            worker.stop()
            self._workers.remove(worker)
            worker = _Worker(self._context)
            self._workers.append(worker)
            raise DecoderCrashedError(str(lost)) from None
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker (they also stop by themselves when this process ends)."""
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> DecodeWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _WorkerLostError(Exception):
    """The worker died or hung; the message is the file's reason."""


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, context: Any) -> None:
        self.conn, child_conn = context.Pipe(duplex=True)
        self.stage = context.Array("c", _STAGE_BYTES, lock=False)
        self.process = context.Process(
            target=_serve, args=(child_conn, self.stage, os.getpid()), daemon=True
        )
        self.process.start()
        child_conn.close()

    def read(
        self, job: Job, metadata: bool, max_pixels: int | None, timeout: float | None
    ) -> Decoded:
        try:
            self.conn.send((job, metadata, max_pixels))
            if not wait([self.conn, self.process.sentinel], timeout):
                late = f"decoder did not finish within {timeout:g} s ({self._where()})"
                raise _WorkerLostError(late)
            if not self.conn.poll():
                raise _WorkerLostError(self._death())
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
        return self.stage.value.decode(errors="replace") or "before decoding"

    def _death(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is None or code >= 0:
            how = "exited" if code is None else f"exited with code {code}"
            return f"decoder crashed (its process {how} in {self._where()})"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = ", out of memory?" if -code == signal.SIGKILL else ""
        return f"decoder crashed ({name} in {self._where()}{hint})"

    def stop(self) -> None:
        self.conn.close()
        self.process.join(1)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _serve(conn: Connection, stage: Any, parent: int) -> None:
    """A worker's loop: decode each file asked for, answer with its pixels or its reason."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def announce(text: str) -> None:
        stage.value = text.encode()[: _STAGE_BYTES - 1]

    decoders.set_stage_listener(announce)
    busy = threading.Event()
    threading.Thread(target=_exit_when_orphaned, args=(conn, busy), daemon=True).start()
    while True:
        try:
            job, metadata, max_pixels = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        stage.value = b""
        busy.set()
        try:
            decoded = read_decoded(job, metadata, max_pixels)
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
    never writes to a busy worker, so a pipe that turns readable then has been closed."""
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
        with mmap.mmap(fd, size) as memory:
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
        memory = mmap.mmap(fd, max(1, size))
    finally:
        os.close(fd)
    arrays, offset = [], 0
    for shape, dtype in shapes:
        arrays.append(np.ndarray(shape, dtype, memory, offset))  # keeps the map alive
        offset += arrays[-1].nbytes
    return arrays
