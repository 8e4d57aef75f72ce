"""Videos used with a caveat: short ones (frames repeated) and rotated ones (decoded unrotated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dimcollapse.data.manifest import Row
from dimcollapse.data.probe import probe_video
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.data.video import decode_row
from dimcollapse.extraction.notes import ROTATED, SHORT, notes_markdown, read_notes, video_notes, write_notes
from dimcollapse.extraction.shards import ShardResult
from workflow_helpers import add_noted_videos


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_noted_videos(tmp_path_factory.mktemp("noted"))


def test_the_probe_records_a_display_rotation_that_decoding_does_not_apply(videos: Path) -> None:
    rotated, single = videos / "val/move_down/rotated.mp4", videos / "val/still/one_frame.mp4"
    probed = probe_video(rotated)
    assert (probed.rotation, probed.width, probed.height, probed.frames) == (90, 96, 64, 90)
    assert probe_video(single).rotation == 0 and probe_video(single).frames == 1
    row = Row("r", str(rotated), probed.duration, probed.fps, probed.frames, probed.width, probed.height)
    frames, short = decode_row(row, resolve_protocol("paper", side_size=64, crop_size=64))
    assert frames.shape[1:3] == (64, 96) and not short  # as stored, landscape: not turned to 96 × 64
    one = probe_video(single)
    _, short = decode_row(Row("s", str(single), one.duration, one.fps, one.frames, one.width, one.height),
                          resolve_protocol("paper", side_size=64, crop_size=64))
    assert short


def test_notes_name_short_videos_per_sampling_and_rotated_ones(tmp_path: Path) -> None:
    manifest = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "path": [f"/v/{i}.mp4" for i in "abcd"], "duration": [0.04, 3.0, 3.0, 1.0],
        "frames": [1, 90, 90, 30], "rotation": [0, 90, 0, 270],
    })

    def shard(name: str, rows: list[int], short: list[bool], ok: list[bool] | None = None) -> str:
        path = tmp_path / f"{name}.npz"
        n = len(rows)
        ShardResult(np.array(rows), np.array(ok or [True] * n), {"representation": np.ones((n, 2), np.float32)},
                    [], np.array(short)).save(path)
        return str(path)

    shards = {"sup": [shard("sup0", [0, 1], [True, False]), shard("sup1", [2, 3], [False, True])],
              "simclr": [shard("simclr", [0, 1, 2, 3], [True, False, False, True])],
              "dpc": [shard("dpc", [0, 1, 2, 3], [True, False, True, False], ok=[True, True, True, False])]}
    samplings = {"sup": {"protocol": "paper", "sampling": "paper-1"}, "simclr": {"protocol": "paper", "sampling": "paper-1"},
                 "dpc": {"protocol": "dpc", "sampling": "dpc-2"}}
    notes = video_notes(manifest, ["a", "b", "c"], shards, samplings)  # "d" failed in some stage: not listed
    assert [(n.id, n.note) for n in notes] == [("a", SHORT), ("a", SHORT), ("b", ROTATED), ("c", SHORT)]
    paper = next(n for n in notes if n.id == "a" and "paper-1" in n.detail)
    assert paper.detail.startswith("paper sampling paper-1 (sup, simclr): the video (0.04 s, 1 frame) is shorter")
    assert next(n for n in notes if n.id == "c").detail.startswith("dpc sampling dpc-2 (dpc)")
    assert "display rotation 90° not applied" in next(n for n in notes if n.note == ROTATED).detail

    table = tmp_path / "real.notes.csv"
    write_notes(table, notes)
    assert read_notes(table) == notes and table.read_text().splitlines()[0] == "id,path,note,detail"
    write_notes(tmp_path / "gen.notes.csv", [])
    section = notes_markdown({"real": table, "gen": tmp_path / "gen.notes.csv"})
    assert f"| real | 2 | 1 | `{table.as_posix()}` |" in section and "| gen | 0 | 0 |" in section
    assert read_notes(tmp_path / "gen.notes.csv") == []
    other = tmp_path / "failures.csv"
    other.write_text("id,path,stage,error\n")
    with pytest.raises(ValueError, match="not a notes table"):
        read_notes(other)
