"""Dataset adapters: turn a dataset's on-disk layout into a labelled list of videos.

Every adapter takes a plain mapping of config values (``cfg["layout"]`` selects the
adapter) and returns a :class:`DatasetListing`: the videos it selects, sorted by
``(label, id)``, plus the listed videos whose file is missing (reported as
:class:`~dimcollapse.failures.Failure` records with stage ``"missing"``, never dropped
silently). Adapters only look at names on disk and read split/annotation files; they
never open videos (that is :mod:`dimcollapse.data.probe`'s job).

Layouts and their keys (file keys may be absolute or relative to ``root``; keys an
adapter does not know, such as per-dataset protocol overrides, are ignored):

``folder``
    ``root/<class>/**/<video>``: every immediate sub-folder of ``root`` that holds at
    least one video is a class; class index = position in the sorted class names;
    videos are found recursively (as PyTorchVideo's ``LabeledVideoPaths.from_directory``
    does).
``kinetics``
    Kinetics-400 in one of three forms, chosen by the keys present:

    * class folders (default): ``folder`` layout on ``root/<split>`` (``split``
      optional, e.g. ``val``);
    * ``list_file``: SlowFast-style lines ``<path> <integer label>``, paths relative to
      ``path_prefix`` (default ``root/<split>``); label names from ``class_names``
      (optional; see :func:`read_class_names`), else the integer as text;
    * ``annotations``: the official CSV (``label,youtube_id,time_start,time_end,split
      [,is_cc]``); each row is matched to a file named
      ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere under ``root/<split>``;
      class index = position in the sorted label names of the CSV; rows without a
      file are reported as missing (their id is the expected file stem). Every row is
      used (the official CSVs come one per split; the ``split`` column is not read).
``ucf101``
    Videos under ``videos_dir`` (default ``root``) in class folders; ``splits_dir``
    (default ``ucfTrainTestlist``) holds ``classInd.txt`` and ``trainlist0k.txt`` /
    ``testlist0k.txt``. ``split`` is ``all`` (default: every video in every class
    folder under ``videos_dir``, as the paper's PyTorchVideo ``Ucf101(data_path=root)``
    read it) or 1, 2, 3 with ``subset`` ``train`` or ``test``. Labels are 0-based
    classInd indices (classInd is not plain sorted order: ``Hammering`` precedes
    ``HammerThrow``); in ``all`` mode without classInd they fall back to sorted
    folder names, PyTorchVideo's own indices.
``hmdb51``
    ``splits_dir`` (default ``split/testTrainMulti_7030_splits``, the paper's
    convention) holds ``<class>_test_split{k}.txt`` with lines ``<video>.avi <0|1|2>``
    (0 unused, 1 train, 2 test); videos live in ``videos_dir/<class>/`` (default
    ``videos``). ``split`` 1-3 (default 1), ``subset`` ``train``, ``test``, ``unused``
    or ``all`` (default: the paper chained all three of split 1, i.e. every listed
    video). Class index = position in the sorted class names.
``csv``
    A CSV file (key ``csv``) with header columns ``path`` and ``label``; paths
    absolute or relative to ``root``. If every label is an integer, labels are taken
    as class indices and names come from ``class_names`` (else the integer as text);
    otherwise labels are class names and the class index is the position in their
    sorted order.

Video files are recognised by extension (case-insensitive; key ``extensions``,
default :data:`~dimcollapse.data.listing.VIDEO_EXTENSIONS`; PyTorchVideo itself only took ``mp4`` and ``avi``).
A video's id is its path relative to the layout's video folder, POSIX separators,
without extension; two files that would share an id are an error.
"""


import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dimcollapse.data.listing import (
    DatasetConfigError,
    DatasetListing,
    DatasetSources,
    VideoRecord,
    add_listed,
    existing_dir,
    existing_file,
    extensions_of,
    finish,
    list_folder,
    missing,
    name_for,
    read_class_names,
    read_lines,
    require,
    resolve,
    root_of,
    video_id,
    walk_videos,
)
from dimcollapse.failures import Failure

