"""Decode once: the uint8 clip cache of a dataset and one sampling.

Decoding is the bottleneck of feature extraction, and several methods share one protocol
(every Slow R50 of the paper sees the same ``paper`` clips). :func:`update_clip_cache`
decodes a dataset once into a memory-mapped store of the *selected* frames, and every
method's :class:`~dimcollapse.data.clips.ClipDataset` reads from it (:class:`ClipCache`).

The cache stores the selected frames **scaled to the protocol's short side** (uint8),
before cropping and normalisation, so a clip costs ``T·h·w·3`` bytes at the scaled size
``h×w`` (2.8 MB for 8 frames of 256×455) whatever the source resolution (a source smaller
than that is stored at its own size, exactly), and a crop or
normalisation change reuses it (the store depends only on :attr:`Protocol.sampling_key`,
which covers the scale but not the crop). Where the original pipeline scales in uint8
already (DPC's frame dumps, SlowFast's ``torchvision`` backend, ``resize="ffmpeg"``) the
cached clip equals the on-the-fly clip bit for bit. Where it scales in float (``paper``,
SlowFast's ``pyav`` backend), the cache rounds the scaled frames to uint8: the model input
then differs from :func:`~dimcollapse.data.video.load_clip` by at most half a grey level
(measured feature error in the README). Set ``extraction.clip_cache: false`` for
bit-exact features.

A rebuild (new or changed videos, a dataset copied to another root) reuses the previous
complete cache of the same sampling: the frames of every row whose video content (the
manifest's ``content`` hash), id, duration and fps are unchanged are copied from it, and
only the other rows are decoded. The new cache is still built beside the old one and
swapped in by one rename, so readers never see a mix. The cache directory is therefore not
a Snakemake output (Snakemake deletes outputs before a rerun); the rule declares the
marker ``<cache>.cache.json`` (:func:`marker_path`), which records what the last build
reused and decoded.

Before writing, :func:`update_clip_cache` estimates the bytes it needs from the manifest's
frame sizes and stops with :class:`~dimcollapse.diskspace.InsufficientSpace` when the
file system holds less.

Layout of a cache directory (complete when, and only when, it exists under its final name):

``frames.u8``
    The frames of every decoded row, concatenated (``K×H×W×3`` uint8, C order; ragged:
    each row has its own ``H×W``).
``index.json``
    One entry per manifest row, in manifest order: ``id, path, ok, short, offset`` (bytes
    into ``frames.u8``), ``shape`` (``[K, H, W, 3]``), ``error``, ``source`` (digest of
    what decided the frames: id, content, duration, fps; empty without a content hash).
``meta.json``
    Format version, the protocol (``Protocol.to_dict()``), its ``sampling_key``, the row
    fingerprint (ids, paths, contents, durations, fps), the total size and how many rows
    the build ``reused`` from the previous cache and ``decoded``.

It is built in ``.<name>.partial`` next to it (:class:`_PartialCache`: progress appended
per row, so an interrupted build resumes where it stopped) and renamed into place at the end.

A cache whose files are torn or corrupt all the same (:class:`CacheUnreadable`: a disk
fault, a partial copy) is moved to ``quarantine/`` beside it by the job that meets it,
never deleted (:func:`quarantine_cache`). An extraction job then decodes its clips to the
very frames the cache would hold (:func:`~dimcollapse.data.clips.open_clip_dataset`), so its features equal a
clean run's byte for byte. The marker stays until the run ends (Snakemake checks that
every job's inputs exist); when the next run starts,
:func:`~dimcollapse.data.cache_files.drop_stale_marker` removes the marker of a missing or
damaged cache, so the workflow builds it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimcollapse.atomic import write_json
from dimcollapse.data.cache_files import DATA_FILE, INDEX_FILE, META_FILE, PROGRESS_FILE, CacheUnreadable, read_json
from dimcollapse.data.manifest import Row, as_rows
from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol, resolve_protocol
from dimcollapse.data.pyav_source import STAGE, scale_frames
from dimcollapse.data.slowfast import torchvision_size
from dimcollapse.data.video import decode_row
from dimcollapse.data.views import scaled_size
from dimcollapse.disk_full import naming_a_full_disk
from dimcollapse.diskspace import ensure_free_space
from dimcollapse.failures import Failure, VideoError, VideoExcluded
from dimcollapse.quarantine import QUARANTINE, move_aside

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 3: per-row ``source`` digests, so that a rebuild can reuse unchanged rows
ON_ERROR = ("skip", "fail")


def rows_fingerprint(rows: Sequence[Row]) -> str:
    """Changes when any row's id, path, content, duration or fps changes (they decide the clips)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.id}\t{r.path}\t{r.content or ''}\t{r.duration!r}\t{r.fps!r}\n".encode())
    return h.hexdigest()


