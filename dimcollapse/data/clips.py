"""Decode once: the uint8 clip cache and the torch data layer that feeds extractors.

Decoding is the bottleneck of feature extraction, and several methods share one protocol
(every Slow R50 of the paper sees the same ``paper`` clips). :func:`build_clip_cache`
decodes a dataset once into a memory-mapped store of the *selected* frames, and every
method's :class:`ClipDataset` reads from it.

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

Before writing, :func:`build_clip_cache` estimates the bytes it needs from the manifest's
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

It is built in ``.<name>.partial`` next to it (progress appended per row, so an
interrupted build resumes where it stopped) and renamed into place at the end.

A cache whose files are torn or corrupt all the same (:class:`CacheUnreadable`: a disk
fault, a partial copy) is moved to ``quarantine/`` beside it by the job that meets it,
never deleted (:func:`quarantine_cache`). An extraction job then decodes its clips to the
very frames the cache would hold (:func:`open_clip_dataset`), so its features equal a
clean run's byte for byte. The marker stays until the run ends (Snakemake checks that
every job's inputs exist); when the next run starts,
:func:`~dimcollapse.data.cache_files.drop_stale_marker` removes the marker of a missing or
damaged cache, so the workflow builds it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dimcollapse.atomic import write_json
from dimcollapse.disk_full import naming_a_full_disk
from dimcollapse.diskspace import ensure_free_space
from dimcollapse.failures import Failure, VideoError, VideoExcluded
from dimcollapse.data.cache_files import (
    DATA_FILE, INDEX_FILE, META_FILE, PROGRESS_FILE, CacheUnreadable, read_json,
)
from dimcollapse.data.manifest import Row, as_rows
from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol, resolve_protocol
from dimcollapse.data.slowfast import torchvision_size
from dimcollapse.data.pyav_source import STAGE, scale_frames
from dimcollapse.data.video import decode_row
from dimcollapse.data.views import frames_to_views, pack_frames, scaled_size
from dimcollapse.quarantine import QUARANTINE, move_aside

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # 3: per-row ``source`` digests, so that a rebuild can reuse unchanged rows
ON_ERROR = ("skip", "fail")


# ------------------------------------------------------------------------------ rows
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


# ------------------------------------------------------------------------------ cache
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
    def from_json(cls, d: Mapping[str, Any]) -> "CacheEntry":
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
        if size != meta["data_bytes"]:
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


def _loader_worker_init(worker_id: int) -> None:
    _worker_init()


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
        failures = previous.failures()
        broken = [e for e in previous.entries if not e.ok and not e.excluded]
        if broken and on_error == "fail":
            raise VideoError(broken[0].path, STAGE, broken[0].error)
        if progress:
            progress(len(rows), len(rows))
        log.info("%s: clip cache is up to date: %d rows reused, 0 decoded", final, len(rows))
        return CacheBuild(failures, reused=len(rows), decoded=0, resumed=0)

    partial = final.parent / f".{final.name}.partial"
    need, unknown = estimate_cache_bytes(rows, p)
    if unknown:
        log.warning("%s: %d of %d manifest rows have no frame size; the disk estimate counts them at "
                    "the largest size", final, unknown, len(rows))
    start_meta = {"format": CACHE_FORMAT, "sampling_key": p.sampling_key, "rows_fingerprint": fingerprint}
    done: dict[int, CacheEntry] = {}
    meta_path = partial / META_FILE
    resumable = meta_path.is_file() and _same_build(meta_path, start_meta)
    written_before = (partial / DATA_FILE).stat().st_size if resumable and (partial / DATA_FILE).exists() else 0
    # Before anything is written: a full disk should stop the build with a clear message.
    # Reused rows are copied, so the whole new cache needs room beside the previous one.
    ensure_free_space(final, need - written_before, what=f"the clip cache of {len(rows)} videos")
    if resumable:
        done = _read_progress(partial, rows)
    else:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write_json(meta_path, {**start_meta, "complete": False})
    data_path = partial / DATA_FILE
    with open(data_path, "ab"):
        pass
    written = data_path.stat().st_size
    done = {i: e for i, e in done.items() if e.offset + e.nbytes <= written}  # data that reached the file
    committed = max((e.offset + e.nbytes for e in done.values()), default=0)
    os.truncate(data_path, committed)
    if done:
        log.info("%s: resuming clip cache build, %d of %d rows already written", final, len(done), len(rows))
    # Rewrite the progress log with only the committed rows (drops a torn tail).
    with open(partial / PROGRESS_FILE, "w") as fh:
        for i, e in sorted(done.items()):
            fh.write(json.dumps({"i": i, **e.to_json()}) + "\n")

    entries: dict[int, CacheEntry] = dict(done)
    reusable = _reusable_entries(previous)
    reuse = {i: reusable[r.source] for i, r in enumerate(rows) if i not in done and r.source in reusable}
    tasks = [(i, r, p) for i, r in enumerate(rows) if i not in done and i not in reuse]
    log.info("%s: %d rows reused from the previous clip cache, %d to decode, %d already written",
             final, len(reuse), len(tasks), len(done))
    offset = committed
    full_disk = naming_a_full_disk(data_path, need=need - committed, written=lambda: data_path.stat().st_size - committed,
                                   undo=lambda: os.truncate(data_path, offset),  # the torn row
                                   kept=f"the rows written so far stay in {partial}, where the next run resumes")
    with full_disk, open(data_path, "r+b") as data, open(partial / PROGRESS_FILE, "a") as prog:
        data.seek(offset)

        def commit(i: int, entry: CacheEntry) -> None:
            entries[i] = entry
            prog.write(json.dumps({"i": i, **entry.to_json()}) + "\n")
            prog.flush()
            if progress:
                progress(len(entries), len(rows))

        if reuse and previous is not None:
            with open(previous.dir / DATA_FILE, "rb") as old:
                # in the old file's order: one sequential read, and the same bytes when every row is reused
                for i, old_entry in sorted(reuse.items(), key=lambda item: item[1].offset):
                    old.seek(old_entry.offset)
                    _copy_bytes(old, data, old_entry.nbytes, previous.dir / DATA_FILE)
                    data.flush()
                    row = rows[i]
                    commit(i, CacheEntry(row.id, row.path, True, old_entry.short, offset, old_entry.shape, "",
                                         source=row.source))
                    offset += old_entry.nbytes
        results = _run(tasks, workers)
        for i, frames, short, error, excluded in results:
            row = rows[i]
            if frames is None:
                if on_error == "fail" and not excluded:
                    results.close()  # stop the worker pool before raising
                    raise VideoError(row.path, STAGE, error)
                entry = CacheEntry(row.id, row.path, False, False, 0, (0, 0, 0, 0), error, excluded, row.source)
            else:
                frames = np.ascontiguousarray(frames, dtype=np.uint8)
                data.write(frames.tobytes())
                data.flush()
                entry = CacheEntry(row.id, row.path, True, bool(short), offset, tuple(frames.shape), "",
                                   source=row.source)
                offset += frames.nbytes
            commit(i, entry)
        os.fsync(data.fileno())

    ordered = [entries[i] for i in range(len(rows))]
    build = CacheBuild([e.failure() for e in ordered if not e.ok], reused=len(reuse), decoded=len(tasks),
                       resumed=len(done))
    write_json(partial / INDEX_FILE, [e.to_json() for e in ordered])
    (partial / PROGRESS_FILE).unlink()
    write_json(meta_path, {**start_meta, "complete": True, "protocol": p.to_dict(), "rows": len(rows),
                           "data_bytes": offset, **build.summary()})
    _replace_dir(partial, final)
    log.info("%s: clip cache built: %d rows reused, %d decoded, %d resumed", final, build.reused, build.decoded,
             build.resumed)
    if build.failures:
        first = build.failures[0]
        log.warning("%s: %d of %d videos failed to decode and are excluded (first: %s: %s)",
                    final, len(build.failures), len(rows), first.path, first.error)
    return build


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


def _run(tasks: list[tuple[int, Row, Protocol]], workers: int) -> Iterator[tuple[int, np.ndarray | None, bool, str, bool]]:
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


# ---------------------------------------------------------------------------- dataset
OUTPUTS = ("views", "frames")


class ClipDataset(Dataset):
    """Every manifest row's clip, from the clip cache or decoded on the fly.

    Item ``i`` is a dict: ``index`` (row position), ``ok``, ``short`` and ``error`` (``""``
    when ok), and the clip as ``output`` says:

    * ``"views"`` (default): ``video``, the float32 model input ``(views,
      *protocol.clip_shape)`` (1 view for ``paper`` and ``dpc``, 30 for ``slowfast_test``;
      an empty tensor when the row failed);
    * ``"frames"``: ``frames``, the uint8 ``K×H×W×3`` frames the views are made of
      (:func:`~dimcollapse.data.views.frames_to_views`; ``None`` when the row failed), and
      ``protocol``. Extraction reads these: a quarter of the bytes, and the views are
      assembled on the extraction device (:func:`~dimcollapse.data.views.batch_views`).

    A failing video never raises: it comes back with ``ok=False`` and the error message,
    so a DataLoader worker survives it.

    ``as_cached`` (without a cache) decodes each clip to the frames a clip cache would
    store (:func:`cache_frames`), so the views equal those read from a cache exactly.
    """

    def __init__(
        self,
        rows: Any,
        protocol: str | Protocol = "paper",
        *,
        cache: ClipCache | str | os.PathLike[str] | None = None,
        as_cached: bool = False,
        output: str = "views",
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.rows = as_rows(rows)
        self.protocol = resolve_protocol(protocol)
        self.as_cached = as_cached
        self.output = output
        if cache is not None and not isinstance(cache, ClipCache):
            cache = ClipCache(cache)
        if cache is not None:
            cache.check_compatible(self.rows, self.protocol)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def frames(self, i: int) -> tuple[np.ndarray, bool]:
        """Row ``i``'s uint8 frames and its short flag (raises for a failed row)."""
        if self.cache is not None:
            return self.cache.frames(i), self.cache.entries[i].short
        frames, short = decode_row(self.rows[i], self.protocol)
        return (cache_frames(frames, self.protocol) if self.as_cached else frames), short

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": i, "ok": True, "short": False, "error": ""}
        try:
            frames, short = self.frames(i)
            item["short"] = bool(short)
            if self.output == "frames":
                return item | {"frames": frames, "protocol": self.protocol}
            return item | {"video": frames_to_views(frames, self.protocol)}
        except Exception as err:  # noqa: BLE001 - reported per item, never kills the loader
            empty = {"frames": None, "protocol": self.protocol} if self.output == "frames" else {"video": torch.empty(0)}
            return item | {"ok": False, "short": False, "error": _message(err)} | empty