LAYOUTS: tuple[str, ...] = ("kinetics", "ucf101", "hmdb51", "folder", "csv")
# The config keys any adapter reads; all others are ignored here.
LISTING_KEYS: tuple[str, ...] = (
    "layout", "root", "split", "subset", "extensions", "annotations", "list_file", "path_prefix",
    "class_names", "splits_dir", "videos_dir", "csv",
)

_UCF_DEFAULT_SPLITS_DIR = "ucfTrainTestlist"
_HMDB_DEFAULT_SPLITS_DIR = "split/testTrainMulti_7030_splits"
_HMDB_DEFAULT_VIDEOS_DIR = "videos"
_HMDB_FLAGS = {"unused": 0, "train": 1, "test": 2}


def _layout(cfg: Mapping[str, Any]) -> str:
    layout = cfg.get("layout")
    if layout is None:
        raise DatasetConfigError("dataset config is missing required key 'layout'")
    if layout not in LAYOUTS:
        raise DatasetConfigError(
            f"dataset config key 'layout' is {layout!r}; expected one of {', '.join(LAYOUTS)}"
        )
    return str(layout)




def _kinetics_video_dir(cfg: Mapping[str, Any]) -> Path:
    root = root_of(cfg)
    split = cfg.get("split")
    return root / str(split) if split not in (None, "") else root


# --------------------------------------------------------------------------- kinetics


def _list_kinetics(cfg: Mapping[str, Any]) -> DatasetListing:
    if cfg.get("annotations") and cfg.get("list_file"):
        raise DatasetConfigError("dataset config: give either 'annotations' or 'list_file', not both")
    video_dir = _kinetics_video_dir(cfg)
    extensions = extensions_of(cfg)
    if cfg.get("annotations"):
        return _list_kinetics_csv(cfg, video_dir, extensions)
    if cfg.get("list_file"):
        return _list_path_label_file(cfg, video_dir)
    return list_folder(existing_dir(video_dir, "root/split"), extensions)