def cache_frames(frames: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The frames as the clip cache stores them: scaled to the protocol's size (uint8),
    unless the decoded frames are no larger than that (a source below the side size, or
    frames the decoder already scaled): those are stored as they are, exactly."""
    h, w = frames.shape[1:3]
    nh, nw = scaled_size(h, w, protocol)
    return frames if h * w <= nh * nw else scale_frames(frames, protocol)


def stored_shape(row: Row, protocol: Protocol) -> tuple[int, int, int, int] | None:
    """Shape of the frames the clip cache stores for ``row`` (``None`` without a frame size).

    Frames per video × the smaller of the source size and the protocol's scaled size (the
    decoder's own rounding), as :func:`cache_frames` stores them.
    """
    if row.width is None or row.height is None:
        return None
    slowfast_area = isinstance(protocol, SlowProtocol) and protocol.backend == "torchvision"
    if slowfast_area:
        h, w = torchvision_size(row.height, row.width, protocol.side_size)
    else:
        h, w = scaled_size(row.height, row.width, protocol)
    decoder_scales = isinstance(protocol, DpcProtocol) or slowfast_area or protocol.resize == "ffmpeg"
    if row.height * row.width <= h * w and not decoder_scales:
        h, w = row.height, row.width
    return (protocol.windows * protocol.frames_per_window, h, w, 3)


def estimate_cache_bytes(rows: Sequence[Row], protocol: Protocol) -> tuple[int, int]:
    """Bytes the clip cache of ``rows`` will hold, and how many rows had no frame size.

    Rows without a size (manifests written before the probe recorded it) count at the
    largest size among the others.
    """
    sizes = [stored_shape(r, protocol) for r in rows]
    known = [int(np.prod(s)) for s in sizes if s is not None]
    unknown = len(sizes) - len(known)
    return sum(known) + unknown * max(known, default=0), unknown


@dataclass(frozen=True)
class CacheEntry:
    """Index record of one manifest row in a clip cache."""

    id: str
    path: str
    ok: bool
    short: bool
    offset: int
    shape: tuple[int, ...]
    error: str
    excluded: bool = False  # left out by a protocol rule (min_frames), not broken
    source: str = ""  # Row.source of the row these frames were decoded from

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) if self.ok else 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CacheEntry:
        return cls(str(d["id"]), str(d["path"]), bool(d["ok"]), bool(d["short"]), int(d["offset"]),
                   tuple(int(x) for x in d["shape"]), str(d["error"]), bool(d.get("excluded", False)),
                   str(d.get("source", "")))

    def failure(self) -> Failure:
        return Failure(self.id, self.path, STAGE, self.error)


class ClipCache:
    """Read side of a complete clip cache directory (memory-mapped, fork/pickle safe)."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cache_dir)
        meta_path = self.dir / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.dir}: not a complete clip cache (no {META_FILE})")
        meta = read_json(meta_path)
        if meta.get("format") != CACHE_FORMAT or not meta.get("complete"):
            raise ValueError(f"{self.dir}: unsupported or incomplete clip cache (format {meta.get('format')!r})")
        self.meta = meta
        self.protocol = Protocol.from_dict(meta["protocol"])
        try:
            self.entries = [CacheEntry.from_json(e) for e in read_json(self.dir / INDEX_FILE)]
        except (KeyError, TypeError, ValueError) as err:
            raise CacheUnreadable(f"{self.dir / INDEX_FILE}: not a clip cache index ({err})") from err
        data = self.dir / DATA_FILE
        size = data.stat().st_size if data.is_file() else None
        if size is None or size != meta["data_bytes"]:
            raise CacheUnreadable(f"{data}: {'missing' if size is None else f'{size} bytes'}, the cache's "
                                  f"{META_FILE} says {meta['data_bytes']}")
        if len(self.entries) != meta.get("rows", len(self.entries)):
            raise CacheUnreadable(f"{self.dir / INDEX_FILE}: {len(self.entries)} rows, {META_FILE} says {meta['rows']}")
        if any(e.offset + e.nbytes > size for e in self.entries):
            raise CacheUnreadable(f"{self.dir / INDEX_FILE}: names frames beyond the end of {data}")
        self._mm: np.memmap | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mm"], state["_pid"] = None, -1  # each process maps the file itself
        return state

    def frames(self, i: int) -> np.ndarray:
        """``K×H×W×3`` uint8 frames of row ``i``, mapped from disk (raises if that row failed)."""
        e = self.entries[i]
        if not e.ok:
            raise VideoError(e.path, STAGE, e.error)
        if self._mm is None or self._pid != os.getpid():
            # copy-on-write: writable views (torch wants them) that never change the file
            self._mm = np.memmap(self.dir / DATA_FILE, dtype=np.uint8, mode="c")
            self._pid = os.getpid()
        return self._mm[e.offset:e.offset + e.nbytes].reshape(e.shape)

    def failures(self) -> list[Failure]:
        return [e.failure() for e in self.entries if not e.ok]

    def check_compatible(self, rows: Sequence[Row], protocol: Protocol) -> None:
        """Raise unless this cache holds exactly ``rows`` decoded as ``protocol`` decodes them."""
        if self.protocol.sampling_key != protocol.sampling_key:
            raise ValueError(
                f"{self.dir}: cache was built for sampling {self.protocol.sampling_key} "
                f"({self.protocol.name}), not {protocol.sampling_key} ({protocol.name})"
            )
        if self.meta["rows_fingerprint"] != rows_fingerprint(rows):
            raise ValueError(f"{self.dir}: cache was built from other manifest rows; rebuild it")