def open_clip_dataset(rows: Any, protocol: Protocol, cache_dir: str | os.PathLike[str] | None,
                      output: str = "views") -> ClipDataset:
    """The dataset of ``rows`` (items as ``output`` says): read from the clip cache at
    ``cache_dir`` (if any).

    A damaged or vanished cache does not stop the job: it is quarantined
    (:func:`quarantine_cache`) and the clips are decoded to the frames it would hold.
    """
    if cache_dir is None:
        return ClipDataset(rows, protocol, output=output)
    try:
        return ClipDataset(rows, protocol, cache=cache_dir, output=output)
    except (CacheUnreadable, FileNotFoundError) as err:
        quarantine_cache(cache_dir, str(err), "this job decodes its clips to the frames the cache would hold "
                         "(same features, slower); the next run of the workflow builds it again")
        return ClipDataset(rows, protocol, as_cached=True, output=output)


def _message(err: BaseException) -> str:
    if isinstance(err, VideoError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch the ok items; failed ones are reported beside the tensor batch, never inside it.

    Returns ``index`` (long, rows of the clips), the clips — ``video`` (``B×views×...``
    float32; empty when every item failed) for ``views`` items, ``frames`` (a
    :class:`~dimcollapse.data.views.FrameBatch`; ``None`` when every item failed) for
    ``frames`` items —, ``short`` (bool), ``failed_index`` (long) and ``failed_error``
    (list of messages).
    """
    ok = [it for it in items if it["ok"]]
    bad = [it for it in items if not it["ok"]]
    batch: dict[str, Any] = {
        "index": torch.tensor([it["index"] for it in ok], dtype=torch.long),
        "short": torch.tensor([it["short"] for it in ok], dtype=torch.bool),
        "failed_index": torch.tensor([it["index"] for it in bad], dtype=torch.long),
        "failed_error": [it["error"] for it in bad],
    }
    if items and "frames" in items[0]:
        batch["frames"] = pack_frames([it["frames"] for it in ok], ok[0]["protocol"]) if ok else None
    else:
        batch["video"] = torch.stack([it["video"] for it in ok]) if ok else torch.empty(0)
    return batch


def make_loader(
    dataset: ClipDataset,
    *,
    batch_size: int = 16,
    workers: int = 2,
    pin_memory: bool = False,
    persistent_workers: bool = True,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A sequential DataLoader over ``dataset`` (row order kept, so feature row i = manifest row i).

    ``pin_memory``: copy each batch into page-locked memory (for a fast, asynchronous copy
    to a GPU; extraction asks for it on CUDA). Workers run one torch thread each
    (decoding parallelism comes from the workers; PyAV uses SLICE threading only).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=_loader_worker_init if workers > 0 else None,
    )