def _list_path_label_file(cfg: Mapping[str, Any], video_dir: Path) -> DatasetListing:
    root = root_of(cfg)
    list_file = existing_file(resolve(root, cfg["list_file"]), "list_file")
    prefix = resolve(root, cfg["path_prefix"]) if cfg.get("path_prefix") else video_dir
    names = read_class_names(resolve(root, cfg["class_names"])) if cfg.get("class_names") else None
    records: list[VideoRecord] = []
    problems: list[Failure] = []
    for lineno, line in read_lines(list_file):
        parts = line.rsplit(None, 1)
        where = f"{list_file}:{lineno}"
        if len(parts) != 2:
            raise DatasetConfigError(f"{where}: expected '<path> <label>', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise DatasetConfigError(f"{where}: label {parts[1]!r} is not an integer") from None
        path = Path(os.path.abspath(prefix / parts[0]))
        add_listed(records, problems, path, prefix, label, name_for(label, names, where), where)
    n_classes = len(names) if names is not None else max((r.label for r in records), default=-1) + 1
    classes = names if names is not None else tuple(str(i) for i in range(n_classes))
    return finish(records, problems, classes)


_K400_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _list_kinetics_csv(cfg: Mapping[str, Any], video_dir: Path, extensions: tuple[str, ...]) -> DatasetListing:
    annotations = existing_file(resolve(root_of(cfg), cfg["annotations"]), "annotations")
    existing_dir(video_dir, "root/split")
    by_stem: dict[str, Path] = {}
    for video in walk_videos(video_dir, extensions):
        stem = os.path.splitext(video.name)[0]
        if stem in by_stem:
            raise DatasetConfigError(
                f"two files match the same annotation stem {stem!r}: {by_stem[stem]} and {video}"
            )
        by_stem[stem] = video
    rows: list[tuple[str, str, int]] = []
    with open(annotations, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in _K400_COLUMNS if c not in (reader.fieldnames or ())]
        if absent:
            raise DatasetConfigError(f"{annotations}: missing CSV columns {absent}")
        for lineno, row in enumerate(reader, 2):
            try:
                start = int(float(row["time_start"]))
                end = int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise DatasetConfigError(
                    f"{annotations}:{lineno}: time_start/time_end are not numbers: {row}"
                ) from None
            stem = f"{row['youtube_id']}_{start:06d}_{end:06d}"
            rows.append((row["label"], stem, lineno))
    classes = sorted({label for label, _, _ in rows})
    index = {name: i for i, name in enumerate(classes)}
    records: list[VideoRecord] = []
    problems: list[Failure] = []
    seen: set[str] = set()
    for label_name, stem, lineno in rows:
        if stem in seen:
            raise DatasetConfigError(f"{annotations}:{lineno}: duplicate annotation for {stem}")
        seen.add(stem)
        found = by_stem.get(stem)
        if found is None:
            problems.append(missing(
                stem, video_dir / stem,
                f"annotation row {annotations}:{lineno} ({label_name}) has no video file named "
                f"{stem}.<{'|'.join(extensions)}> under {video_dir}",
            ))
        else:
            records.append(VideoRecord(video_id(found, video_dir), str(found), index[label_name], label_name))
    return finish(records, problems, classes)


# --------------------------------------------------------------------------- ucf101


def _ucf_dirs(cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    root = root_of(cfg)
    videos = resolve(root, cfg.get("videos_dir") or ".")
    splits = resolve(root, cfg.get("splits_dir") or _UCF_DEFAULT_SPLITS_DIR)
    return videos, splits


def _split_choice(cfg: Mapping[str, Any], allowed_all: bool) -> int | str:
    raw = cfg.get("split", "all" if allowed_all else 1)
    if allowed_all and str(raw).lower() == "all":
        return "all"
    try:
        split = int(raw)
    except (TypeError, ValueError):
        split = 0
    if split not in (1, 2, 3):
        choices = "1, 2, 3" + (" or 'all'" if allowed_all else "")
        raise DatasetConfigError(f"dataset config key 'split' is {raw!r}; expected {choices}")
    return split


def _read_class_ind(path: Path) -> dict[str, int]:
    """classInd.txt lines ``<1-based index> <ClassName>`` → 0-based index by name."""
    index: dict[str, int] = {}
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetConfigError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        index[parts[1]] = int(parts[0]) - 1
    if sorted(index.values()) != list(range(len(index))):
        raise DatasetConfigError(f"{path}: class indices are not 1..{len(index)}")
    return index


def _list_ucf101(cfg: Mapping[str, Any]) -> DatasetListing:
    videos_dir, splits_dir = _ucf_dirs(cfg)
    existing_dir(videos_dir, "root/videos_dir")
    extensions = extensions_of(cfg)
    split = _split_choice(cfg, allowed_all=True)
    class_ind_path = splits_dir / "classInd.txt"
    if split == "all":
        listing = list_folder(videos_dir, extensions, exclude=[splits_dir])
        if not class_ind_path.is_file():
            return listing
        index = _read_class_ind(class_ind_path)
        unknown = sorted({r.label_name for r in listing.records} - set(index))
        if unknown:
            raise DatasetConfigError(f"{videos_dir}: class folders {unknown} are not in {class_ind_path}")
        relabelled = [VideoRecord(r.id, r.path, index[r.label_name], r.label_name) for r in listing.records]
        return finish(relabelled, (), sorted(index, key=index.__getitem__))

    subset = cfg.get("subset")
    if subset not in ("train", "test"):
        raise DatasetConfigError(
            f"dataset config key 'subset' is {subset!r}; expected 'train' or 'test' for UCF101 split {split}"
        )
    index = _read_class_ind(existing_file(class_ind_path, "splits_dir (classInd.txt)"))
    list_path = existing_file(splits_dir / f"{subset}list0{split}.txt", "splits_dir")
    records: list[VideoRecord] = []
    problems: list[Failure] = []
    for lineno, line in read_lines(list_path):
        where = f"{list_path}:{lineno}"
        parts = line.split()
        rel = parts[0]
        class_name = rel.split("/")[0]
        if class_name not in index or "/" not in rel:
            raise DatasetConfigError(f"{where}: {rel!r} is not '<Class>/<video>' with a class from classInd.txt")
        label = index[class_name]
        if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
            raise DatasetConfigError(
                f"{where}: label {parts[1]} disagrees with classInd.txt ({class_name} is {label + 1})"
            )
        path = Path(os.path.abspath(videos_dir / rel))
        add_listed(records, problems, path, videos_dir, label, class_name, where)
    return finish(records, problems, sorted(index, key=index.__getitem__))


# --------------------------------------------------------------------------- hmdb51


def _hmdb_dirs(cfg: Mapping[str, Any]) -> tuple[Path, Path]:
    root = root_of(cfg)
    videos = resolve(root, cfg.get("videos_dir") or _HMDB_DEFAULT_VIDEOS_DIR)
    splits = resolve(root, cfg.get("splits_dir") or _HMDB_DEFAULT_SPLITS_DIR)
    return videos, splits


def _list_hmdb51(cfg: Mapping[str, Any]) -> DatasetListing:
    videos_dir, splits_dir = _hmdb_dirs(cfg)
    existing_dir(splits_dir, "splits_dir")
    split = _split_choice(cfg, allowed_all=False)
    subset = cfg.get("subset", "all")
    if subset != "all" and subset not in _HMDB_FLAGS:
        raise DatasetConfigError(
            f"dataset config key 'subset' is {subset!r}; expected train, test, unused or all"
        )
    suffix = f"_test_split{split}"
    split_files = sorted(
        p for p in splits_dir.iterdir() if p.is_file() and p.suffix == ".txt" and p.stem.endswith(suffix)
    )
    if not split_files:
        raise DatasetConfigError(f"{splits_dir}: no '<class>{suffix}.txt' files (dataset config key 'splits_dir')")
    classes = [p.stem[: -len(suffix)] for p in split_files]
    records: list[VideoRecord] = []
    problems: list[Failure] = []
    for label, (class_name, split_file) in enumerate(zip(classes, split_files)):
        for lineno, line in read_lines(split_file):
            where = f"{split_file}:{lineno}"
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetConfigError(f"{where}: expected '<video> <0|1|2>', got {line!r}")
            if subset != "all" and int(parts[1]) != _HMDB_FLAGS[subset]:
                continue
            path = Path(os.path.abspath(videos_dir / class_name / parts[0]))
            add_listed(records, problems, path, videos_dir, label, class_name, where)
    return finish(records, problems, classes)


# --------------------------------------------------------------------------- csv


def _read_csv_rows(table: Path) -> list[tuple[int, str, str]]:
    """``(line number, path, label)`` of every row of a ``csv`` layout table."""
    with open(table, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in ("path", "label") if c not in (reader.fieldnames or ())]
        if absent:
            raise DatasetConfigError(f"{table}: missing CSV columns {absent}")
        return [(lineno, row["path"], (row["label"] or "").strip()) for lineno, row in enumerate(reader, 2)]


def _list_csv(cfg: Mapping[str, Any]) -> DatasetListing:
    root = root_of(cfg)
    table = existing_file(resolve(root, require(cfg, "csv")), "csv")
    rows = _read_csv_rows(table)
    integer_labels = all(_is_int(label) for _, _, label in rows)
    names = read_class_names(resolve(root, cfg["class_names"])) if cfg.get("class_names") else None
    if integer_labels:
        classes = names if names is not None else tuple(
            str(i) for i in range(max((int(label) for _, _, label in rows), default=-1) + 1)
        )
        index = None
    else:
        if names is not None:
            raise DatasetConfigError(f"{table}: 'class_names' only applies to integer labels")
        classes = tuple(sorted({label for _, _, label in rows}))
        index = {name: i for i, name in enumerate(classes)}
    records: list[VideoRecord] = []
    problems: list[Failure] = []
    for lineno, raw_path, raw_label in rows:
        where = f"{table}:{lineno}"
        if index is None:
            label = int(raw_label)
            if label < 0:
                raise DatasetConfigError(f"{where}: negative label {label}")
            name = name_for(label, names, where)
        else:
            label, name = index[raw_label], raw_label
        path = resolve(root, raw_path)
        add_listed(records, problems, path, root, label, name, where)
    return finish(records, problems, classes)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- public


def list_videos(cfg: Mapping[str, Any]) -> DatasetListing:
    """List the videos a dataset config selects (see the module docstring for layouts).

    Raises :class:`DatasetConfigError` naming the key or file for an unknown layout, a
    missing required key, a missing folder or split file, or a malformed line.
    """
    layout = _layout(cfg)
    if layout == "folder":
        return list_folder(existing_dir(root_of(cfg), "root"), extensions_of(cfg))
    if layout == "kinetics":
        return _list_kinetics(cfg)
    if layout == "ucf101":
        return _list_ucf101(cfg)
    if layout == "hmdb51":
        return _list_hmdb51(cfg)
    return _list_csv(cfg)


def dataset_sources(cfg: Mapping[str, Any]) -> DatasetSources:
    """The folders and split/annotation files a listing of ``cfg`` depends on.

    Only resolves paths (no video is opened; the ``csv`` layout's table is read for the
    files it names), so it works before the dataset exists.
    """
    layout = _layout(cfg)
    root = root_of(cfg)
    exts = extensions_of(cfg)
    optional = [resolve(root, cfg[k]) for k in ("class_names",) if cfg.get(k)]
    if layout == "folder":
        return DatasetSources((root,), (), (), exts)
    if layout == "kinetics":
        video_dir = _kinetics_video_dir(cfg)
        metas = [resolve(root, cfg[k]) for k in ("annotations", "list_file") if cfg.get(k)] + optional
        dirs = [video_dir]
        if cfg.get("list_file") and cfg.get("path_prefix"):
            dirs = [resolve(root, cfg["path_prefix"])]
        return DatasetSources(tuple(dirs), (), tuple(metas), exts)
    if layout == "ucf101":
        videos_dir, splits_dir = _ucf_dirs(cfg)
        return DatasetSources((videos_dir,), (splits_dir,), (splits_dir,), exts)
    if layout == "hmdb51":
        videos_dir, splits_dir = _hmdb_dirs(cfg)
        return DatasetSources((videos_dir,), (splits_dir,), (splits_dir,), exts)
    table = resolve(root, require(cfg, "csv"))
    try:  # a missing or malformed table is the manifest rule's error to report, not the DAG's
        listed = tuple(sorted({resolve(root, raw) for _, raw, _ in _read_csv_rows(table)}))
    except (OSError, UnicodeDecodeError, csv.Error, DatasetConfigError):
        listed = ()
    return DatasetSources((), (), (table, *optional), exts, video_files=listed)


def official_split(cfg: Mapping[str, Any]) -> tuple[dict[str, str], str] | None:
    """Train/test role by video id from the dataset's official split files, or ``None``.

    UCF101 and HMDB51 only: split ``k`` of the config (split 1 when UCF101 lists ``all``
    videos, as the paper's PyTorchVideo reader did). HMDB51's unused videos get no role.
    The ids are the ones :func:`list_videos` gives the same videos, so they match the
    manifest's. Returns ``(roles, name)`` where ``name`` says which split files were read.
    """
    layout = _layout(cfg)
    if layout not in ("ucf101", "hmdb51"):
        return None
    split = _split_choice(cfg, allowed_all=layout == "ucf101")
    split = 1 if split == "all" else split
    roles: dict[str, str] = {}
    for subset in ("train", "test"):
        listing = list_videos({**cfg, "split": split, "subset": subset})
        roles.update({r.id: subset for r in listing.records})
        roles.update({f.id: subset for f in listing.problems})
    splits_dir = (_ucf_dirs if layout == "ucf101" else _hmdb_dirs)(cfg)[1]
    return roles, f"{layout} split {split} ({splits_dir})"