def quarantine_cache(cache_dir: str | os.PathLike[str], reason: str,
                     then: str = "the next run of the workflow builds it again") -> Path | None:
    """Move a damaged cache directory to ``quarantine/`` beside it, with a warning naming
    why and what happens ``then``.

    Returns where it went (``None`` when it was already gone). Its marker is left to
    :func:`~dimcollapse.data.cache_files.drop_stale_marker`: a running workflow needs it
    until its jobs have started.
    """
    cache_dir = Path(cache_dir)
    moved = move_aside(cache_dir, cache_dir.parent / QUARANTINE)
    where = f"moved to {moved}" if moved is not None else "another job moved it aside"
    log.warning("clip cache %s is unreadable (%s); %s; %s", cache_dir, reason, where, then)
    return moved


def _read_progress(partial: Path, rows: Sequence[Row]) -> dict[int, CacheEntry]:
    """Committed rows of an interrupted build (a torn last line is ignored)."""
    done: dict[int, CacheEntry] = {}
    progress = partial / PROGRESS_FILE
    if not progress.exists():
        return done
    for line in progress.read_text().splitlines():
        try:
            rec = json.loads(line)
            i, entry = int(rec["i"]), CacheEntry.from_json(rec)
        except (ValueError, KeyError, TypeError):
            break
        if 0 <= i < len(rows) and entry.id == rows[i].id and entry.ok:
            done[i] = entry
    return done


def _decode_task(task: tuple[int, Row, Protocol]) -> tuple[int, np.ndarray | None, bool, str, bool]:
    """Decode one row into the frames the cache stores: ``(i, frames, short, error, excluded)``."""
    i, row, protocol = task
    try:
        frames, short = decode_row(row, protocol)
        return i, cache_frames(frames, protocol), short, "", False
    except VideoExcluded as err:
        return i, None, False, err.message, True
    except VideoError as err:
        return i, None, False, err.message, False
    except Exception as err:  # a bug or an unexpected library error must not stop the build
        return i, None, False, f"{type(err).__name__}: {err}", False


def _worker_init() -> None:
    torch.set_num_threads(1)


