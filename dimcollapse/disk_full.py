"""A disk that fills up while a file is written: one line naming the file and its size.

The free-space checks before large writes (:mod:`dimcollapse.diskspace`) cannot foresee
everything: other jobs write too, estimates are estimates, and small files (tables,
figures, indexes) are never checked. Without this, ``OSError: [Errno 28] No space left
on device`` surfaced from deep inside NumPy, zipfile or matplotlib, in chained
tracebacks that named the file only in a source line. Writers turn it into
:class:`DiskFull`, whose message names the file being written, the bytes it needed (or,
where that is not known in advance, how many were written when the disk filled), the
bytes free, and what became of the partial output. Exceeded quotas (``EDQUOT``) count as
a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator

from dimcollapse.diskspace import InsufficientSpace, free_bytes, human_bytes

#: errno values that mean "no room left for this write".
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class DiskFull(InsufficientSpace):
    """The file system filled up (or a quota ran out) while a file was being written."""


def is_disk_full(err: BaseException) -> bool:
    """An ``OSError`` that says the disk or the quota is full (not yet a :class:`DiskFull`).

    NumPy's ``tofile`` (what ``np.save`` into a file calls) reports the short write of a
    full disk without an errno, as ``N requested and M written``: that counts too.
    """
    if not isinstance(err, OSError) or isinstance(err, DiskFull):
        return False
    return err.errno in FULL or (err.errno is None and _SHORT_WRITE.fullmatch(str(err)) is not None)


def disk_full_message(path: str | os.PathLike[str], err: OSError, *, need: int | None, written: int,
                      kept: str) -> str:
    """``<path>: disk full (…) while writing it: it needs about N (… bytes), F (… bytes) are
    free there; <kept>; free space or point the output at a larger disk``."""
    if need is not None and need > 0:
        size = f"it needs about {human_bytes(need)} ({need} bytes)"
    else:
        size = f"it needs more than the {human_bytes(written)} ({written} bytes) written when the disk filled"
    free = free_bytes(path)
    return (f"{path}: disk full ({os.strerror(err.errno or errno.ENOSPC)}) while writing it: {size}, "
            f"{human_bytes(free)} ({free} bytes) free there; {kept}; free space or point the output at a larger disk")


@contextlib.contextmanager
def naming_a_full_disk(path: str | os.PathLike[str], *, need: int | None = None,
                       written: Callable[[], int] = lambda: 0, undo: Callable[[], object] = lambda: None,
                       kept: str) -> Iterator[None]:
    """Turn a full disk inside the block into :class:`DiskFull` about ``path``.

    For writers that do not go through :func:`dimcollapse.atomic.atomic_path` (which does
    this itself): ``need`` is the size of what the block writes, when known; ``written()``
    how much of it reached the disk; ``undo()`` removes the torn part (before the free
    space is measured); ``kept`` says what becomes of the rest.
    """
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        size = written()
        undo()
        raise DiskFull(disk_full_message(path, err, need=need, written=size, kept=kept)) from err
