"""Content hashes of video files, cached by (path, size, mtime) so unchanged files are read once.

The feature store keys clips by what the video *contains*, not by its name or mtime:
``touch`` on a whole dataset, or a copy that does not keep mtimes, must not recompute
anything. The hash is BLAKE2b (128-bit digest) of the file's bytes, streamed in 1 MiB
blocks (about 1 GB/s per core; hashlib releases the GIL, so a thread pool scales).

The hashes are computed at the manifest stage, once per dataset, and stored in the
manifest's ``content`` column: every extraction job of every model instance and shard
then reads them for free, and the manifest stays the single contract between the input
side and the features (data flows one way).

The cache is a directory of small immutable JSON files, each published by an atomic
rename under a unique name: several manifest jobs (or Slurm jobs on a shared file
system) can add to it at once without a lock, and a kill leaves at most a ``.tmp``
file that readers ignore. A stale entry is harmless: a changed file has a new size or
mtime and is hashed again, and an entry made by other hashing code (this module's
source, :data:`HASHING_CODE`) is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dimcollapse.atomic import unique_name, write_json
from dimcollapse.code_versions import digest_files

log = logging.getLogger(__name__)

#: Version of the code that computes the digests: the digest of this module's source. An
#: edit here may change what a digest means, so cached digests of other code are not reused.
HASHING_CODE = digest_files([Path(__file__).resolve()], root=Path(__file__).resolve().parent)

_BLOCK = 1 << 20
#: Merge the cache's files into one when a run finds at least this many.
COMPACT_AT = 16


def file_digest(path: str | os.PathLike[str]) -> str:
    """Hex BLAKE2b-128 of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: str) -> str:
    """What a cached digest is valid for: the file's size and mtime, and the hashing code."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{HASHING_CODE}"


class ContentHashCache:
    """``{absolute path: (size:mtime_ns:hashing code, digest)}`` kept in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self._files: list[Path] = []
        self.entries: dict[str, tuple[str, str]] = {}
        if self.dir.is_dir():
            self._files = sorted(self.dir.glob("*.json"))
            for f in self._files:
                try:
                    self.entries.update({k: tuple(v) for k, v in json.loads(f.read_text()).items()})
                except (OSError, ValueError) as err:  # removed by a concurrent compaction, or damaged
                    log.warning("content hash cache: ignoring %s (%s)", f, err)

    def digests(self, paths: Sequence[str], workers: int = 1) -> list[str]:
        """Digests of ``paths`` (absolute), reading only files whose size or mtime changed.

        New digests are saved to the cache before returning; an unreadable file raises
        ``OSError`` naming it.
        """
        stats = [_stat_key(p) for p in paths]
        todo = sorted({p for p, s in zip(paths, stats) if self.entries.get(p, ("", ""))[0] != s})
        if todo:
            log.info("hashing the content of %d of %d videos (%d unchanged since last hashed)",
                     len(todo), len(paths), len(paths) - len(todo))
            with ThreadPoolExecutor(max(1, workers)) as pool:
                fresh = dict(zip(todo, pool.map(file_digest, todo)))
            new = {p: (_stat_key(p), fresh[p]) for p in todo}
            self.entries.update(new)
            self._save(new)
        return [self.entries[p][1] for p in paths]

    def _save(self, new: dict[str, tuple[str, str]]) -> None:
        written = self.dir / f"{unique_name('hashes')}.json"
        write_json(written, new)
        self._files.append(written)
        if len(self._files) >= COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        """Replace the files this process read or wrote by one file holding every entry.

        They are deleted only after the merged file is in place, and files that other
        processes added meanwhile are kept, so a concurrent reader or compactor never
        loses an entry (at worst it sees one twice).
        """
        merged = self.dir / f"{unique_name('hashes')}.json"
        write_json(merged, self.entries)
        for f in self._files:
            f.unlink(missing_ok=True)
        self._files = [merged]
