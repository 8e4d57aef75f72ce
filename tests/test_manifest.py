"""Manifest building, probing of good and bad videos, and the dataset fingerprint."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from dimcollapse.data.demo import TINY, generate_demo, plan_demo
from dimcollapse.failures import VideoError
from dimcollapse.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    build_manifest,
    fingerprint,
    read_manifest,
    write_manifest,
)
from dimcollapse.data.probe import ProbeResult, probe_many, probe_video

SAMPLES = Path("/work/shared/testdata/videos")
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample videos not available")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_demo(root, seed=3, **TINY)
    return root


def _demo_cfg(root: Path) -> dict:
    return {"layout": "kinetics", "root": str(root), "split": "val"}


# --------------------------------------------------------------------------- manifest


def test_manifest_columns_order_and_values(demo_root: Path) -> None:
    frame, failures = build_manifest(_demo_cfg(demo_root), progress=False)
    assert failures == []
    assert tuple(frame.columns) == MANIFEST_COLUMNS
    plan = {v.relpath.removeprefix("val/").rsplit(".", 1)[0]: v for v in plan_demo(seed=3, **TINY)}
    assert sorted(frame["id"]) == sorted(plan)
    assert frame["id"].is_unique
    keys = list(zip(frame["label"], frame["id"]))
    assert keys == sorted(keys)
    assert frame["label"].dtype == np.int64 and frame["frames"].dtype == np.int64
    for row in frame.itertuples():
        video = plan[row.id]
        assert row.label_name == video.label_name
        assert Path(row.path) == demo_root / video.relpath
        assert row.frames == video.frames
        assert row.fps == pytest.approx(video.fps, rel=0.01)  # webm keeps ms timestamps
        assert row.duration == pytest.approx(video.frames / video.fps, abs=0.002)


def test_parallel_probing_gives_the_same_manifest(demo_root: Path) -> None:
    serial, _ = build_manifest(_demo_cfg(demo_root), workers=1, progress=False)
    parallel, _ = build_manifest(_demo_cfg(demo_root), workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)


def test_manifest_roundtrip(demo_root: Path, tmp_path: Path) -> None:
    frame, _ = build_manifest(_demo_cfg(demo_root), progress=False)
    out = tmp_path / "results" / "manifests" / "demo.csv"
    write_manifest(out, frame)
    assert out.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    pd.testing.assert_frame_equal(read_manifest(out), frame)


@needs_samples
def test_manifest_of_sample_videos() -> None:
    """Header counts are not trusted: tree.avi claims 444 frames and holds 68."""
    tree = probe_video(SAMPLES / "tree.avi")
    with av.open(str(SAMPLES / "tree.avi")) as container:
        assert container.streams.video[0].frames == 444
        decoded = sum(1 for _ in container.decode(video=0))
    assert tree.frames == decoded == 68
    assert tree.duration == pytest.approx(444 * 66667 / 1_000_000)
    assert tree.fps == pytest.approx(68 / tree.duration)
    mega = probe_video(SAMPLES / "Megamind.avi")  # B-frames: pts start at 1
    assert mega == ProbeResult(duration=pytest.approx(270 / (2997 / 125)), fps=pytest.approx(23.976), frames=270,
                               width=720, height=528)
    vtest = probe_video(SAMPLES / "vtest.avi")
    assert (vtest.frames, vtest.fps, vtest.duration) == (795, pytest.approx(10.0), pytest.approx(79.5))
    # Megamind_bugy.avi is a differently damaged XviD encode, but FFmpeg 8.1 decodes all
    # 270 frames of it, so it is usable, not a failure.
    bugy = probe_video(SAMPLES / "Megamind_bugy.avi")
    assert (bugy.frames, bugy.fps, bugy.duration) == (270, pytest.approx(30.0), pytest.approx(9.0))


# --------------------------------------------------------------------------- bad inputs


def _first(root: Path, ext: str) -> Path:
    return sorted((root / "val").rglob(f"*.{ext}"))[0]


def _largest(root: Path, ext: str) -> Path:
    return max(sorted((root / "val").rglob(f"*.{ext}")), key=lambda p: p.stat().st_size)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


def _bad_inputs(demo_root: Path, bad: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message fragment)."""
    bad.mkdir(parents=True, exist_ok=True)
    avi, mp4, webm = _first(demo_root, "avi"), _first(demo_root, "mp4"), _largest(demo_root, "webm")
    cases: dict[str, tuple[Path, str]] = {}
    (bad / "empty.mp4").write_bytes(b"")
    cases["zero bytes"] = (bad / "empty.mp4", "empty file (0 bytes)")
    cases["nonexistent"] = (bad / "ghost.mp4", "file does not exist")
    (bad / "folder.mp4").mkdir(exist_ok=True)
    cases["directory"] = (bad / "folder.mp4", "not a regular file")
    (bad / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    cases["random bytes"] = (bad / "random.mp4", "cannot open as a video container")
    data = mp4.read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index (moov) is at the end
    cases["truncated mp4"] = (bad / "truncated.mp4", "cannot open as a video container")
    data = avi.read_bytes()
    pos, size = _packets(avi)[len(_packets(avi)) // 2]
    (bad / "truncated.avi").write_bytes(data[: pos + size // 2])
    cases["truncated avi"] = (bad / "truncated.avi", "incomplete or corrupt")
    data = webm.read_bytes()
    (bad / "truncated.webm").write_bytes(data[: len(data) // 2])
    cases["truncated webm"] = (bad / "truncated.webm", "truncated: the header says")
    cases["audio only"] = (_audio_only(bad / "audio.mp4"), "no video stream (streams present: audio)")
    (bad / "unknown_codec.avi").write_bytes(avi.read_bytes().replace(b"FMP4", b"ZZZZ"))
    cases["unsupported codec"] = (bad / "unknown_codec.avi", "unsupported codec")
    garbled = bytearray(avi.read_bytes())
    for pos, size in _packets(avi):
        garbled[pos:pos + size] = bytes(size)
    (bad / "garbled.avi").write_bytes(bytes(garbled))
    cases["undecodable"] = (bad / "garbled.avi", "the first frame does not decode")
    if SAMPLES.is_dir():
        sample = (SAMPLES / "Megamind_bugy.avi").read_bytes()
        (bad / "Megamind_bugy_cut.avi").write_bytes(sample[: len(sample) * 2 // 3])
        cases["damaged sample, cut"] = (bad / "Megamind_bugy_cut.avi", "incomplete or corrupt")
    return cases


def test_every_bad_input_is_a_probe_failure(demo_root: Path, tmp_path: Path) -> None:
    cases = _bad_inputs(demo_root, tmp_path / "bad")
    for name, (path, fragment) in cases.items():
        with pytest.raises(VideoError) as caught:
            probe_video(path)
        assert caught.value.stage == "probe", name
        assert caught.value.path == str(path), name
        assert fragment in caught.value.message, (name, caught.value.message)


def test_unreadable_file_is_a_probe_failure(demo_root: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.mp4"
    shutil.copy(_first(demo_root, "mp4"), locked)
    locked.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(VideoError, match="permission denied"):
            probe_video(locked)
        return
    # Root reads anything; an unprivileged user namespace makes root's files obey their mode bits.
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode != 0:
        pytest.skip("running as root without unprivileged user namespaces")
    script = (
        "import sys; from dimcollapse.data.probe import probe_video; from dimcollapse.failures import VideoError\n"
        "try: probe_video(sys.argv[1])\nexcept VideoError as e: print(e.message)\n"
    )
    out = subprocess.run(["unshare", "--user", sys.executable, "-c", script, str(locked)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "permission denied: the file is not readable"


def test_bad_videos_are_left_out_and_reported(demo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "ds"
    good = [_first(demo_root, ext) for ext in ("avi", "mp4", "webm")]
    for i, src in enumerate(good):
        (root / "jump").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / "jump" / f"ok{i}{src.suffix}")
    (root / "run").mkdir()
    (root / "run" / "empty.mp4").write_bytes(b"")
    (root / "run" / "noise.avi").write_bytes(b"RIFF" + bytes(range(256)) * 20)
    _audio_only(root / "run" / "sound.mp4")
    shutil.copy(good[0], root / "run" / "fine.avi")
    cfg = {"layout": "folder", "root": str(root)}
    with caplog.at_level(logging.WARNING, logger="dimcollapse.data.manifest"):
        frame, failures = build_manifest(cfg, workers=2, progress=False)
    assert list(frame["id"]) == ["jump/ok0", "jump/ok1", "jump/ok2", "run/fine"]
    assert [(f.id, f.stage) for f in failures] == [("run/empty", "probe"), ("run/noise", "probe"), ("run/sound", "probe")]
    assert failures[0].path == str(root / "run" / "empty.mp4")
    assert "3 of 7 videos left out" in caplog.text
    with pytest.raises(ManifestError, match="3 of 7 videos failed"):
        build_manifest(cfg, progress=False, on_error="fail")


def test_missing_listed_files_join_the_failures(demo_root: Path, tmp_path: Path) -> None:
    video = _first(demo_root, "mp4")
    (tmp_path / "list.csv").write_text(f"path,label\n{video},walk\ngone.mp4,walk\n")
    frame, failures = build_manifest({"layout": "csv", "root": str(tmp_path), "csv": "list.csv"}, progress=False)
    assert len(frame) == 1
    assert [(f.id, f.stage) for f in failures] == [("gone", "missing")]


def test_probe_many_keeps_order_and_errors(demo_root: Path, tmp_path: Path) -> None:
    paths = [str(_first(demo_root, "mp4")), str(tmp_path / "nothing.mp4"), str(_first(demo_root, "webm"))]
    results = probe_many(paths, workers=2, progress=False)
    assert isinstance(results[0], ProbeResult) and isinstance(results[2], ProbeResult)
    assert isinstance(results[1], VideoError) and results[1].path == paths[1]
    with pytest.raises(ValueError, match="workers"):
        probe_many(paths, workers=0)


# --------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_the_file_list(tmp_path: Path) -> None:
    root = tmp_path / "k"
    for name in ("a/x.mp4", "a/y.mp4", "b/z.avi"):
        (root / "val" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "val" / name).write_bytes(b"123")
    (root / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    cfg = {"layout": "kinetics", "root": str(root), "split": "val", "annotations": "val.csv"}
    base = fingerprint(cfg)
    assert fingerprint(dict(cfg)) == base
    assert fingerprint({**cfg, "protocols": {"paper": {"crop_size": 128}}}) == base  # not a listing key
    (root / "val" / "a" / "notes.txt").write_text("not a video")
    (root / "other").mkdir()
    assert fingerprint(cfg) == base

    def changed(action) -> str:
        action()
        new = fingerprint(cfg)
        assert new != base
        return new

    st = (root / "val" / "a" / "x.mp4").stat()
    base = changed(lambda: os.utime(root / "val" / "a" / "x.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9)))
    base = changed(lambda: (root / "val" / "b" / "z.avi").write_bytes(b"1234"))
    base = changed(lambda: (root / "val" / "b" / "new.webm").write_bytes(b""))
    base = changed(lambda: (root / "val" / "a" / "y.mp4").unlink())
    base = changed(lambda: (root / "val" / "a" / "x.mp4").rename(root / "val" / "b" / "x.mp4"))
    base = changed(lambda: (root / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nx,y,1,2,val\n"))
    assert fingerprint({**cfg, "split": "train"}) != base


def test_fingerprint_covers_split_folders_and_absent_datasets(tmp_path: Path) -> None:
    cfg = {"layout": "hmdb51", "root": str(tmp_path / "hmdb")}
    absent = fingerprint(cfg)  # nothing exists yet: no error
    splits = tmp_path / "hmdb" / "split" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "jump_test_split1.txt").write_text("a.avi 1\n")
    with_split = fingerprint(cfg)
    assert with_split != absent
    (splits / "jump_test_split1.txt").write_text("a.avi 2\n")  # same size; mtime moves
    os.utime(splits / "jump_test_split1.txt", ns=(0, 10**9))
    assert fingerprint(cfg) != with_split


def test_csv_fingerprint_covers_only_the_files_the_table_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dimcollapse.data.manifest as manifest_module

    root = tmp_path / "data"
    for name in ("v/one.mp4", "v/two.mp4", "unrelated/big.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"123")
    (root / "loop").symlink_to(root)  # a link back to the root: must not be walked
    (root / "list.csv").write_text("path,label\nv/one.mp4,a\nv/two.mp4,b\nv/gone.mp4,b\n")
    cfg = {"layout": "csv", "root": str(root), "csv": "list.csv"}
    walked: list[Path] = []
    real_walk = manifest_module._stat_tree
    monkeypatch.setattr(manifest_module, "_stat_tree", lambda d, *a: walked.append(d) or real_walk(d, *a))
    base = fingerprint(cfg)
    assert walked == []  # no folder walk at all
    (root / "unrelated" / "big.mp4").write_bytes(b"changed")
    (root / "unrelated" / "new.mp4").write_bytes(b"")
    assert fingerprint(cfg) == base  # files the CSV does not name do not count
    (root / "v" / "two.mp4").write_bytes(b"1234")  # a listed file changes
    assert (changed := fingerprint(cfg)) != base
    base = changed
    (root / "v" / "gone.mp4").write_bytes(b"")  # a listed file appears
    assert fingerprint(cfg) != base
    assert fingerprint({"layout": "csv", "root": "/", "csv": str(root / "list.csv")})  # root: / is fine
    assert fingerprint({**cfg, "csv": "absent.csv"})  # a missing table is the manifest's error, later


def test_fingerprint_walk_survives_symlink_loops(tmp_path: Path) -> None:
    root = tmp_path / "f"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.mp4").write_bytes(b"1")
    (root / "a" / "up").symlink_to(root)  # a loop
    (root / "a" / "self").symlink_to("self")  # ELOOP on stat
    cfg = {"layout": "folder", "root": str(root)}
    base = fingerprint(cfg)
    (root / "a" / "x.mp4").write_bytes(b"12")
    assert fingerprint(cfg) != base


@pytest.mark.parametrize("good", [0, 1])
def test_manifest_stage_needs_two_usable_videos(good: int, demo_root: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dimcollapse.stages import data

    root = tmp_path / "few"
    (root / "jump").mkdir(parents=True)
    for src in sorted((demo_root / "val").rglob("*.mp4"))[:good]:
        shutil.copy(src, root / "jump" / src.name)
    (root / "jump" / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "results"
    smk = SimpleNamespace(
        log=[str(tmp_path / "manifest.log")], rule="manifest", threads=1,
        wildcards=SimpleNamespace(dataset="few", items=lambda: [("dataset", "few")]),
        params=SimpleNamespace(dataset={"layout": "folder", "root": str(root)}, on_error="skip"),
        output=SimpleNamespace(manifest=str(out / "few.csv"), failures=str(out / "few.failures.csv")),
    )
    with pytest.raises(RuntimeError) as err:
        data.manifest(smk)
    assert str(err.value).startswith(f"dataset 'few': {good} usable video(s), at least 2 are needed (1 failed, e.g. ")
    assert "broken.mp4" in str(err.value) and not out.exists()


def _crashing_probe(path: str):
    """Stands in for a decoder that kills its process on one file (runs in spawned workers)."""
    from dimcollapse.data.probe import probe_video as real_probe

    if "crash" in path:
        os._exit(3)
    return real_probe(path)


def test_a_crashing_worker_costs_only_its_file(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dimcollapse.data.probe as probe_module

    monkeypatch.setattr(probe_module, "_probe_or_message", _crashing_probe)
    good = [str(p) for p in sorted((demo_root / "val").rglob("*.mp4"))[:3]]
    crash = tmp_path / "crash.mp4"
    shutil.copy(good[0], crash)
    paths = [good[0], str(crash), good[1], good[2]]
    results = probe_many(paths, workers=2, progress=False)
    assert [type(r).__name__ for r in results] == ["ProbeResult", "VideoError", "ProbeResult", "ProbeResult"]
    assert results[1].path == str(crash)
    assert "crashed" in results[1].message
