"""The dataset manifest: one row per usable video, in a fixed order.

``results/manifests/{dataset}.csv`` is the contract between the input side and every
method's features: feature row ``i`` belongs to manifest row ``i``. Rows are sorted by
``(label, id)`` (class index, then the path-derived id, compared as Python strings, so
the order does not depend on locale or file-system enumeration). Columns:

``id``          path relative to the dataset's video folder, POSIX, no extension
``path``        absolute path of the file
``label``       class index (int)
``label_name``  class name
``duration``    seconds, from packet timestamps (see :mod:`dimcollapse.data.probe`)
``fps``         frames / duration, the mean frame rate actually present
``frames``      number of video packets (= decoded frames for the datasets' codecs)
``rotation``    display rotation in degrees the file carries and the pipeline does not
                apply (see :mod:`dimcollapse.data.probe`); 0 in manifests written before
                it was recorded
``content``     BLAKE2b-128 of the file's bytes (see :mod:`dimcollapse.data.content`):
                the feature store keys clips by it, so renamed, copied or touched
                videos are not computed again

Videos the listing names but that are missing, and videos that fail probing, are left
out and returned as :class:`~dimcollapse.failures.Failure` records (stages
``"missing"``, ``"probe"`` and ``"read"``) for ``results/failures/{dataset}.csv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dimcollapse.atomic import atomic_path
from dimcollapse.data.datasets import LISTING_KEYS, dataset_sources, list_videos
from dimcollapse.data.probe import STAGE as PROBE_STAGE
from dimcollapse.data.probe import probe_many
from dimcollapse.errors import KnownError
from dimcollapse.failures import Failure, VideoError

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id", "path", "label", "label_name", "duration", "fps", "frames", "width", "height", "rotation", "content")
_DTYPES = {"id": str, "path": str, "label": "int64", "label_name": str,
           "duration": "float64", "fps": "float64", "frames": "int64", "width": "int64", "height": "int64",
           "rotation": "int64", "content": str}
#: Columns added after manifests were first written, with the value an older manifest means.
_LATER_COLUMNS = {"rotation": 0}
#: Failure stage of a video that probed fine but whose bytes could not be read for hashing.
READ_STAGE = "read"
ON_ERROR = ("skip", "fail")

log = logging.getLogger(__name__)


class ManifestError(KnownError, RuntimeError):
    """Videos failed and the policy is ``on_error: fail``, or too few are usable."""


def build_manifest(
    cfg: Mapping[str, Any], *, workers: int = 1, progress: bool = True, on_error: str = "skip",
    hash_cache: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, list[Failure]]:
    """List, probe, hash and order a dataset's videos.

    Content hashes are cached in ``hash_cache`` (a directory shared by every dataset;
    ``None`` hashes every file without caching).

    Returns the manifest (columns :data:`MANIFEST_COLUMNS`, sorted by ``(label, id)``)
    and the failures sorted by ``(id, stage)``. ``on_error="skip"`` leaves failed videos
    out with a warning that counts them; ``"fail"`` raises :class:`ManifestError`
    listing them.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    listing = list_videos(cfg)
    records = listing.records
    results = probe_many([r.path for r in records], workers=workers, progress=progress)
    rows, failures = [], list(listing.problems)
    for rec, result in zip(records, results):
        if isinstance(result, VideoError):
            failures.append(Failure(rec.id, rec.path, PROBE_STAGE, result.message))
        else:
            rows.append((rec.id, rec.path, rec.label, rec.label_name,
                         result.duration, result.fps, result.frames, result.width, result.height, result.rotation))
    rows, unreadable = _with_content(rows, hash_cache, workers)
    failures += unreadable
    failures.sort(key=lambda f: (f.id, f.stage, f.path))
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).astype(_DTYPES)
    if failures:
        summary = "; ".join(f"{f.id} ({f.stage}): {f.error}" for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        if on_error == "fail":
            raise ManifestError(
                f"{len(failures)} of {len(records) + len(listing.problems)} videos failed: {summary}{more}"
            )
        log.warning(
            "%d of %d videos left out of the manifest: %s%s",
            len(failures),
            len(records) + len(listing.problems),
            summary,
            more,
        )
    return frame, failures


def _with_content(
    rows: list[tuple[Any, ...]], hash_cache: str | os.PathLike[str] | None, workers: int
) -> tuple[list[tuple[Any, ...]], list[Failure]]:
    """Append each row's content hash; rows whose file cannot be read become failures."""
    from dimcollapse.data.content import ContentHashCache, file_digest

    paths = [r[1] for r in rows]
    try:
        if hash_cache is None:
            digests = [file_digest(p) for p in paths]
        else:
            digests = ContentHashCache(hash_cache).digests(paths, workers=workers)
        return [(*r, d) for r, d in zip(rows, digests)], []
    except OSError:
        pass  # find which files (rare: a file vanished or became unreadable after probing)
    kept, failures = [], []
    for r in rows:
        try:
            kept.append((*r, file_digest(r[1])))
        except OSError as err:
            failures.append(Failure(r[0], r[1], READ_STAGE, f"cannot read the file to hash it: {err}"))
    return kept, failures


def write_manifest(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write a manifest CSV atomically (floats with full precision)."""
    frame = _with_later_columns(frame)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"manifest is missing columns {missing}")
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.17g")


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, with its column types."""
    frame = pd.read_csv(path, dtype={"id": str, "path": str, "label_name": str}, keep_default_na=False)
    frame = _with_later_columns(frame)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a manifest, missing columns {missing}")
    return frame.astype(_DTYPES)


def _with_later_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns of :data:`_LATER_COLUMNS` it lacks, at their old meaning,
    in the order of :data:`MANIFEST_COLUMNS`."""
    absent = {c: v for c, v in _LATER_COLUMNS.items() if c not in frame.columns}
    if not absent:
        return frame
    frame = frame.assign(**absent)
    return frame[
        [c for c in MANIFEST_COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in MANIFEST_COLUMNS]
    ]


def fingerprint(cfg: Mapping[str, Any]) -> str:
    """A cheap hash of what a manifest depends on, for a Snakemake ``params`` entry.

    Hashes the listing keys of the config (:data:`~dimcollapse.data.datasets.LISTING_KEYS`;
    other keys, such as protocol overrides, do not change the list), then the relative name,
    size and mtime of every video file under
    the layout's video folders (or of each video a ``csv`` table names) and of the
    split/list/annotation files, using only
    ``stat`` (no video is opened or read), so it takes a fraction of a second for tens of
    thousands of files. A folder or file that does not exist yet hashes as absent
    rather than failing, so the workflow can be parsed before a dataset is generated.
    """
    sources = dataset_sources(cfg)
    digest = hashlib.sha256()
    listing_cfg = {k: cfg[k] for k in LISTING_KEYS if k in cfg}
    digest.update(json.dumps(listing_cfg, sort_keys=True, default=str).encode())
    excluded = {str(p) for p in sources.exclude_dirs}
    suffixes = tuple("." + e for e in sources.extensions)
    for directory in sources.video_dirs:
        digest.update(f"\0videos {directory}\n".encode())
        for entry in _stat_tree(directory, excluded, lambda n: n.lower().endswith(suffixes)):
            digest.update(entry)
    if sources.video_files:
        digest.update(b"\0listed videos\n")
        for path in sources.video_files:
            digest.update(_stat_line(path, str(path)))
    for meta in sources.meta_paths:
        digest.update(f"\0meta {meta}\n".encode())
        if meta.is_dir():
            for entry in _stat_tree(meta, set(), lambda n: True):
                digest.update(entry)
        else:
            digest.update(_stat_line(meta, meta.name))
    return digest.hexdigest()[:16]


def _stat_line(path: Path | str, name: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError:
        return f"{name}\tabsent\n".encode()
    return f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode()


def _stat_tree(directory: Path, excluded: set[str], wanted: Callable[[str], bool]) -> Iterator[bytes]:
    """``name size mtime`` lines for the wanted files under ``directory``, in sorted order.

    Symlinked folders are followed (as the listing does), each real folder once, so a
    link back to an ancestor cannot loop.
    """
    if not directory.is_dir():
        yield b"absent\n"
        return
    stack = [str(directory)]
    seen = {_dir_key(str(directory))}
    lines: list[bytes] = []
    base = len(str(directory)) + 1
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)  # same walk, same names
        except OSError as err:
            lines.append(f"{current[base:]}\tunreadable {err.errno}\n".encode())
            continue
        for entry in entries:
            if _is_dir(entry):
                key = _dir_key(entry.path)
                if entry.path not in excluded and key not in seen:
                    seen.add(key)
                    stack.append(entry.path)
            elif wanted(entry.name):
                try:
                    st = entry.stat()
                    lines.append(f"{entry.path[base:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
                except OSError:
                    lines.append(f"{entry.path[base:]}\tabsent\n".encode())
    yield from sorted(lines)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # e.g. a symlink loop: ELOOP
        return False


def _dir_key(path: str) -> tuple[int, int] | str:
    """Identity of the real folder behind ``path`` (device and inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    return (st.st_dev, st.st_ino)


# ------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class Row:
    """What the data layer needs from a manifest row (``frames``/``width``/``height``
    are ``None`` when unknown: they only serve ``min_frames`` and the disk estimate)."""

    id: str
    path: str
    duration: float
    fps: float
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    content: str | None = None  # hash of the file's bytes (manifest ``content``); None: unknown

    @property
    def source(self) -> str:
        """Digest of everything that decides this row's frames for a given sampling (the
        id seeds random clip placement), or ``""`` without a content hash: such a row is
        never taken from a previous cache."""
        if not self.content:
            return ""
        text = f"{self.id}\t{self.content}\t{self.duration!r}\t{self.fps!r}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def as_rows(rows: Any) -> list[Row]:
    """Manifest rows (a pandas DataFrame or mappings with ``id, path, duration, fps`` and
    optionally ``frames, width, height, content``)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        missing = {"id", "path", "duration", "fps"} - set(rows.columns)
        if missing:
            raise ValueError(f"manifest is missing columns {sorted(missing)}")
        records: Iterable[Mapping[str, Any] | Row] = rows.to_dict("records")
    else:
        records = rows
    out: list[Row] = []
    for i, r in enumerate(records):
        if isinstance(r, Row):
            out.append(r)
            continue
        missing = {"id", "path", "duration", "fps"} - set(r)
        if missing:
            raise ValueError(f"manifest row {i} is missing {sorted(missing)}")
        out.append(
            Row(
                str(r["id"]),
                str(r["path"]),
                _float(r["duration"]),
                _float(r["fps"]),
                _int(r.get("frames")),
                _int(r.get("width")),
                _int(r.get("height")),
                _str(r.get("content")),
            )
        )
    return out


def _int(value: Any) -> int | None:
    try:
        out = int(value)
    except (TypeError, ValueError):
        return None
    return out if out > 0 else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None  # pandas gives NaN for a missing cell


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
