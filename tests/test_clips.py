"""Clip cache (decode once), dataset and loader."""

import json
import math
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from dimcollapse.data import cache_files, clip_cache, clips, video
from dimcollapse.data.clip_cache import ClipCache, build_clip_cache
from dimcollapse.data.clips import ClipDataset, collate_clips, make_loader
from dimcollapse.failures import Failure, VideoError
from dimcollapse.data.protocols import clip_starts, resolve_protocol
from dimcollapse.data.manifest import as_rows
from dimcollapse.data.video import decode_row, load_clip

VIDEOS = Path("/work/shared/testdata/videos")


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the file name of every video the clip layer decodes from now on."""
    decoded: list[str] = []
    original = video.read_frames

    def counting(path, starts, protocol):
        decoded.append(Path(path).name)
        return original(path, starts, protocol)

    monkeypatch.setattr(video, "read_frames", counting)
    return decoded


def _row(vid: str, path: Path) -> dict:
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return {"id": vid, "path": str(path), "duration": float(s.duration * s.time_base),
                    "fps": float(s.average_rate)}
    except (av.FFmpegError, OSError):
        return {"id": vid, "path": str(path), "duration": math.nan, "fps": math.nan}


@pytest.fixture
def manifest(tmp_path: Path) -> pd.DataFrame:
    (tmp_path / "empty.avi").touch()
    rows = [
        _row("megamind", VIDEOS / "Megamind.avi"),
        _row("empty", tmp_path / "empty.avi"),
        _row("tree", VIDEOS / "tree.avi"),
        _row("gone", tmp_path / "gone.avi"),
        _row("vtest", VIDEOS / "vtest.avi"),
    ]
    return pd.DataFrame(rows)


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the clip cache holds the clip")

    monkeypatch.setattr(video, "read_frames", no_decoding)


def test_cache_build_then_read_equals_on_the_fly(tmp_path: Path, manifest: pd.DataFrame, monkeypatch) -> None:
    paper = resolve_protocol("paper")
    cache_dir = tmp_path / "cache" / paper.sampling_key
    seen: list[tuple[int, int]] = []
    failures = build_clip_cache(manifest, "paper", cache_dir, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (5, 5)
    assert [(f.id, f.stage) for f in failures] == [("empty", "decode"), ("gone", "decode")]
    assert "empty (0 bytes)" in failures[0].error and "does not exist" in failures[1].error
    assert sorted(p.name for p in cache_dir.iterdir()) == ["frames.u8", "index.json", "meta.json"]
    assert not list(cache_dir.parent.glob(".*"))  # no partial or old directory left

    cache = ClipCache(cache_dir)
    assert [e.ok for e in cache.entries] == [True, False, True, False, True]
    assert cache.entries[0].shape == (8, 256, 349, 3)  # 8 selected frames at the scaled size (from 528×720)
    assert [e.short for e in cache.entries] == [False, False, True, False, False]  # tree: < 8 frames/window
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert meta["data_bytes"] == sum(e.nbytes for e in cache.entries) == (cache_dir / "frames.u8").stat().st_size

    fly = ClipDataset(manifest, "paper")
    cached = ClipDataset(manifest, "paper", cache=cache_dir)
    for i in (0, 2, 4):
        a, b = fly[i], cached[i]
        assert a["ok"] and b["ok"] and a["short"] == b["short"]
        assert a["video"].shape == b["video"].shape == (1, 3, 8, 224, 224)
        # the cache rounds frames scaled down to uint8: at most half a grey level apart;
        # tree.avi (320×240, below the scaled size) is stored as decoded, exactly
        gap = (a["video"] - b["video"]).abs().max().item()
        assert (gap == 0) if i == 2 else (0 < gap <= 0.5 / 255 / min(paper.std) + 1e-6)
        row = manifest.iloc[i]
        start = clip_starts(paper, row.duration, fps=row.fps, video_id=row.id)[0]
        assert torch.equal(a["video"][0], load_clip(row.path, start))
    for i in (1, 3):
        assert not cached[i]["ok"] and cached[i]["error"] == fly[i]["error"]
        assert str(manifest.iloc[i].path) in cached[i]["error"]

    # decode once: a second build and a second consumer read the cache, never the videos
    _forbid_decoding(monkeypatch)
    assert build_clip_cache(manifest, "paper", cache_dir, workers=2) == failures
    other = ClipDataset(manifest, resolve_protocol("paper", crop_size=256, mean=[0.45] * 3, std=[0.225] * 3),
                        cache=cache_dir)  # another method with the same sampling
    item = other[4]
    assert item["ok"] and item["video"].shape == (1, 3, 8, 256, 256)
    assert not fly[0]["ok"]  # proof that decoding really was forbidden


def test_cache_refuses_other_sampling_or_rows(tmp_path: Path, manifest: pd.DataFrame) -> None:
    rows = manifest.iloc[[2]]
    build_clip_cache(rows, "paper", tmp_path / "c", workers=0)
    with pytest.raises(ValueError, match="built for sampling"):
        ClipDataset(rows, resolve_protocol("paper", frames=16, rate=4), cache=tmp_path / "c")
    with pytest.raises(ValueError, match="other manifest rows"):
        ClipDataset(manifest.iloc[[4]], "paper", cache=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="not a complete clip cache"):
        ClipCache(tmp_path / "missing")


def test_on_error_fail_raises_naming_the_file(tmp_path: Path, manifest: pd.DataFrame) -> None:
    with pytest.raises(VideoError, match="empty.avi: decode: file is empty"):
        build_clip_cache(manifest, "paper", tmp_path / "c", workers=0, on_error="fail")
    assert not (tmp_path / "c").exists()  # nothing that looks complete
    with pytest.raises(ValueError, match="on_error"):
        build_clip_cache(manifest, "paper", tmp_path / "c", workers=0, on_error="ignore")


def test_interrupted_build_resumes_without_redecoding(tmp_path: Path, manifest: pd.DataFrame, monkeypatch) -> None:
    cache_dir = tmp_path / "c"

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_clip_cache(manifest, "paper", cache_dir, workers=0, progress=stop_after_three)
    assert not cache_dir.exists() and (tmp_path / ".c.partial").is_dir()
    with pytest.raises(ValueError, match="incomplete clip cache"):
        ClipCache(tmp_path / ".c.partial")  # a partial build never reads as a cache

    decoded = count_decodes(monkeypatch)
    failures = build_clip_cache(manifest, "paper", cache_dir, workers=0)
    # Megamind and tree were committed before the interruption; only vtest is decoded again
    # (failed rows are retried: a file may have been fixed meanwhile)
    assert decoded == ["vtest.avi"]
    assert [f.id for f in failures] == ["empty", "gone"]
    fresh = tmp_path / "fresh"
    build_clip_cache(manifest, "paper", fresh, workers=0)
    assert (fresh / "frames.u8").read_bytes() == (cache_dir / "frames.u8").read_bytes()
    assert ClipCache(fresh).entries == ClipCache(cache_dir).entries


def test_resume_redecodes_rows_whose_frames_did_not_reach_the_file(
    tmp_path: Path, manifest: pd.DataFrame, monkeypatch
) -> None:
    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_clip_cache(manifest, "paper", tmp_path / "c", workers=0, progress=stop_after_three)
    data = tmp_path / ".c.partial" / "frames.u8"
    os.truncate(data, data.stat().st_size - 1)  # tree.avi's frames were not fully written
    decoded = count_decodes(monkeypatch)
    build_clip_cache(manifest, "paper", tmp_path / "c", workers=0)
    assert decoded == ["tree.avi", "vtest.avi"]
    cache = ClipCache(tmp_path / "c")
    paper = resolve_protocol("paper")
    frames, _ = decode_row(as_rows(manifest)[2], paper)
    assert np.array_equal(cache.frames(2), clip_cache.cache_frames(frames, paper))


def test_rebuild_replaces_a_cache_of_other_rows(tmp_path: Path, manifest: pd.DataFrame) -> None:
    build_clip_cache(manifest.iloc[[2]], "paper", tmp_path / "c", workers=0)
    build_clip_cache(manifest.iloc[[2, 4]], "paper", tmp_path / "c", workers=0)
    assert [e.id for e in ClipCache(tmp_path / "c").entries] == ["tree", "vtest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "empty.avi"]


def test_slowfast_and_dpc_items(tmp_path: Path, manifest: pd.DataFrame) -> None:
    rows = manifest.iloc[[2]]  # tree.avi: small frames, so 30 views stay cheap
    sf = ClipDataset(rows, "slowfast_test")[0]
    # tree.avi's windows find no frame at SlowFast's pts (its header claims 444 frames, 68
    # decode), so SlowFast decodes the whole video and places each window on it: no repeats
    assert sf["ok"] and sf["video"].shape == (30, 3, 8, 256, 256) and not sf["short"]
    build_clip_cache(rows, "slowfast_test", tmp_path / "sf", workers=0)
    # frames scaled by FFmpeg while decoding (SlowFast's torchvision backend): the cache is exact
    assert torch.equal(ClipDataset(rows, "slowfast_test", cache=tmp_path / "sf")[0]["video"], sf["video"])
    dpc = ClipDataset(rows, "dpc")[0]
    assert dpc["ok"] and dpc["video"].shape == (1, 5, 3, 5, 224, 224)
    build_clip_cache(rows, "dpc", tmp_path / "dpc", workers=0)  # DPC scales in uint8 too: exact
    assert torch.equal(ClipDataset(rows, "dpc", cache=tmp_path / "dpc")[0]["video"], dpc["video"])


def test_loader_with_two_workers_reports_failures_and_keeps_order(manifest: pd.DataFrame, monkeypatch) -> None:
    def crash_on_tree(path, starts, protocol):
        if Path(path).name == "tree.avi":
            raise RuntimeError("decoder crashed")
        return original(path, starts, protocol)

    original = video.read_frames
    monkeypatch.setattr(video, "read_frames", crash_on_tree)  # inherited by the forked workers
    loader = make_loader(ClipDataset(manifest, "paper"), batch_size=2, workers=2)
    ok_index, failed = [], {}
    for batch in loader:
        assert batch["video"].shape[0] == len(batch["index"]) == len(batch["short"])
        if len(batch["index"]):
            assert batch["video"].shape[1:] == (1, 3, 8, 224, 224) and batch["video"].dtype == torch.float32
        ok_index += batch["index"].tolist()
        failed.update(zip(batch["failed_index"].tolist(), batch["failed_error"]))
    assert ok_index == [0, 4]
    assert sorted(failed) == [1, 2, 3]
    assert "RuntimeError: decoder crashed" in failed[2] and "file does not exist" in failed[3]


def test_collate_of_only_failures() -> None:
    batch = collate_clips([{"index": 3, "video": torch.empty(0), "ok": False, "short": False, "error": "bad"}])
    assert batch["video"].numel() == 0 and batch["index"].tolist() == [] and batch["failed_index"].tolist() == [3]
    assert batch["failed_error"] == ["bad"]


def test_rows_need_the_manifest_columns() -> None:
    with pytest.raises(ValueError, match=r"missing columns \['duration', 'fps'\]"):
        ClipDataset(pd.DataFrame({"id": ["a"], "path": ["/x.mp4"]}), "paper")
    failure = Failure("a", "/x", "decode", "boom")
    assert clip_cache.CacheEntry("a", "/x", False, False, 0, (0, 0, 0, 0), "boom").failure() == failure


def test_cache_stores_scaled_frames_within_the_byte_bound(tmp_path: Path, manifest: pd.DataFrame) -> None:
    rows = manifest.iloc[[0, 4]].assign(width=[720, 768], height=[528, 576], frames=[270, 795])
    paper = resolve_protocol("paper")
    build_clip_cache(rows, paper, tmp_path / "c", workers=0)
    cache = ClipCache(tmp_path / "c")
    for entry, row in zip(cache.entries, as_rows(rows)):
        h, w = entry.shape[1:3]
        assert min(h, w) == 256 and entry.nbytes == 8 * h * w * 3  # ≤ 1.25 × T·h·w·3, at the scaled size
        assert entry.shape == clip_cache.stored_shape(row, paper)  # the estimate is what gets stored
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["data_bytes"] == clip_cache.estimate_cache_bytes(as_rows(rows), paper)[0]
    # a source smaller than the scaled size (tree.avi, 320×240) is stored as decoded: exact
    small = manifest.iloc[[2]].assign(width=[320], height=[240], frames=[68])
    build_clip_cache(small, paper, tmp_path / "s", workers=0)
    entry = ClipCache(tmp_path / "s").entries[0]
    assert entry.shape == (8, 240, 320, 3) == clip_cache.stored_shape(as_rows(small)[0], paper)
    assert torch.equal(ClipDataset(small, paper, cache=tmp_path / "s")[0]["video"], ClipDataset(small, paper)[0]["video"])


def test_full_disk_stops_before_writing_naming_path_need_and_free(
    tmp_path: Path, manifest: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimcollapse import diskspace

    rows = manifest.iloc[[0, 4]].assign(width=[720, 768], height=[528, 576], frames=[270, 795])
    need = clip_cache.estimate_cache_bytes(as_rows(rows), resolve_protocol("paper"))[0]
    assert need == 8 * 256 * 349 * 3 + 8 * 256 * 341 * 3
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: need - 1)
    decoded = count_decodes(monkeypatch)
    with pytest.raises(diskspace.InsufficientSpace) as err:
        build_clip_cache(rows, "paper", tmp_path / "c", workers=0)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'c'}: the clip cache of 2 videos needs about 4.2 MB ({need} bytes)")
    assert f"only 4.2 MB ({need - 1} bytes) is free" in message
    assert decoded == [] and not (tmp_path / "c").exists() and not list(tmp_path.glob(".c*"))
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: need)
    assert build_clip_cache(rows, "paper", tmp_path / "c", workers=0) == []


def test_free_bytes_of_a_path_not_created_yet(tmp_path: Path) -> None:
    from dimcollapse.diskspace import free_bytes

    assert free_bytes(tmp_path / "a" / "b" / "c") == free_bytes(tmp_path) > 0


def test_uint8_scaling_does_not_depend_on_the_thread_count() -> None:
    """torch's bilinear kernel differs in the last bit between thread counts; rounded to
    uint8 that would be a grey level, so the stored frames are scaled on one thread."""
    frames = torch.randint(0, 256, (4, 120, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    paper = resolve_protocol("paper", side_size=64, crop_size=64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = clip_cache.cache_frames(frames.numpy(), paper)
        torch.set_num_threads(4)
        four = clip_cache.cache_frames(frames.numpy(), paper)
        assert torch.get_num_threads() == 4  # restored
    finally:
        torch.set_num_threads(threads)
    assert one.shape == (4, 64, 85, 3) and np.array_equal(one, four)


# ---------------------------------------------------------------- rebuilds reuse unchanged rows
def _content_rows(paths: list[Path]) -> pd.DataFrame:
    """Manifest rows with the content hash the manifest stage records."""
    from dimcollapse.data.content import file_digest

    return pd.DataFrame([{**_row(p.stem, p), "content": file_digest(p)} for p in paths])


@pytest.fixture
def own_videos(tmp_path: Path) -> list[Path]:
    """Copies of the test videos that a test may touch, move or change."""
    src = tmp_path / "videos"
    src.mkdir()
    return [Path(shutil.copyfile(VIDEOS / name, src / name)) for name in ("tree.avi", "vtest.avi", "Megamind.avi")]


def test_rebuild_after_touching_or_copying_every_video_decodes_nothing(
    tmp_path: Path, own_videos: list[Path], monkeypatch
) -> None:
    cache_dir = tmp_path / "c"
    first = clip_cache.update_clip_cache(_content_rows(own_videos), "paper", cache_dir, workers=2)  # any row order
    assert (first.reused, first.decoded) == (0, 3)
    data = (cache_dir / "frames.u8").read_bytes()
    decoded = count_decodes(monkeypatch)

    for p in own_videos:  # touch: new mtimes, same bytes
        os.utime(p, (1e9, 1e9))
    again = clip_cache.update_clip_cache(_content_rows(own_videos), "paper", cache_dir, workers=0)
    assert decoded == [] and (again.reused, again.decoded) == (3, 0)

    # a copy of the dataset elsewhere (new paths, new rows fingerprint): frames copied over
    (tmp_path / "copy").mkdir()
    copied = [Path(shutil.copyfile(p, tmp_path / "copy" / p.name)) for p in own_videos]
    moved = clip_cache.update_clip_cache(_content_rows(copied), "paper", cache_dir, workers=0)
    assert decoded == [] and (moved.reused, moved.decoded) == (3, 0)
    assert (cache_dir / "frames.u8").read_bytes() == data
    meta = json.loads((cache_dir / "meta.json").read_text())
    assert (meta["reused"], meta["decoded"]) == (3, 0)
    assert [e.path for e in ClipCache(cache_dir).entries] == [str(p) for p in copied]
    ClipDataset(_content_rows(copied), "paper", cache=cache_dir)  # compatible with the new manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "copy", "videos"]  # no partial or old copy left


def test_rebuild_decodes_only_added_or_changed_videos(tmp_path: Path, own_videos: list[Path], monkeypatch) -> None:
    cache_dir = tmp_path / "c"
    tree, vtest, megamind = own_videos
    clip_cache.update_clip_cache(_content_rows([tree, vtest]), "paper", cache_dir, workers=0)
    decoded = count_decodes(monkeypatch)

    added = clip_cache.update_clip_cache(_content_rows([tree, megamind, vtest]), "paper", cache_dir, workers=0)
    assert decoded == ["Megamind.avi"] and (added.reused, added.decoded) == (2, 1)
    fresh = tmp_path / "fresh"
    build_clip_cache(_content_rows([tree, megamind, vtest]), "paper", fresh, workers=0)
    rebuilt, clean = ClipCache(cache_dir), ClipCache(fresh)
    for i in range(3):
        assert np.array_equal(rebuilt.frames(i), clean.frames(i))

    # same path, duration and fps, other bytes: its stored frames are not trusted
    decoded.clear()
    with open(tree, "ab") as fh:
        fh.write(b"\0")
    changed = clip_cache.update_clip_cache(_content_rows([tree, megamind, vtest]), "paper", cache_dir, workers=0)
    assert decoded == ["tree.avi"] and (changed.reused, changed.decoded) == (2, 1)


def test_rebuild_for_another_sampling_reuses_nothing(tmp_path: Path, own_videos: list[Path], monkeypatch) -> None:
    rows = _content_rows(own_videos[:2])
    clip_cache.update_clip_cache(rows, "paper", tmp_path / "c", workers=0)
    decoded = count_decodes(monkeypatch)
    other = clip_cache.update_clip_cache(rows, resolve_protocol("paper", frames=4, rate=4), tmp_path / "c", workers=0)
    assert decoded == ["tree.avi", "vtest.avi"] and (other.reused, other.decoded) == (0, 2)
    assert ClipCache(tmp_path / "c").frames(0).shape[0] == 4


def test_rows_without_content_are_never_reused(tmp_path: Path, own_videos: list[Path], monkeypatch) -> None:
    rows = _content_rows(own_videos[:2])
    clip_cache.update_clip_cache(rows, "paper", tmp_path / "c", workers=0)
    decoded = count_decodes(monkeypatch)
    unhashed = rows.drop(columns="content").iloc[::-1]  # other rows, and no hashes to prove them unchanged
    clip_cache.update_clip_cache(unhashed, "paper", tmp_path / "c", workers=0)
    assert decoded == ["vtest.avi", "tree.avi"]


def test_marker_names_its_cache_directory(tmp_path: Path) -> None:
    marker = cache_files.marker_path(tmp_path / "clips" / "paper-8x8")
    assert marker.name == "paper-8x8.cache.json"
    assert cache_files.cache_dir_of(marker) == tmp_path / "clips" / "paper-8x8"
    with pytest.raises(ValueError, match="not a clip cache marker"):
        cache_files.cache_dir_of(tmp_path / "paper-8x8.failures.csv")


@pytest.mark.parametrize("damage", ["truncate frames", "tear index", "tear meta"])
def test_a_damaged_cache_is_named_quarantined_and_decoded_to_the_same_frames(
    tmp_path: Path, manifest: pd.DataFrame, damage: str, caplog
) -> None:
    rows = manifest.iloc[[0, 2]]  # Megamind is scaled down (uint8 rounding), tree is stored as decoded
    cache_dir = tmp_path / "clips" / "ds" / "key"
    build_clip_cache(rows, "paper", cache_dir, workers=0)
    good = ClipDataset(rows, "paper", cache=cache_dir)
    expected = [good[i]["video"] for i in range(2)]
    cache_files.marker_path(cache_dir).write_text("{}")
    name = {"truncate frames": "frames.u8", "tear index": "index.json", "tear meta": "meta.json"}[damage]
    damaged = cache_dir / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(cache_files.CacheUnreadable, match=str(damaged)):
        ClipCache(cache_dir)

    dataset = clips.open_clip_dataset(rows, resolve_protocol("paper"), cache_dir)
    assert dataset.cache is None and all(torch.equal(dataset[i]["video"], expected[i]) for i in range(2))
    assert not cache_dir.exists() and (tmp_path / "clips" / "ds" / "quarantine" / "key" / name).exists()
    assert str(damaged) in caplog.text and "quarantine" in caplog.text
    # The marker stays for the running workflow; the next run drops it and builds the cache.
    assert cache_files.marker_path(cache_dir).exists()
    assert cache_files.drop_stale_marker(cache_dir) == f"{cache_dir} is missing"
    assert not cache_files.marker_path(cache_dir).exists()


def test_a_missing_frames_file_is_unreadable_whatever_the_meta_says(tmp_path: Path, manifest: pd.DataFrame) -> None:
    cache_dir = tmp_path / "key"
    build_clip_cache(manifest.iloc[[2]], "paper", cache_dir, workers=0)
    (cache_dir / "frames.u8").unlink()
    meta = json.loads((cache_dir / "meta.json").read_text())
    (cache_dir / "meta.json").write_text(json.dumps({**meta, "data_bytes": None}))  # a damaged meta
    with pytest.raises(cache_files.CacheUnreadable, match="frames.u8: missing"):
        ClipCache(cache_dir)


def test_stale_markers_are_dropped_healthy_ones_kept(tmp_path: Path, manifest: pd.DataFrame) -> None:
    cache_dir = tmp_path / "key"
    build_clip_cache(manifest.iloc[[2]], "paper", cache_dir, workers=0)
    marker = cache_files.marker_path(cache_dir)
    assert cache_files.drop_stale_marker(cache_dir) is None  # no marker: nothing to do
    marker.write_text("{}")
    assert cache_files.drop_stale_marker(cache_dir) is None and marker.exists()
    frames = cache_dir / "frames.u8"
    frames.write_bytes(frames.read_bytes()[:10])
    assert str(frames) in cache_files.drop_stale_marker(cache_dir) and not marker.exists()


def test_a_rebuild_sets_a_damaged_previous_cache_aside(tmp_path: Path, manifest: pd.DataFrame) -> None:
    rows = manifest.iloc[[2]]
    cache_dir = tmp_path / "key"
    build_clip_cache(rows, "paper", cache_dir, workers=0)
    (cache_dir / "index.json").write_text("[{")
    build = clip_cache.update_clip_cache(rows, "paper", cache_dir, workers=0)
    assert (build.reused, build.decoded) == (0, 1)
    assert (tmp_path / "quarantine" / "key" / "index.json").read_text() == "[{"
    assert len(ClipCache(cache_dir)) == 1
