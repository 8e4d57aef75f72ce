"""What every dataset layout shares: the listing types, config-key helpers, walking class
folders, and the ``folder`` layout itself (:mod:`dimcollapse.data.datasets` builds the other
layouts on these).

A layout adapter returns a :class:`DatasetListing`: the selected videos sorted by
``(label, id)``, plus listed videos whose file is missing (stage ``"missing"``, reported,
never dropped). A video's id is its path relative to the layout's video folder, POSIX
separators, without extension; two files that would share an id are an error
(:func:`finish`). Video files are recognised by extension (case-insensitive; key
``extensions``, default :data:`VIDEO_EXTENSIONS`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimcollapse.errors import KnownError
from dimcollapse.failures import Failure

VIDEO_EXTENSIONS: tuple[str, ...] = (
    "mp4", "avi", "mkv", "webm", "mov", "m4v", "mpg", "mpeg", "ogv", "flv", "wmv", "3gp",
)
MISSING_STAGE = "missing"


class DatasetConfigError(KnownError, ValueError):
    """A dataset config or split/annotation file that cannot be used as given."""


@dataclass(frozen=True)
class VideoRecord:
    """One selected video: stable id, absolute path, class index and class name."""

    id: str
    path: str
    label: int
    label_name: str


@dataclass(frozen=True)
class DatasetListing:
    """What an adapter selected.

    ``records`` are sorted by ``(label, id)``; ``problems`` are listed videos without a
    file (stage ``"missing"``), sorted by ``(id, path)``; ``classes[i]`` names label ``i``.
    """

    records: tuple[VideoRecord, ...]
    problems: tuple[Failure, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSources:
    """The files a listing depends on, for a stat-only fingerprint.

    ``video_dirs`` are walked for video files (a superset of the selection, so that any
    change there is noticed), skipping ``exclude_dirs``; ``video_files`` are videos named
    one by one (the ``csv`` layout: only the files its table names, never a walk of
    ``root``, which may be ``/``); ``meta_paths`` are the split, list and annotation
    files, or folders whose every file counts as one.
    """

    video_dirs: tuple[Path, ...]
    exclude_dirs: tuple[Path, ...]
    meta_paths: tuple[Path, ...]
    extensions: tuple[str, ...]
    video_files: tuple[Path, ...] = ()


# --------------------------------------------------------------------------- config


def require(cfg: Mapping[str, Any], key: str) -> Any:
    if key not in cfg or cfg[key] is None or cfg[key] == "":
        raise DatasetConfigError(
            f"dataset config for layout {cfg.get('layout')!r} is missing required key {key!r}"
        )
    return cfg[key]


def root_of(cfg: Mapping[str, Any]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(require(cfg, "root")))))


def resolve(root: Path, value: Any) -> Path:
    """A file key: absolute, or relative to the dataset root."""
    path = Path(os.path.expanduser(str(value)))
    return Path(os.path.abspath(path if path.is_absolute() else root / path))


def extensions_of(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    raw = cfg.get("extensions")
    if raw is None:
        return VIDEO_EXTENSIONS
    if isinstance(raw, str):
        raw = [raw]
    exts = tuple(sorted({"." + str(e).lower().lstrip(".") for e in raw}))
    if not exts:
        raise DatasetConfigError("dataset config key 'extensions' is empty")
    return tuple(e[1:] for e in exts)


def is_video(name: str, extensions: tuple[str, ...]) -> bool:
    lower = name.lower()
    return any(lower.endswith("." + ext) for ext in extensions)


def existing_dir(path: Path, key: str) -> Path:
    if not path.is_dir():
        raise DatasetConfigError(f"{path}: not a directory (dataset config key {key!r})")
    return path


def existing_file(path: Path, key: str) -> Path:
    if not path.is_file():
        raise DatasetConfigError(f"{path}: file not found (dataset config key {key!r})")
    return path


# --------------------------------------------------------------------------- helpers


def video_id(path: Path, base: Path) -> str:
    """Path relative to ``base`` (absolute if outside it), POSIX, without extension."""
    try:
        rel = path.relative_to(base).as_posix()
    except ValueError:
        rel = path.as_posix()
    stem, _ = os.path.splitext(rel)
    return stem


def walk_videos(directory: Path, extensions: tuple[str, ...]) -> Iterator[Path]:
    """Video files under ``directory``, recursively (symlinked folders followed, each real
    folder once, so a link back to an ancestor cannot loop), sorted."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            if is_video(name, extensions):
                yield Path(dirpath) / name


