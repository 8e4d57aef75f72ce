"""A disk that fills up during a write: every writer of the pipeline stops with one line
naming the file and the bytes it needed, and leaves no partial file behind.

The disk "fills" after a few bytes: the low-level write each writer uses (its module's
``open``, ``Path.write_bytes``, ``Figure.savefig``) writes them and then raises ENOSPC,
as the kernel does."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dimcollapse.disk_full import DiskFull
from dimcollapse.errors import KnownError, one_line

ROOM = 100  # bytes a file gets before the disk is full


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullFile:
    """A file object whose writes fail once ``ROOM`` bytes are written (the rest passes through)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._left = ROOM

    def write(self, data: Any) -> int:
        size = len(data)
        self._fh.write(data[: max(self._left, 0)])
        self._left -= size
        if self._left < 0:
            raise enospc()
        return size

    def __enter__(self) -> "FullFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def full_disk_open(monkeypatch: pytest.MonkeyPatch, module: Any, after: int = 0) -> None:
    """Files ``module`` opens for writing fill the disk (after ``after`` such files went through)."""
    opened = 0

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        fh = builtins.open(file, mode, *args, **kwargs)
        if not any(c in mode for c in "wa+"):
            return fh
        opened += 1
        return fh if opened <= after else FullFile(fh)

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def check_one_line(err: DiskFull, path: Path) -> str:
    message = str(err)
    assert isinstance(err, KnownError) and isinstance(err, OSError)
    assert "\n" not in message and one_line(err) == message
    assert message.startswith(f"{path}: disk full (No space left on device) while writing it: ")
    assert " bytes)" in message and "free there" in message
    return message


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_store_segment_and_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.extraction import store as store_module
    from dimcollapse.extraction.shards import ShardResult
    from dimcollapse.extraction.store import FeatureStore, clip_keys

    instance = FeatureStore(tmp_path / "store").instance({"method": "DPC"})
    rows = np.arange(4)
    result = ShardResult(rows, np.ones(4, bool), {"representation": np.ones((4, 512), np.float32)}, [])
    keys = clip_keys([f"c{r}" for r in rows], [2.0] * 4, [25.0] * 4)
    full_disk_open(monkeypatch, store_module)
    with pytest.raises(DiskFull) as err:
        instance.add(keys, result, [f"v{r}" for r in rows])
    message = check_one_line(err.value, Path(str(err.value).split(":")[0]))
    assert Path(message.split(":")[0]).parent == instance.dir / "data" and "it needs about 8.2 KB" in message
    assert "nothing of it was kept" in message
    assert not list((instance.dir / "data").iterdir()) and not list((instance.dir / "keys").iterdir())

    full_disk_open(monkeypatch, store_module, after=1)  # the segment is written, its index is not
    with pytest.raises(DiskFull) as err:
        instance.add(keys, result, [f"v{r}" for r in rows])
    assert Path(str(err.value).split(":")[0]).parent == instance.dir / "keys"
    assert not list((instance.dir / "keys").iterdir()) and not list((instance.dir / "data").iterdir())
    no_temporaries(instance.dir)
    assert not instance.lookup(keys, ["representation"]).found.any()


def test_shard_and_merged_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.extraction import features, shards
    from dimcollapse.extraction.features import save_npy
    from dimcollapse.extraction.shards import ShardResult

    shard = tmp_path / "shards" / "0-of-1.npz"
    full_disk_open(monkeypatch, shards)
    result = ShardResult(np.arange(3), np.ones(3, bool), {"representation": np.ones((3, 64), np.float32)}, [])
    with pytest.raises(DiskFull) as err:
        result.save(shard)
    check_one_line(err.value, shard)
    assert list(shard.parent.iterdir()) == []

    matrix = tmp_path / "representation.npy"
    matrix.write_bytes(b"the previous version")
    full_disk_open(monkeypatch, features)
    with pytest.raises(DiskFull) as err:
        save_npy(matrix, np.ones((1000, 64)))
    assert "it needs about 256.0 KB (256000 bytes)" in check_one_line(err.value, matrix)
    assert matrix.read_bytes() == b"the previous version" and list(tmp_path.glob("*.tmp")) == []


def test_tables_json_and_markdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse import failures
    from dimcollapse.atomic import write_json, write_text
    from dimcollapse.failures import Failure, write_failures

    table = tmp_path / "failures" / "real.csv"
    full_disk_open(monkeypatch, failures)
    with pytest.raises(DiskFull) as err:
        write_failures(table, [Failure(f"v{i}", f"/videos/v{i}.mp4", "decode", "broken") for i in range(20)])
    message = check_one_line(err.value, table)
    assert "it needs more than the 100 B (100 bytes) written when the disk filled" in message
    assert list(table.parent.iterdir()) == []

    def write_bytes(self: Path, data: bytes) -> int:
        with builtins.open(self, "wb") as fh:
            return FullFile(fh).write(data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    markdown = tmp_path / "metrics.md"
    with pytest.raises(DiskFull) as err:
        write_text(markdown, "| a |\n" * 100)
    assert "it needs about 600 B (600 bytes)" in check_one_line(err.value, markdown)
    sidecar = tmp_path / "representation.json"
    with pytest.raises(DiskFull) as err:
        write_json(sidecar, {"rows": list(range(100))})
    check_one_line(err.value, sidecar)
    assert list(tmp_path.glob("*.*")) == []


def test_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from dimcollapse.analysis.figures import save_figure

    real = Figure.savefig

    def savefig(self: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        with builtins.open(fname, "wb") as fh:
            real(self, FullFile(fh), *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    png = tmp_path / "figures" / "demo.png"
    with pytest.raises(DiskFull) as err:
        save_figure(fig, png, png.with_suffix(".pdf"))
    check_one_line(err.value, png)
    assert list(png.parent.iterdir()) == []


def test_clip_cache_keeps_the_rows_it_wrote_for_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dimcollapse.data import clip_cache
    from dimcollapse.data.clip_cache import build_clip_cache

    video = "/work/shared/testdata/videos/tree.avi"
    rows = [{"id": "t", "path": video, "duration": 1.0, "fps": 25.0, "width": 320, "height": 240}]
    cache = tmp_path / "clips" / "ds" / "paper-x"
    partial = cache.parent / ".paper-x.partial"
    full_disk_open(monkeypatch, clip_cache, after=2)  # the data file's first open and the progress log go through
    with pytest.raises(DiskFull) as err:
        build_clip_cache(rows, "paper", cache, workers=0)
    message = check_one_line(err.value, partial / "frames.u8")
    assert "it needs about 1.8 MB" in message and f"the rows written so far stay in {partial}" in message
    assert not cache.exists() and (partial / "frames.u8").stat().st_size == 0  # the torn row's bytes are gone
    monkeypatch.undo()
    assert build_clip_cache(rows, "paper", cache, workers=0) == [] and not partial.exists()


def test_what_counts_as_a_full_disk() -> None:
    from dimcollapse.disk_full import is_disk_full

    assert is_disk_full(enospc()) and is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    # np.save into a real file reports the short write of a full disk without an errno
    assert is_disk_full(OSError("1024000 requested and 786400 written"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied")) and not is_disk_full(OSError("other"))
    assert not is_disk_full(DiskFull("already named")) and not is_disk_full(ValueError("x"))
