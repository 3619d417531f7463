"""The output folder: where each output goes, and writing it so that nothing is ever lost.

Every output is written to a temporary file beside its destination and renamed into place, so a
crash (even ``kill -9``) never leaves a truncated image under a final name. Temporary names carry
the host and process that wrote them; a later run removes those whose writer is gone. Without
``--overwrite`` the rename never replaces a file, so two runs sharing an output folder each
write a given output at most once, and the second one skips it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from engine.io import (
    IMAGE_EXTENSIONS,
    LOG_PREFIX,
    READ_ONLY_EXTENSIONS,
    TEMP_MARKER,
    ImageError,
    Job,
    resolved,
)

FORMATS = {"jpg": ".jpg", "png": ".png", "tif": ".tif"}
OUTPUT_SUFFIXES = {
    ".jpf": ".jp2", ".jpx": ".jp2", ".j2c": ".j2k", ".jpc": ".j2k",  # JPEG 2000: file or stream
    ".pbm": ".ppm", ".pgm": ".ppm",  # a bitmap or graymap cannot hold colour: a pixmap
    ".dib": ".bmp",
    ".mpo": ".jpg",  # a multi-picture file's first picture is a JPEG
    **dict.fromkeys(READ_ONLY_EXTENSIONS, ".png"),  # GIF, TGA, PCX, SGI, PSD, AVIF, APNG
}  # fmt: skip
"""Inputs whose own format cannot hold the colour output, and what they become; every other
image keeps its format (README: Formats)."""
COLLISION_SUFFIX = "_colorized"
STALE_TEMP_SECONDS = 24 * 3600
"""A temporary file this old is removed whoever wrote it (another host's crashed run)."""
OUTPUT_STOPPING_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)
"""Write errors that no other file of the run would escape: the run stops on them."""
_NAME_MAX = 255
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


class OutputAlreadyWrittenError(ImageError):
    """Another run sharing the output folder wrote this output first."""


class OutputUnwritableError(OSError):
    """The output folder cannot take more files (full, read-only, no permission): stop the run."""


def summary_path(log_path: Path) -> Path:
    """Where a run writes its summary when it ends: ``colorize-log-….summary.json``."""
    return log_path.with_suffix(".summary.json")


def earlier_records(output_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Every file record of the run logs in ``output_dir``, oldest log first, with its log's
    path; lines that are not JSON (a run killed mid-line) are passed over."""
    for log in sorted(output_dir.glob(f"{LOG_PREFIX}*.jsonl")) if output_dir.is_dir() else ():
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield log, record


def previous_outputs(output_dir: Path) -> set[Path]:
    """Resolved paths of files that earlier runs' logs in ``output_dir`` say they wrote."""
    return {
        resolved(Path(record["output"]))
        for _, record in earlier_records(output_dir)
        if record.get("output")
    }


def output_path(
    job: Job, output_dir: Path, fmt: str | None, inputs: set[Path], page_suffix: str = ""
) -> Path:
    """Where ``job``'s output goes: mirrored tree, same stem, chosen or same format.

    When that path is one of the run's inputs, ``_colorized`` is added to the stem.
    """
    suffix = FORMATS[fmt] if fmt else job.source.suffix.lower()
    suffix = OUTPUT_SUFFIXES.get(suffix, suffix)
    if suffix not in IMAGE_EXTENSIONS:
        suffix = ".png"
    relative = job.relative.with_suffix("")
    target = output_dir / relative.with_name(relative.name + page_suffix + suffix)
    if resolved(target) in inputs:
        target = target.with_name(f"{target.stem}{COLLISION_SUFFIX}{suffix}")
    return target


def check_inside(path: Path, root: Path) -> None:
    """Refuse an output whose real location is outside ``root`` (a symlinked sub-folder, ``..``)."""
    real_root = resolved(root)
    real = resolved(path.parent) / path.name
    if real_root != real.parent and real_root not in real.parents:
        raise ImageError(f"output {path} would be written outside the output folder (to {real})")


def make_folders(folder: Path, root: Path | None = None) -> None:
    """``mkdir -p folder``; with ``root``, each existing folder on the way is checked to lie
    inside ``root`` before anything is created in it (and each created one after). ``root``
    itself, the output folder the user named, is made first if it does not exist."""
    if root is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not os.path.lexists(root):
        root.mkdir(parents=True, exist_ok=True)
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    check_inside(folder / "-", root)
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        check_inside(created / "-", root)  # a link planted meanwhile


def writer_tag() -> str:
    """This process's tag in the names of the files it owns: ``host-pid``."""
    return f"{_HOST}-{os.getpid()}"


def temp_name(name: str) -> str:
    """A temporary file name for ``name``: marker, host, process, random part, then the name."""
    prefix = f"{TEMP_MARKER}{writer_tag()}-{uuid.uuid4().hex[:8]}-"
    room = _NAME_MAX - len(prefix.encode())
    encoded = name.encode()
    if len(encoded) > room:  # keep within the file system's name limit
        name = encoded[-room:].decode(errors="ignore")
    return prefix + name


def writer_gone(tag: str, age: float) -> bool:
    """Whether the process of ``tag`` (:func:`writer_tag`, maybe followed by ``-more``) no longer
    runs, or its file is older than :data:`STALE_TEMP_SECONDS`."""
    if age > STALE_TEMP_SECONDS:
        return True
    parts = tag.split("-", 2)
    if len(parts) < 2 or parts[0] != _HOST or not parts[1].isdigit():
        return False  # another host's file, or not ours: only age removes it
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def remove_stale_temps(output_dir: Path) -> int:
    """Delete temporary files left in ``output_dir`` by runs that died; returns how many."""
    removed = 0
    now = time.time()
    for folder, dirs, files in os.walk(output_dir):  # does not follow symbolic links
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(TEMP_MARKER):
                continue
            path = Path(folder) / name
            try:
                age = now - path.lstat().st_mtime
                if writer_gone(name[len(TEMP_MARKER) :], age):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def _commit(tmp: Path, path: Path, replace: bool) -> None:
    """Move ``tmp`` to ``path``: replacing, or only if ``path`` does not exist (hard link)."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputAlreadyWrittenError(f"output {path} was written by another run") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():  # a file system without hard links: check, then rename
            raise OutputAlreadyWrittenError(f"output {path} was written by another run") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def write_atomic(
    path: Path, data: bytes | memoryview, root: Path | None = None, replace: bool = True
) -> None:
    """Write ``data`` to a temporary file beside ``path`` and move it into place.

    With ``root``, the real destination must lie inside it: each folder on the way is checked
    before a folder is created in it, so a symbolic link anywhere on the way is seen before
    anything is made outside ``root``. Without ``replace`` an existing ``path`` is left
    alone (:class:`OutputAlreadyWrittenError`). A full, read-only or forbidden destination raises
    :class:`OutputUnwritableError`.
    """
    tmp = path.with_name(temp_name(path.name))
    try:
        make_folders(path.parent, root)
        if root is not None:
            check_inside(path, root)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path, replace)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in OUTPUT_STOPPING_ERRNOS:
            raise OutputUnwritableError(
                exc.errno, f"cannot write {path}: {exc.strerror or exc}"
            ) from None
        raise


def prepare_output_dir(output_dir: Path) -> None:
    """Create ``output_dir`` and prove a file can be written there (one clear error if not)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputUnwritableError(
            errno.ENOTDIR, f"the output folder {output_dir} is a file, not a folder"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / temp_name("probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputUnwritableError(
            exc.errno, f"cannot write to the output folder {output_dir}: {exc.strerror or exc}"
        ) from None