def class_dirs(directory: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    excluded = {Path(os.path.abspath(p)) for p in exclude}
    return sorted(
        (entry for entry in directory.iterdir() if entry.is_dir() and entry not in excluded),
        key=lambda p: p.name,
    )


def missing(video_id: str, path: Path, message: str) -> Failure:
    return Failure(video_id, str(path), MISSING_STAGE, message)


def add_listed(
    records: list[VideoRecord], problems: list[Failure], path: Path, base: Path, label: int, name: str, where: str
) -> None:
    """A video named by a list, split or CSV file: a record if the file exists, else a problem."""
    vid = video_id(path, base)
    if path.is_file():
        records.append(VideoRecord(vid, str(path), label, name))
    else:
        problems.append(missing(vid, path, f"listed in {where} but the file does not exist"))


def finish(
    records: Iterable[VideoRecord], problems: Iterable[Failure], classes: Iterable[str]
) -> DatasetListing:
    """Sort, and refuse duplicate ids (they would make feature rows ambiguous)."""
    ordered = sorted(records, key=lambda r: (r.label, r.id))
    seen: dict[str, str] = {}
    for rec in ordered:
        if rec.id in seen:
            raise DatasetConfigError(
                f"two videos share the id {rec.id!r}: {seen[rec.id]} and {rec.path} "
                "(restrict 'extensions' or rename one)"
            )
        seen[rec.id] = rec.path
    return DatasetListing(
        records=tuple(ordered),
        problems=tuple(sorted(set(problems), key=lambda f: (f.id, f.path))),
        classes=tuple(classes),
    )


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with 1-based line numbers (CRLF-safe; UCF101 lists use CRLF)."""
    with open(path, encoding="utf-8") as fh:
        return [(i, line.strip()) for i, line in enumerate(fh.read().splitlines(), 1) if line.strip()]


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names by index from a text file (line i names label i) or a JSON object.

    The JSON form maps name to index, as SlowFast's ``classids.json`` does.
    """
    existing_file(path, "class_names")
    if path.suffix.lower() == ".json":
        mapping = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(mapping, dict):
            raise DatasetConfigError(f"{path}: expected a JSON object mapping class name to index")
        by_index = {int(v): str(k) for k, v in mapping.items()}
        if sorted(by_index) != list(range(len(by_index))):
            raise DatasetConfigError(f"{path}: class indices are not 0..{len(by_index) - 1}")
        return tuple(by_index[i] for i in range(len(by_index)))
    return tuple(line for _, line in read_lines(path))


def name_for(label: int, names: tuple[str, ...] | None, where: str) -> str:
    if names is None:
        return str(label)
    if not 0 <= label < len(names):
        raise DatasetConfigError(f"{where}: label {label} has no entry in class_names ({len(names)} names)")
    return names[label]


# --------------------------------------------------------------------------- folder


def list_folder(directory: Path, extensions: tuple[str, ...], exclude: Iterable[Path] = ()) -> DatasetListing:
    per_class: list[tuple[str, list[Path]]] = []
    for class_dir in class_dirs(directory, exclude):
        videos = list(walk_videos(class_dir, extensions))
        if videos:
            per_class.append((class_dir.name, videos))
    if not per_class:
        raise DatasetConfigError(
            f"{directory}: no class folders with video files ({', '.join(extensions)})"
        )
    records = [
        VideoRecord(video_id(v, directory), str(v), label, name)
        for label, (name, videos) in enumerate(per_class)
        for v in videos
    ]
    return finish(records, (), (name for name, _ in per_class))

