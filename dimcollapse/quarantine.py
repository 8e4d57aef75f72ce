"""Moving damaged files aside instead of deleting them.

A torn or corrupt file in the feature store or the clip cache (a disk fault, a partial
copy between file systems) must neither stop a study nor be deleted: its bytes may be
all that is left of hours of compute, and a person may want to look at it. Readers
therefore move it into a ``quarantine/`` folder beside it, where nothing reads it
again, and compute what it held anew.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Name of the folder that damaged files are moved into.
QUARANTINE = "quarantine"


def move_aside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path | None:
    """Move ``path`` (a file or a directory) into ``folder``; return where it went.

    Returns ``None`` when ``path`` no longer exists (a concurrent reader moved it
    first). An earlier quarantined file of the same name is kept: the new one gets a
    numbered name.
    """
    src, folder = Path(path), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    n = 1
    while dest.exists():
        dest = folder / f"{src.name}.{n}"
        n += 1
    try:
        os.rename(src, dest)
    except FileNotFoundError:
        return None
    return dest
