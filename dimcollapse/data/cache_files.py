"""The clip cache's files on disk, readable without torch.

A clip cache is a directory ``<name>/`` (``frames.u8``, ``index.json``, ``meta.json``)
declared to Snakemake through a marker file ``<name>.cache.json`` beside it (a rule cannot
declare a directory it updates in place). The workflow checks markers in its main process
as every run starts (:func:`drop_stale_marker`); that process must not import torch — it
is started for every run, dry run and, on Slurm, twice per job — so what it needs lives
here, apart from the cache's reader and writer in :mod:`dimcollapse.data.clips`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dimcollapse.errors import KnownError

MARKER_SUFFIX = ".cache.json"
DATA_FILE = "frames.u8"
INDEX_FILE = "index.json"
META_FILE = "meta.json"
PROGRESS_FILE = "progress.jsonl"


class CacheUnreadable(KnownError, ValueError):
    """A file of a clip cache directory is torn or corrupt; the message names it."""


def read_json(path: Path) -> Any:
    """A cache's JSON file; a torn or unreadable one is :class:`CacheUnreadable`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CacheUnreadable(f"{path}: missing") from err
    except (OSError, ValueError) as err:
        raise CacheUnreadable(f"{path}: unreadable ({err})") from err


def marker_path(cache_dir: str | os.PathLike[str]) -> Path:
    """The file the workflow declares for a clip cache directory (which it cannot declare)."""
    cache_dir = Path(cache_dir)
    return cache_dir.parent / f"{cache_dir.name}{MARKER_SUFFIX}"


def cache_dir_of(marker: str | os.PathLike[str]) -> Path:
    """The clip cache directory a marker file (:func:`marker_path`) stands for."""
    marker = Path(marker)
    if not marker.name.endswith(MARKER_SUFFIX):
        raise ValueError(f"{marker}: not a clip cache marker (*{MARKER_SUFFIX})")
    return marker.parent / marker.name[: -len(MARKER_SUFFIX)]


def drop_stale_marker(cache_dir: str | os.PathLike[str]) -> str | None:
    """Remove the marker of a clip cache that is missing or visibly damaged; return why.

    Called as a workflow run starts, so that the clip-cache rule runs again (and sets a
    damaged cache aside, see :func:`dimcollapse.data.clip_cache.update_clip_cache`). Only cheap checks, a stat and
    ``meta.json``: a torn ``index.json`` is found by the job that reads it.
    """
    cache_dir = Path(cache_dir)
    marker = marker_path(cache_dir)
    if not marker.is_file():
        return None
    try:
        meta = read_json(cache_dir / META_FILE)
        data = cache_dir / DATA_FILE
        size = data.stat().st_size if data.is_file() else None
        problem = (
            None
            if size == meta.get("data_bytes")
            else f"{data}: {size} bytes, {META_FILE} says {meta.get('data_bytes')}"
        )
    except CacheUnreadable as err:
        problem = f"{cache_dir} is missing" if not cache_dir.exists() else str(err)
    if problem is not None:
        marker.unlink(missing_ok=True)
    return problem
