"""Which entries under ``<results>/store`` and ``<results>/clips/<dataset>`` dimcollapse wrote.

``dimcollapse store prune`` deletes; it must delete only what it can prove it made.
A results folder is the user's too: a thesis draft or a folder of holiday videos put
there by hand must survive every prune. Each test below therefore asks for the marks
that only the package's own writers leave (names, marker files, the JSON they hold)
and for nothing else inside a folder; anything that fails it is *foreign*: listed,
never touched.

* A **store key**: a folder named by a 24-hex-digit instance key
  (:func:`~dimcollapse.extraction.store.identity_key`) holding ``data/`` and ``keys/``,
  and besides them only ``instance.json``, ``quarantine/`` and the writers' temporary
  files; ``data/`` and ``keys/`` hold only ``.npz`` segments and index files.
* A **clip cache folder** (``<key>``, ``.<key>.partial``, ``.<key>.old-<pid>``): it holds
  nothing but the cache's own files, and its ``meta.json`` is a cache's (format and
  sampling key; torn or missing, its ``frames.u8`` is there instead).
* A clip cache's **marker** ``<key>.cache.json`` (JSON naming the cache and its sampling
  key) and its **failure table** ``<key>.failures.csv`` (the failure header).
* A **quarantined clip cache** (``quarantine/<key>[.n]``): a folder holding only clip cache
  files (its ``meta.json`` may be the torn file that sent it there).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from dimcollapse.data.cache_files import DATA_FILE, INDEX_FILE, MARKER_SUFFIX, META_FILE, PROGRESS_FILE
from dimcollapse.extraction.store import DESCRIPTION
from dimcollapse.failures import FAILURE_COLUMNS
from dimcollapse.quarantine import QUARANTINE

#: An instance key: the first 24 hex digits of a SHA-256 (``identity_key``).
_KEY_NAME = re.compile(r"[0-9a-f]{24}")
#: The store's two folders of a key and what they hold.
_KEY_FOLDERS = ("data", "keys")
_CACHE_FILES = frozenset({DATA_FILE, INDEX_FILE, META_FILE, PROGRESS_FILE})
FAILURES_SUFFIX = ".failures.csv"


def _temporary(name: str) -> bool:
    """A writer's temporary file (``.<final name>@host@pid@random<suffix>.tmp``, see atomic.py)."""
    return name.startswith(".") and name.endswith(".tmp") and "@" in name


def store_key_strangers(path: Path) -> list[Path] | None:
    """``None`` when ``path`` is not a store key at all; else the files in it that the
    store does not write (empty: the whole folder is provably the store's)."""
    if path.is_symlink() or not path.is_dir() or not _KEY_NAME.fullmatch(path.name):
        return None
    if not all((path / sub).is_dir() for sub in _KEY_FOLDERS):
        return None
    strangers = []
    for entry in path.iterdir():
        if entry.name in _KEY_FOLDERS and entry.is_dir() and not entry.is_symlink():
            strangers += [
                f for f in entry.iterdir() if not (f.is_file() and (f.suffix == ".npz" or _temporary(f.name)))
            ]
        elif entry.name == QUARANTINE and entry.is_dir() and not entry.is_symlink():
            strangers += _quarantine_strangers(entry)
        elif not (entry.is_file() and (entry.name == DESCRIPTION or _temporary(entry.name))):
            strangers.append(entry)
    return strangers


def _quarantine_strangers(folder: Path) -> list[Path]:
    """Files in a key's ``quarantine/`` that the store did not move there (see store.py)."""
    strangers = []
    for entry in folder.iterdir():
        if entry.name not in _KEY_FOLDERS or not entry.is_dir() or entry.is_symlink():
            strangers.append(entry)
            continue
        strangers += [f for f in entry.iterdir() if not (f.is_file() and (".npz" in f.name or f.suffix == ".missing"))]
    return strangers


def cache_key(name: str) -> str:
    """The sampling key a clip-cache file or folder name belongs to (``.k.partial``, ``k.cache.json``, ``k.1``)."""
    return name.lstrip(".").split(".")[0].split("@")[0]


def is_clip_cache_folder(path: Path) -> bool:
    """A clip cache folder (complete, partial, or an old one left by a killed swap): it holds
    only the cache's files, and its ``meta.json`` is the cache's (format, sampling key) or,
    when that file is missing or torn (a damaged cache ``verify`` must name), it holds the
    cache's ``frames.u8``."""
    if not _holds_only_cache_files(path):
        return False
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError):
        return (path / DATA_FILE).is_file()
    return isinstance(meta, dict) and {"format", "sampling_key"} <= set(meta)


def is_quarantined_clip_cache(path: Path) -> bool:
    """A folder of ``quarantine/`` that holds clip cache files and nothing else."""
    return _holds_only_cache_files(path) and any(path.iterdir())


def _holds_only_cache_files(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    return all(f.is_file() and (f.name in _CACHE_FILES or _temporary(f.name)) for f in path.iterdir())


def is_clip_cache_file(path: Path) -> bool:
    """A clip cache's marker (JSON naming its sampling key) or its failure table."""
    if path.is_symlink() or not path.is_file():
        return False
    if path.name.endswith(MARKER_SUFFIX):
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(marker, dict) and {"cache", "sampling_key"} <= set(marker)
    if path.name.endswith(FAILURES_SUFFIX):
        try:
            with open(path, newline="") as fh:
                return fh.readline().strip() == ",".join(FAILURE_COLUMNS)
        except (OSError, UnicodeDecodeError):
            return False
    return False


def is_temporary(path: Path) -> bool:
    """A writer's temporary file: ours, left to :func:`dimcollapse.atomic.clean_stray`."""
    return path.is_file() and _temporary(path.name)
