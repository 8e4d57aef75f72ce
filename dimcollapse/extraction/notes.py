"""What the pipeline did to a video without failing it: ``results/failures/<dataset>.notes.csv``.

Two things happen silently by design, so that the numbers equal the original code's:

* **short**: a video shorter than a protocol's clip window is kept, its clip repeating
  frames (PyTorchVideo and SlowFast clamp frame indices the same way). Which videos that
  hit depends on the sampling, so the note names the protocol and its sampling key.
* **rotated**: a video whose container asks players to rotate it (a display matrix, as
  phones write) is decoded as stored, unrotated, as PyAV (and so PyTorchVideo and
  SlowFast) decode it; the probe records the angle in the manifest's ``rotation`` column.

One row per (video, note): ``id, path, note, detail``. Only videos of the features'
index (those no stage failed) are listed; failed ones are in ``<dataset>.csv`` beside it.
Short flags come from the extraction shards (the clip cache's flags when there is one), so
the notes cover every protocol the study's instances use. ``results/metrics.md`` counts
them (:func:`notes_markdown`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dimcollapse.atomic import atomic_path

NOTE_COLUMNS = ("id", "path", "note", "detail")
SHORT, ROTATED = "short", "rotated"


@dataclass(frozen=True, order=True)
class Note:
    """One row of ``results/failures/<dataset>.notes.csv``."""

    id: str
    path: str
    note: str
    detail: str


def short_rows(shard: str | os.PathLike[str]) -> np.ndarray:
    """Manifest rows whose clip repeats frames in a saved extraction shard (ok rows only;
    its feature arrays are not read)."""
    with np.load(shard, allow_pickle=False) as data:
        return data["rows"][data["ok"] & data["short"]]


def video_notes(manifest: pd.DataFrame, kept_ids: Iterable[str], shards: Mapping[str, Sequence[str]],
                samplings: Mapping[str, Mapping[str, str]]) -> list[Note]:
    """The notes of a dataset's kept videos.

    ``shards``: each model instance's shard files; ``samplings``: each instance's protocol
    ``{"protocol": name, "sampling": sampling key}``. Instances of one sampling share
    their notes (one row per video and sampling, naming the instances).
    """
    kept = set(kept_ids)
    by_sampling: dict[tuple[str, str], list[str]] = {}
    for instance in shards:
        s = samplings[instance]
        by_sampling.setdefault((s["protocol"], s["sampling"]), []).append(instance)
    notes = []
    for (protocol, sampling), instances in by_sampling.items():
        rows = np.unique(np.concatenate([short_rows(f) for i in instances for f in shards[i]] or [np.zeros(0, int)]))
        for r in rows:
            video = manifest.iloc[int(r)]
            if video["id"] in kept:
                frames = f"{video['frames']} frame{'' if video['frames'] == 1 else 's'}"
                notes.append(Note(video["id"], video["path"], SHORT,
                                  f"{protocol} sampling {sampling} ({', '.join(instances)}): the video "
                                  f"({video['duration']:.2f} s, {frames}) is shorter than the clip, which repeats "
                                  "frames"))
    for video in manifest[(manifest["rotation"] != 0) & manifest["id"].isin(kept)].itertuples():
        notes.append(Note(video.id, video.path, ROTATED,
                          f"display rotation {video.rotation}° not applied: decoded as stored, as PyAV and "
                          "PyTorchVideo decode it"))
    return sorted(notes)


def write_notes(path: str | os.PathLike[str], notes: Iterable[Note]) -> None:
    """Write the notes as CSV (header always present, so an empty table is explicit)."""
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(NOTE_COLUMNS)
        writer.writerows(astuple(n) for n in notes)


def read_notes(path: str | os.PathLike[str]) -> list[Note]:
    """Read a table written by :func:`write_notes`."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != NOTE_COLUMNS:
            raise ValueError(f"{path}: not a notes table (columns {reader.fieldnames}, expected {list(NOTE_COLUMNS)})")
        return [Note(**row) for row in reader]


def notes_markdown(tables: Mapping[str, str | os.PathLike[str]]) -> str:
    """The "Videos used with a caveat" section of ``results/metrics.md``: per dataset, how
    many kept videos were short (under any sampling) and carried an unapplied rotation."""
    lines = ["## Videos used with a caveat", "",
             "Kept in every matrix, but not as a viewer sees them: short videos repeat frames to fill the clip, "
             "rotated ones are decoded unrotated (as the original code decodes them). Each table names the videos.",
             "", "| Dataset | Short (frames repeated) | Rotation not applied | Listed in |", "|---|---|---|---|"]
    for dataset, path in tables.items():
        notes = read_notes(path)
        counts = {kind: len({n.id for n in notes if n.note == kind}) for kind in (SHORT, ROTATED)}
        lines.append(f"| {dataset} | {counts[SHORT]} | {counts[ROTATED]} | `{Path(path).as_posix()}` |")
    return "\n".join(lines) + "\n"
