"""Failure records: every video that cannot be used is reported, never silently dropped.

A failure names the manifest id, the file, the pipeline stage that hit it and the
error message. Stages append to per-dataset failure tables; the union over stages is
what every method's features exclude, so feature rows stay aligned across methods.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from dimcollapse.atomic import atomic_path
from dimcollapse.errors import KnownError

FAILURE_COLUMNS = ("id", "path", "stage", "error")


class VideoError(KnownError):
    """A video that cannot be used, with the file and the stage that found the problem."""

    advice = ("fix or replace the file, or set extraction.on_error: skip to leave it out "
              "(it is then listed in results/failures/)")

    def __init__(self, path: str | os.PathLike[str], stage: str, message: str) -> None:
        self.path = str(path)
        self.stage = stage
        self.message = message
        super().__init__(f"{self.path}: {stage}: {message}")

    def __reduce__(self) -> tuple[type[VideoError], tuple[str, str, str]]:
        # Worker processes (probing pools, DataLoader workers) send errors back pickled;
        # a subclass (VideoExcluded) must come back as itself, not as a plain VideoError.
        return (type(self), (self.path, self.stage, self.message))


class VideoExcluded(VideoError):
    """A video the protocol leaves out by rule (e.g. DPC's ``min_frames``), not a broken one.

    It is recorded as a failure with the reason, but never stops a build, even with
    ``on_error: fail``.
    """


@dataclass(frozen=True)
class Failure:
    """One row of ``results/failures/{dataset}.csv``."""

    id: str
    path: str
    stage: str
    error: str

    @classmethod
    def from_error(cls, video_id: str, err: BaseException, stage: str, path: str) -> Failure:
        """Build a record from an exception; a :class:`VideoError` supplies its own stage."""
        if isinstance(err, VideoError):
            return cls(video_id, err.path, err.stage, err.message)
        return cls(video_id, path, stage, f"{type(err).__name__}: {err}")


def write_failures(path: str | os.PathLike[str], failures: Iterable[Failure]) -> None:
    """Write failure records as CSV (header always present, so an empty table is explicit)."""
    rows = sorted(set(failures), key=lambda f: (f.id, f.stage))
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS)
        writer.writeheader()
        for f in rows:
            writer.writerow(asdict(f))


def read_failures(path: str | os.PathLike[str]) -> list[Failure]:
    """Read a failure table written by :func:`write_failures`."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(FAILURE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a failure table, missing columns {sorted(missing)}")
        return [Failure(**{k.name: row[k.name] for k in fields(Failure)}) for row in reader]

