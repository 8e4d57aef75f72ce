from pathlib import Path

import pytest

from dimcollapse.atomic import atomic_path, write_json
from dimcollapse.failures import Failure, VideoError, VideoExcluded, read_failures, write_failures


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert list(tmp_path.iterdir()) == [final]


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    final = tmp_path / "sub" / "out.json"
    write_json(final, {"b": 1, "a": [1, 2]})
    assert final.read_text().startswith("{\n  \"a\"")
    assert [p.name for p in final.parent.iterdir()] == ["out.json"]


def test_failure_roundtrip_and_video_error_stage(tmp_path: Path) -> None:
    err = VideoError("/x/a.mp4", "open", "moov atom not found")
    rows = [
        Failure.from_error("b", ValueError("bad"), stage="decode", path="/x/b.mp4"),
        Failure.from_error("a", err, stage="ignored", path="/other"),
    ]
    out = tmp_path / "failures.csv"
    write_failures(out, rows)
    back = read_failures(out)
    assert back == [Failure("a", "/x/a.mp4", "open", "moov atom not found"),
                    Failure("b", "/x/b.mp4", "decode", "ValueError: bad")]
    assert "/x/a.mp4" in str(err)


def test_empty_failure_table_has_header(tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    write_failures(out, [])
    assert out.read_text().strip() == "id,path,stage,error"
    assert read_failures(out) == []


def test_read_failures_rejects_other_csv(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="x.csv"):
        read_failures(out)


def test_video_error_pickles_for_worker_processes() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(VideoError("/a.mp4", "decode", "bad frame")))
    assert (err.path, err.stage, err.message) == ("/a.mp4", "decode", "bad frame")


def test_video_excluded_stays_excluded_when_pickled() -> None:
    # An exclusion never stops a build; sent back from a worker it must not turn into an error.
    import pickle

    err = pickle.loads(pickle.dumps(VideoExcluded("/a.mp4", "decode", "excluded: 3 frames")))
    assert type(err) is VideoExcluded
    assert (err.path, err.stage, err.message) == ("/a.mp4", "decode", "excluded: 3 frames")


def test_atomic_files_are_not_private(tmp_path: Path) -> None:
    import os

    write_json(tmp_path / "x.json", {})
    assert os.stat(tmp_path / "x.json").st_mode & 0o044 == 0o044