@dataclass(frozen=True)
class CacheBuild:
    """Outcome of :func:`update_clip_cache`: the failures (stage ``decode``) and where each
    row's frames came from in this call."""

    failures: list[Failure]
    reused: int  # rows whose frames were taken from the previous complete cache
    decoded: int  # rows decoded in this call (including ones that failed)
    resumed: int  # rows an interrupted build had already written

    def summary(self) -> dict[str, int]:
        return {"reused": self.reused, "decoded": self.decoded, "resumed": self.resumed,
                "failed": len(self.failures)}


def build_clip_cache(
    rows: Any,
    protocol: str | Protocol,
    cache_dir: str | os.PathLike[str],
    *,
    workers: int,
    on_error: str = "skip",
    progress: Callable[[int, int], None] | None = None,
) -> list[Failure]:
    """:func:`update_clip_cache`, returning only the failures."""
    return update_clip_cache(rows, protocol, cache_dir, workers=workers, on_error=on_error,
                             progress=progress).failures


def update_clip_cache(
    rows: Any,
    protocol: str | Protocol,
    cache_dir: str | os.PathLike[str],
    *,
    workers: int,
    on_error: str = "skip",
    progress: Callable[[int, int], None] | None = None,
) -> CacheBuild:
    """Bring ``cache_dir`` up to date with the manifest rows, decoding only what it lacks.

    ``rows``: manifest records with ``id, path, duration, fps`` (and ``content`` for reuse;
    a DataFrame is fine). ``workers``: decoding processes (0 decodes in this process).
    ``on_error``: ``"skip"`` records failing videos and goes on (a warning counts them);
    ``"fail"`` raises the first :class:`VideoError`, naming the file. ``progress(done,
    total)`` is called per row.

    A complete cache built from the same rows and sampling is kept as it is. Otherwise a
    new cache is built: rows whose :attr:`Row.source` matches an ok row of the previous
    cache (same sampling and format) get its bytes copied, the others are decoded. An
    interrupted build resumes from its ``.partial`` directory; the final directory only
    ever appears complete (rename at the end).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    p = resolve_protocol(protocol)
    rows = as_rows(rows)
    final = Path(cache_dir)
    fingerprint = rows_fingerprint(rows)
    previous = _previous_cache(final, p)
    if previous is not None and previous.meta["rows_fingerprint"] == fingerprint:
        return _up_to_date(previous, final, len(rows), on_error, progress)

    need, unknown = estimate_cache_bytes(rows, p)
    if unknown:
        log.warning("%s: %d of %d manifest rows have no frame size; the disk estimate counts them at "
                    "the largest size", final, unknown, len(rows))
    partial = _PartialCache(final, {"format": CACHE_FORMAT, "sampling_key": p.sampling_key,
                                    "rows_fingerprint": fingerprint}, rows)
    # Before anything is written: a full disk should stop the build with a clear message.
    # Reused rows are copied, so the whole new cache needs room beside the previous one.
    ensure_free_space(final, need - partial.bytes_on_disk(), what=f"the clip cache of {len(rows)} videos")
    done = partial.start()
    if done:
        log.info("%s: resuming clip cache build, %d of %d rows already written", final, len(done), len(rows))
    reusable = _reusable_entries(previous)
    reuse = {i: reusable[r.source] for i, r in enumerate(rows) if i not in done and r.source in reusable}
    tasks = [(i, r, p) for i, r in enumerate(rows) if i not in done and i not in reuse]
    log.info("%s: %d rows reused from the previous clip cache, %d to decode, %d already written",
             final, len(reuse), len(tasks), len(done))
    with partial.appending(need, progress) as append:
        if reuse and previous is not None:
            append.copy(previous, reuse)
        results = _run(tasks, workers)
        for i, frames, short, error, excluded in results:
            if frames is not None:
                append.frames(i, frames, short)
            elif on_error == "fail" and not excluded:
                results.close()  # stop the worker pool before raising
                raise VideoError(rows[i].path, STAGE, error)
            else:
                append.failure(i, error, excluded)
    failures = [partial.entries[i].failure() for i in range(len(rows)) if not partial.entries[i].ok]
    build = CacheBuild(failures, reused=len(reuse), decoded=len(tasks), resumed=len(done))
    partial.finish(p, build)
    log.info("%s: clip cache built: %d rows reused, %d decoded, %d resumed", final, build.reused, build.decoded,
             build.resumed)
    if build.failures:
        first = build.failures[0]
        log.warning("%s: %d of %d videos failed to decode and are excluded (first: %s: %s)",
                    final, len(build.failures), len(rows), first.path, first.error)
    return build


def _up_to_date(cache: ClipCache, final: Path, n_rows: int, on_error: str,
                progress: Callable[[int, int], None] | None) -> CacheBuild:
    """A complete cache of the same rows and sampling, kept as it is."""
    broken = [e for e in cache.entries if not e.ok and not e.excluded]
    if broken and on_error == "fail":
        raise VideoError(broken[0].path, STAGE, broken[0].error)
    if progress:
        progress(n_rows, n_rows)
    log.info("%s: clip cache is up to date: %d rows reused, 0 decoded", final, n_rows)
    return CacheBuild(cache.failures(), reused=n_rows, decoded=0, resumed=0)


class _PartialCache:
    """A clip cache being built in ``.<name>.partial`` beside its final place.

    Rows are committed one at a time: their frames appended to ``frames.u8``, their entry to
    the progress log (flushed), so an interrupted build of the same rows and sampling
    resumes after its last committed row (:meth:`start`). Only a complete build is renamed
    into place (:meth:`finish`), so readers never see a partial cache.
    """

    def __init__(self, final: Path, start_meta: Mapping[str, Any], rows: Sequence[Row]) -> None:
        self.final, self.rows, self.start_meta = final, rows, dict(start_meta)
        self.dir = final.parent / f".{final.name}.partial"
        self.data_path = self.dir / DATA_FILE
        self.resumable = (self.dir / META_FILE).is_file() and _same_build(self.dir / META_FILE, self.start_meta)
        self.entries: dict[int, CacheEntry] = {}
        self.offset = 0

    def bytes_on_disk(self) -> int:
        """Frame bytes an interrupted build of the same rows left: they need no new space."""
        return self.data_path.stat().st_size if self.resumable and self.data_path.exists() else 0

    def start(self) -> dict[int, CacheEntry]:
        """Resume, or start afresh; return the rows already committed.

        A committed row counts only when its bytes reached the frames file; the file is cut
        after the last of them and the progress log rewritten with only those rows (which
        drops a torn last line)."""
        if self.resumable:
            done = _read_progress(self.dir, self.rows)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            write_json(self.dir / META_FILE, {**self.start_meta, "complete": False})
            done = {}
        with open(self.data_path, "ab"):
            pass
        written = self.data_path.stat().st_size
        done = {i: e for i, e in done.items() if e.offset + e.nbytes <= written}
        self.offset = max((e.offset + e.nbytes for e in done.values()), default=0)
        os.truncate(self.data_path, self.offset)
        with open(self.dir / PROGRESS_FILE, "w") as fh:
            for i, e in sorted(done.items()):
                fh.write(json.dumps({"i": i, **e.to_json()}) + "\n")
        self.entries = dict(done)
        return done

    @contextlib.contextmanager
    def appending(self, need: int, progress: Callable[[int, int], None] | None) -> Iterator[_Appender]:
        """Open the frames file and the progress log for appending rows. A full disk in the
        block is one line naming the frames file; the torn row is cut off, the committed
        rows stay for the next run to resume from."""
        committed = self.offset
        full_disk = naming_a_full_disk(
            self.data_path, need=need - committed, written=lambda: self.data_path.stat().st_size - committed,
            undo=lambda: os.truncate(self.data_path, self.offset),  # the torn row
            kept=f"the rows written so far stay in {self.dir}, where the next run resumes")
        with full_disk, open(self.data_path, "r+b") as data, open(self.dir / PROGRESS_FILE, "a") as log_file:
            data.seek(self.offset)
            yield _Appender(self, data, log_file, progress)
            os.fsync(data.fileno())

    def finish(self, protocol: Protocol, build: CacheBuild) -> None:
        """Write the index and the complete meta, and move the cache into place."""
        ordered = [self.entries[i] for i in range(len(self.rows))]
        write_json(self.dir / INDEX_FILE, [e.to_json() for e in ordered])
        (self.dir / PROGRESS_FILE).unlink()
        write_json(self.dir / META_FILE, {**self.start_meta, "complete": True, "protocol": protocol.to_dict(),
                                          "rows": len(self.rows), "data_bytes": self.offset, **build.summary()})
        _replace_dir(self.dir, self.final)


class _Appender:
    """Commits rows to a :class:`_PartialCache` (see :meth:`_PartialCache.appending`)."""

    def __init__(self, cache: _PartialCache, data: Any, log_file: Any,
                 progress: Callable[[int, int], None] | None) -> None:
        self.cache, self.data, self.log_file, self.progress = cache, data, log_file, progress

    def _commit(self, i: int, entry: CacheEntry) -> None:
        self.cache.entries[i] = entry
        self.log_file.write(json.dumps({"i": i, **entry.to_json()}) + "\n")
        self.log_file.flush()
        if self.progress:
            self.progress(len(self.cache.entries), len(self.cache.rows))

    def copy(self, previous: ClipCache, reuse: Mapping[int, CacheEntry]) -> None:
        """The frames of rows ``reuse`` (row -> its entry in ``previous``), copied from the
        previous cache in its file's order: one sequential read, and the same bytes when
        every row is reused."""
        rows = self.cache.rows
        with open(previous.dir / DATA_FILE, "rb") as old:
            for i, old_entry in sorted(reuse.items(), key=lambda item: item[1].offset):
                old.seek(old_entry.offset)
                _copy_bytes(old, self.data, old_entry.nbytes, previous.dir / DATA_FILE)
                self.data.flush()
                entry = CacheEntry(rows[i].id, rows[i].path, True, old_entry.short, self.cache.offset,
                                   old_entry.shape, "", source=rows[i].source)
                self._commit(i, entry)
                self.cache.offset += old_entry.nbytes

    def frames(self, i: int, frames: np.ndarray, short: bool) -> None:
        """Row ``i``'s decoded frames."""
        row = self.cache.rows[i]
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        self.data.write(frames.tobytes())
        self.data.flush()
        self._commit(i, CacheEntry(row.id, row.path, True, bool(short), self.cache.offset, tuple(frames.shape), "",
                                   source=row.source))
        self.cache.offset += frames.nbytes

    def failure(self, i: int, error: str, excluded: bool) -> None:
        """Row ``i`` could not be decoded (or the protocol leaves it out)."""
        row = self.cache.rows[i]
        self._commit(i, CacheEntry(row.id, row.path, False, False, 0, (0, 0, 0, 0), error, excluded, row.source))


