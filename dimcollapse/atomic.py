"""Atomic file output.

Every final artefact of the pipeline (features, checkpoints, caches, tables) appears
at its final path by a single ``os.replace`` of a fully written sibling file, so a
killed job never leaves a truncated file that a later run would mistake for a
finished one.

Temporary files are named ``.<final name>@<host>@<pid>@<random><suffix>.tmp`` so that
:func:`clean_stray` can tell a live writer's file from one a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dimcollapse.disk_full import DiskFull, disk_full_message, is_disk_full

log = logging.getLogger(__name__)

#: A temporary file of another host is stray once it has not changed for this long
#: (its writer cannot be checked from here; a live writer touches it continuously).
REMOTE_STALE_S = 3600.0
#: Directory names of interrupted directory builds (clip caches), removed when empty.
PARTIAL_SUFFIX = ".partial"


def _host() -> str:
    return socket.gethostname().split(".")[0].replace("@", "_") or "host"


def unique_name(prefix: str) -> str:
    """A file name no other process picks: time, host, pid and a random part."""
    return f"{prefix}-{time.time_ns():x}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str = "", *, need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success.

    The temporary file lives in the same directory so the rename is atomic on POSIX
    file systems. On an exception the temporary file is removed and ``final`` is left
    untouched (an older complete version, if any, survives). A full disk becomes
    :class:`~dimcollapse.disk_full.DiskFull` naming ``final`` and ``need``, the bytes
    the caller writes (when it knows them).
    """
    final = Path(final)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}@{_host()}@{os.getpid()}@", suffix=suffix + ".tmp",
                                        dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp creates 0600 files; final artefacts get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, final)
    except OSError as err:
        if not is_disk_full(err):
            raise
        written = _remove(tmp)  # before the message measures the free space, which then includes it
        raise DiskFull(disk_full_message(final, err, need=need, written=written,
                                         kept="nothing of it was kept")) from err
    finally:
        _remove(tmp)


def _remove(tmp: Path | None) -> int:
    """Remove a temporary file if it is there; return the bytes it held."""
    if tmp is None:
        return 0
    try:
        size = tmp.stat().st_size
    except FileNotFoundError:
        return 0
    tmp.unlink(missing_ok=True)
    return size


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically."""
    data = text.encode()
    with atomic_path(path, need=len(data)) as tmp:
        tmp.write_bytes(data)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stray(path: Path, now: float) -> bool:
    """A temporary file whose writer is gone: a dead process of this host, or untouched for long."""
    parts = path.name.rsplit("@", 3)
    try:
        age = now - path.stat().st_mtime
    except OSError:
        return False
    if len(parts) == 4 and parts[1] == _host() and parts[2].isdigit():
        return not _pid_alive(int(parts[2]))
    return age > REMOTE_STALE_S


def clean_stray(root: str | os.PathLike[str]) -> tuple[int, int]:
    """Remove what killed jobs left under ``root``: temporary ``*.tmp`` files of dead
    writers and empty ``*.partial`` directories (and empty folders inside them). Returns (files, directories) removed.

    Live writers are safe: a temporary file of this host is removed only when its pid
    is no longer running, one of another host (shared file system) only after
    :data:`REMOTE_STALE_S` without a change. A non-empty ``.partial`` directory is an
    interrupted build's progress and is kept for it to resume.
    """
    root = Path(root)
    files = dirs = 0
    now = time.time()
    for current, _subdirs, names in os.walk(root, topdown=False):
        for name in names:
            if name.endswith(".tmp"):
                path = Path(current) / name
                if _is_stray(path, now):
                    path.unlink(missing_ok=True)
                    files += 1
        inside = Path(current).relative_to(root).parts
        if any(part.endswith(PARTIAL_SUFFIX) for part in inside):
            try:
                os.rmdir(current)
                dirs += 1
            except OSError:
                pass  # not empty: progress of an interrupted build
    if files or dirs:
        log.info("removed %d stray temporary files and %d empty partial folders under %s", files, dirs, root)
    return files, dirs
