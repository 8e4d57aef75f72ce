"""Free-space checks before a stage writes large data.

Running out of disk half way through a clip cache or a feature store shows up as a raw
``OSError: [Errno 28]`` from deep inside a writer; checking the estimate first turns it
into one clear message naming the path, what is needed and what is free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dimcollapse.errors import KnownError


class InsufficientSpace(KnownError, OSError):
    """The file system of a path holds less free space than a stage needs."""


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes (for this user) on the file system that holds ``path`` or, when it does
    not exist yet, its nearest existing parent."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def human_bytes(n: float) -> str:
    """A byte count for people: ``512 B``, ``3.4 MB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def ensure_free_space(path: str | os.PathLike[str], need: int, *, what: str) -> None:
    """Raise :class:`InsufficientSpace` unless ``need`` bytes fit where ``path`` will be written."""
    if need <= 0:
        return
    free = free_bytes(path)
    if need > free:
        raise InsufficientSpace(
            f"{path}: {what} needs about {human_bytes(need)} ({need} bytes) but only {human_bytes(free)} "
            f"({free} bytes) is free there; "
            f"free space or point the output at a larger disk"
        )
