"""The synthetic demo dataset: layout, variety, motion classes and determinism."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from dimcollapse.data.datasets import list_videos
from dimcollapse.data.demo import DEMO_CLASSES, TINY, generate_demo, main, plan_demo, render_frames

WINDOW_S = 64 / 30  # the paper's clip: 8 frames × rate 8 at 30 fps


def _decode(path: Path) -> tuple[str, np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return stream.codec_context.name, frames


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("tiny")
    return out, generate_demo(out, seed=7, **TINY)


def test_full_plan_meets_the_demo_requirements() -> None:
    plan = plan_demo()
    assert len(plan) == 40 >= 32
    assert Counter(v.label_name for v in plan) == {name: 8 for name in DEMO_CLASSES}
    assert {(v.container, v.codec) for v in plan} == {("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx-vp9")}
    assert {v.fps for v in plan} == {24, 25, 30}
    for name in DEMO_CLASSES:
        mine = [v for v in plan if v.label_name == name]
        assert len({v.container for v in mine}) == 3 and len({v.fps for v in mine}) == 3
    short = [v for v in plan if v.frames / v.fps < WINDOW_S]
    assert len(short) == len(DEMO_CLASSES)
    assert all(v.frames < 64 for v in short)
    assert {v.container for v in short} == {"mp4", "avi", "webm"}
    assert all(v.frames / v.fps >= 2.4 - 1e-9 for v in plan if v not in short)
    assert all(v.width <= 176 and v.height <= 144 for v in plan)
    assert len({v.relpath for v in plan}) == 40


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="classes"):
        plan_demo(classes=["spin"])
    with pytest.raises(ValueError, match="videos_per_class"):
        plan_demo(videos_per_class=0)


def test_files_decode_as_planned(tiny: tuple[Path, list[Path]]) -> None:
    out, paths = tiny
    plan = plan_demo(seed=7, **TINY)
    assert paths == sorted(out / v.relpath for v in plan)
    codecs = {"libx264": "h264", "mpeg4": "mpeg4", "libvpx-vp9": "vp9"}
    for video in plan:
        path = out / video.relpath
        assert path.parent.name == video.label_name and path.parent.parent.name == "val"
        codec, frames = _decode(path)
        assert codec == codecs[video.codec]
        assert frames.shape == (video.frames, video.height, video.width, 3)
        with av.open(str(path)) as container:
            assert container.streams.video[0].average_rate == video.fps
    meta = json.loads((out / "demo.json").read_text())
    assert meta["seed"] == 7 and len(meta["videos"]) == len(plan)


def test_kinetics_adapter_reads_the_demo(tiny: tuple[Path, list[Path]]) -> None:
    out, paths = tiny
    listing = list_videos({"layout": "kinetics", "root": str(out), "split": "val"})
    assert listing.classes == DEMO_CLASSES
    assert sorted(r.path for r in listing.records) == [str(p) for p in paths]
    assert all(Path(r.path).parent.name == r.label_name for r in listing.records)


def test_same_seed_same_frames_other_seed_other_frames(tiny: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, paths = tiny
    again = generate_demo(tmp_path / "again", seed=7, **TINY)
    other = generate_demo(tmp_path / "other", seed=8, **TINY)
    for first, second, third in zip(paths, again, other):
        a, b, c = _decode(first)[1], _decode(second)[1], _decode(third)[1]
        np.testing.assert_array_equal(a, b)
        assert a.shape != c.shape or not np.array_equal(a, c)


def _shape_track(frames: np.ndarray) -> np.ndarray:
    """Circular centroid (x, y) per frame of pixels that differ from the temporal median."""
    background = np.median(frames, axis=0)
    h, w = frames.shape[1:3]
    mask = np.abs(frames.astype(np.float32) - background).max(axis=-1) > 25
    ys, xs = np.mgrid[0:h, 0:w]
    track = []
    for m in mask:
        ang_x, ang_y = 2 * np.pi * xs[m] / w, 2 * np.pi * ys[m] / h
        track.append((np.angle(np.exp(1j * ang_x).mean()) * w / (2 * np.pi),
                      np.angle(np.exp(1j * ang_y).mean()) * h / (2 * np.pi)))
    return np.array(track)


@pytest.mark.parametrize("name", DEMO_CLASSES)
def test_classes_differ_by_motion(name: str) -> None:
    expected = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1), "still": (0, 0)}
    for video in [v for v in plan_demo(seed=1, videos_per_class=4) if v.label_name == name][:3]:
        frames = render_frames(video)
        if name == "still":
            assert (frames == frames[0]).all()
            continue
        track = _shape_track(frames)
        size = np.array([video.width, video.height])
        step = (np.diff(track, axis=0) + size / 2) % size - size / 2  # unwrap the torus
        direction = np.sign(np.round(np.median(step, axis=0), 1))
        assert tuple(direction) == expected[name], (video.relpath, np.median(step, axis=0))
        speed = np.hypot(*np.median(step, axis=0)) * video.fps
        assert 30 < speed < 75


def test_existing_strangers_are_refused_and_reruns_overwrite(tmp_path: Path) -> None:
    small = {"videos_per_class": 1, "classes": ["still"], "short_seconds": 0.2}
    first = generate_demo(tmp_path, seed=0, **small)
    assert generate_demo(tmp_path, seed=0, **small) == first
    (tmp_path / "val" / "still" / "intruder.mp4").write_bytes(b"")
    with pytest.raises(FileExistsError, match="intruder.mp4"):
        generate_demo(tmp_path, seed=0, **small)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path), "--tiny", "--videos-per-class", "1", "--seed", "2"])
    assert "wrote 5 demo videos" in capsys.readouterr().out
    assert len(list((tmp_path / "val").rglob("*.*"))) == 5