def _previous_cache(final: Path, protocol: Protocol) -> ClipCache | None:
    """The complete cache at ``final`` when it holds frames of ``protocol``'s sampling."""
    try:
        cache = ClipCache(final)
    except CacheUnreadable as err:
        quarantine_cache(final, str(err), "this build replaces it")
        return None
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return cache if cache.protocol.sampling_key == protocol.sampling_key else None


def _reusable_entries(previous: ClipCache | None) -> dict[str, CacheEntry]:
    """Ok rows of the previous cache by their source digest (failed rows are decoded again:
    a failure may have been transient)."""
    if previous is None:
        return {}
    return {e.source: e for e in previous.entries if e.ok and e.source}


def _copy_bytes(src: Any, dst: Any, n: int, name: Path, chunk: int = 1 << 24) -> None:
    """Copy ``n`` bytes from the current position of ``src`` to ``dst``."""
    while n > 0:
        buf = src.read(min(chunk, n))
        if not buf:
            raise ValueError(f"{name}: ends before the bytes its index names; delete the cache directory")
        dst.write(buf)
        n -= len(buf)


def _same_build(meta_path: Path, start_meta: Mapping[str, Any]) -> bool:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return all(meta.get(k) == v for k, v in start_meta.items())


def _run(
    tasks: list[tuple[int, Row, Protocol]], workers: int
) -> Generator[tuple[int, np.ndarray | None, bool, str, bool], None, None]:
    if workers == 0 or len(tasks) <= 1:
        for t in tasks:
            yield _decode_task(t)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(workers, len(tasks)), initializer=_worker_init) as pool:
        yield from pool.imap_unordered(_decode_task, tasks, chunksize=1)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place; an older version is removed only afterwards."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old)
