"""Decoding and transforms on generated videos whose frames carry their own index.

Frames are stored losslessly (FFV1, RGB), frame k has red = k, green = 255 - k and a
blue ramp over the columns, so a decoded pixel names the frame it came from.
"""

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from dimcollapse.data import pyav_source
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.data.video import frame_indices, load_clip, load_views, read_frames
from dimcollapse.data.views import frames_to_views, scaled_size
from pytorchvideo_reference import pytorchvideo_functional

VIDEOS = Path("/work/shared/testdata/videos")


def make_video(path: Path, times_ms: list[int], *, size: tuple[int, int] = (48, 64), rate: int = 25,
               gop: int = 10) -> Path:
    """Lossless video with frame k at ``times_ms[k]`` milliseconds (variable rate allowed)."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "bgr0"
        s.codec_context.time_base = Fraction(1, 1000)
        s.codec_context.gop_size = gop
        for k, t in enumerate(times_ms):
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 0] = k % 256
            a[..., 1] = 255 - k % 256
            a[..., 2] = (np.arange(w) * 3 % 256)[None, :]
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def cfr(n: int, fps: int = 25) -> list[int]:
    return [k * 1000 // fps for k in range(n)]


def ids(decoded: np.ndarray) -> list[int]:
    """Frame numbers of decoded frames (red channel)."""
    return decoded[:, 0, 0, 0].astype(int).tolist()


def count_decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    original = pyav_source.Source._decode

    def counting(self):
        for frame in original(self):
            seen.append(frame.pts)
            yield frame

    monkeypatch.setattr(pyav_source.Source, "_decode", counting)
    return seen


def test_frame_indices_follow_pytorchvideo_and_dpc_rules() -> None:
    functional = pytorchvideo_functional()
    paper = resolve_protocol("paper")
    for n in range(1, 150):
        ref = functional.uniform_temporal_subsample(torch.arange(n)[None, :, None, None], 8)
        assert frame_indices(n, paper) == ref.flatten().tolist()
    assert frame_indices(5, paper) == [0, 0, 1, 1, 2, 2, 3, 4]
    dpc = resolve_protocol("dpc")
    assert frame_indices(75, dpc) == list(range(0, 75, 3))
    assert frame_indices(10, dpc) == [min(3 * k, 9) for k in range(25)]


def test_paper_clip_in_a_long_video_seeks_and_picks_the_right_frames(tmp_path: Path, monkeypatch) -> None:
    path = make_video(tmp_path / "cfr.mkv", cfr(250))  # 10 s, keyframe every 10 frames
    seen = count_decoded(monkeypatch)
    d = read_frames(path, [6.0], resolve_protocol("paper"))
    # window [6000, 8134) ms holds frames 150..203 (54 frames); linspace(0, 53, 8) truncated
    assert d.counts == (54,)
    assert ids(d.frames) == [150 + i for i in (0, 7, 15, 22, 30, 37, 45, 53)]
    assert d.pts[0] == tuple(40 * k for k in ids(d.frames))
    assert not d.short
    # it seeked to the keyframe at frame 150 and stopped just after the window
    assert min(seen) >= 140 * 40 and len(seen) <= 70


def test_short_video_repeats_frames_and_is_flagged(tmp_path: Path) -> None:
    paper = resolve_protocol("paper")
    d = read_frames(make_video(tmp_path / "short.mkv", cfr(20)), [0.0], paper)
    assert d.counts == (20,) and ids(d.frames) == [0, 2, 5, 8, 10, 13, 16, 19] and d.short
    d = read_frames(make_video(tmp_path / "tiny.mkv", cfr(5)), [0.0], paper)
    assert ids(d.frames) == [0, 0, 1, 1, 2, 2, 3, 4] and d.short
    clip = load_clip(tmp_path / "tiny.mkv", 0.0)
    assert clip.shape == (3, 8, 224, 224)
    assert torch.equal(clip[:, 0], clip[:, 1])  # a repeated frame
    d = read_frames(make_video(tmp_path / "exact.mkv", cfr(54)), [0.0], paper)
    assert d.counts == (54,) and not d.short  # exactly fills the window


def test_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    # 10 fps for 1 s, 50 fps for 1 s, then 5 fps for 2 s
    times = list(range(0, 1000, 100)) + list(range(1000, 2000, 20)) + list(range(2000, 4000, 200))
    path = make_video(tmp_path / "vfr.mkv", times)
    d = read_frames(path, [0.5], resolve_protocol("paper"))
    # window [500, 2634) ms: frames 5..63 (59 frames) -> linspace(0, 58, 8)
    assert d.counts == (59,)
    assert ids(d.frames) == [5 + i for i in (0, 8, 16, 24, 33, 41, 49, 58)]
    assert d.pts[0] == tuple(times[k] for k in ids(d.frames))


def test_paper_normalisation_values(tmp_path: Path) -> None:
    path = make_video(tmp_path / "cfr.mkv", cfr(100))
    clip = load_clip(path, 1.0)
    frames = ids(read_frames(path, [1.0], resolve_protocol("paper")).frames)
    for t, k in enumerate(frames):
        red = (k / 255 - 0.485) / 0.229
        green = ((255 - k) / 255 - 0.456) / 0.224
        assert torch.allclose(clip[0, t], torch.full((224, 224), red), atol=1e-5)
        assert torch.allclose(clip[1, t], torch.full((224, 224), green), atol=1e-5)
    custom = load_clip(path, 1.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], frames=4, rate=16)
    assert custom.shape == (3, 4, 224, 224)
    k = ids(read_frames(path, [1.0], resolve_protocol("paper", frames=4, rate=16)).frames)[0]
    assert torch.allclose(custom[0, 0], torch.full((224, 224), (k / 255 - 0.5) / 0.25), atol=1e-5)


def test_uniform_views_with_pytorchvideo_sampling(tmp_path: Path) -> None:
    """``slowfast_test`` with ``backend: null``: SlowFast's 30 views, PyTorchVideo's frame rule."""
    path = make_video(tmp_path / "cfr.mkv", cfr(250))
    p = resolve_protocol("slowfast_test", backend=None)
    starts = [i * (10.0 - 64 / 30) / 10 for i in range(10)]
    d = read_frames(path, starts, p)
    assert d.frames.shape == (80, 48, 64, 3) and len(d.counts) == 10 and not d.short
    for w, s in enumerate(starts):  # first frame with pts >= ceil(s / time_base), as PyTorchVideo
        assert ids(d.frames)[w * 8] == math.ceil(math.ceil(s / Fraction(1, 1000)) / 40)
    views = frames_to_views(d.frames, p)
    assert views.shape == (30, 3, 8, 256, 256)
    k = ids(d.frames)[8]  # window 1, frame 0, all 3 crops
    for c in range(3):
        assert torch.allclose(views[3 + c, 0, 0], torch.full((256, 256), (k / 255 - 0.45) / 0.225), atol=1e-5)
    # load_clip gives the centre crop of one window
    clip = load_clip(path, starts[1], "slowfast_test", backend=None)
    assert torch.equal(clip, views[4])


def test_dpc_blocks_of_downsampled_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "cfr.mkv", cfr(250))
    p = resolve_protocol("dpc")
    d = read_frames(path, [2.0], p)
    # 25 frames every 3rd native frame from frame 50 (window of 75 frames = 3 s at 25 fps)
    assert d.counts == (75,) and ids(d.frames) == list(range(50, 125, 3)) and not d.short
    clip = load_clip(path, 2.0, "dpc")
    assert clip.shape == (5, 3, 5, 224, 224)
    for n in range(5):
        for s in range(5):
            k = 50 + 3 * (n * 5 + s)
            assert torch.allclose(clip[n, 0, s], torch.full((224, 224), (k / 255 - 0.485) / 0.229), atol=1e-5)
    hmdb = read_frames(path, [2.0], resolve_protocol("dpc", downsample=1))
    assert ids(hmdb.frames) == list(range(50, 75))
    short = read_frames(make_video(tmp_path / "s.mkv", cfr(30)), [0.0], p)
    assert short.short and ids(short.frames)[-1] == 29


def _column_coded(h: int, w: int) -> np.ndarray:
    """Frames whose pixels encode their (row, column) position."""
    a = np.zeros((8, h, w, 3), np.uint8)
    a[..., 0] = (np.arange(w) % 256)[None, None, :]
    a[..., 1] = (np.arange(w) // 256)[None, None, :]
    a[..., 2] = (np.arange(h) % 256)[None, :, None]
    return a


def _first_column(view: torch.Tensor, p) -> int:
    r = round(float(view[0, 0, 0, 0]) * p.std[0] * 255 + p.mean[0] * 255)
    g = round(float(view[1, 0, 0, 0]) * p.std[1] * 255 + p.mean[1] * 255)
    return r + 256 * g


def _first_row(view: torch.Tensor, p) -> int:
    return round(float(view[2, 0, 0, 0]) * p.std[2] * 255 + p.mean[2] * 255)


def test_crop_offsets_follow_each_codebase() -> None:
    # 256 x 301: no scaling; 45 spare columns. torchvision rounds 22.5 to 22, SlowFast ceils to 23.
    frames = _column_coded(256, 301)
    paper = resolve_protocol("paper", crop_size=256)
    assert _first_column(frames_to_views(frames, paper)[0], paper) == 22
    sf = resolve_protocol("slowfast_test")
    views = frames_to_views(frames, sf)
    assert [_first_column(v, sf) for v in views] == [0, 23, 45]  # left, centre, right
    portrait = frames_to_views(_column_coded(301, 256), sf)
    assert [_first_row(v, sf) for v in portrait] == [0, 23, 45]  # top, centre, bottom


def test_short_side_scaling_sizes() -> None:
    paper, dpc = resolve_protocol("paper"), resolve_protocol("dpc")
    assert scaled_size(240, 320, paper) == (256, 341)
    assert scaled_size(320, 240, paper) == (341, 256)
    assert scaled_size(528, 720, paper) == (256, 349)
    # PyTorchVideo: floor(long / short * size); DPC: int(size * long / short) - they differ here
    assert scaled_size(196, 427, resolve_protocol("paper", side_size=224)) == (224, 487)
    assert scaled_size(196, 427, resolve_protocol("dpc", side_size=224)) == (224, 488)
    assert scaled_size(256, 300, dpc) == (256, 300)


def test_ffmpeg_resize_is_an_explicit_option(tmp_path: Path) -> None:
    path = make_video(tmp_path / "cfr.mkv", cfr(100), size=(120, 160))
    p = resolve_protocol("paper", resize="ffmpeg")
    d = read_frames(path, [1.0], p)
    assert d.frames.shape == (8, 256, 341, 3)  # scaled by FFmpeg before caching
    fast, exact = load_clip(path, 1.0, resize="ffmpeg"), load_clip(path, 1.0)
    assert fast.shape == exact.shape == (3, 8, 224, 224)
    assert (fast - exact).abs().mean() < 0.05  # same picture, not the same interpolation


@pytest.mark.parametrize(
    ("name", "starts"),
    [("Megamind.avi", [0.0, 3.3, 8.0]), ("Megamind_bugy.avi", [3.32, 7.0]), ("tree.avi", [5.0]), ("vtest.avi", [77.0])],
)
def test_seeking_finds_the_same_window_as_decoding_from_the_start(name: str, starts: list[float]) -> None:
    """B-frames (Megamind), seeks that land after the target (Megamind_bugy at pts 100),
    irregular timestamps (tree.avi), long GOPs (vtest.avi): the seek path must find exactly
    the frames that a full decode finds (PyTorchVideo's window rule)."""
    p = resolve_protocol("paper")
    d = read_frames(VIDEOS / name, starts, p)
    with av.open(str(VIDEOS / name)) as c:
        s = c.streams.video[0]
        decode_order = [f.pts for f in c.decode(s)]
        tb, origin = s.time_base, s.start_time or 0
    for w, start in enumerate(starts):
        a, b = math.ceil(start / tb) + origin, math.ceil((start + 64 / 30) / tb) + origin
        window: set[int] = set()
        for pts in decode_order:
            if pts >= b:
                break
            if pts >= a:
                window.add(pts)
        ordered = sorted(window)
        assert d.counts[w] == len(ordered)
        assert d.pts[w] == tuple(ordered[i] for i in frame_indices(len(ordered), p))


def test_last_resort_decoding_from_the_start_when_seeking_fails(tmp_path: Path, monkeypatch) -> None:
    path = make_video(tmp_path / "cfr.mkv", cfr(250))
    expected = read_frames(path, [6.0], resolve_protocol("paper"))

    def broken_seek(self, *args, **kwargs):
        raise av.error.PermissionError(1, "seek not allowed")

    monkeypatch.setattr(av.container.InputContainer, "seek", broken_seek)
    got = read_frames(path, [6.0], resolve_protocol("paper"))
    assert got.pts == expected.pts and np.array_equal(got.frames, expected.frames)


def test_load_views_is_the_pipelines_path() -> None:
    """``load_views`` = the ClipDataset item of a manifest row (probe → clip start → decode)."""
    from dimcollapse.data.clips import ClipDataset
    from dimcollapse.data.probe import probe_video
    from dimcollapse.data.protocols import clip_starts

    path = VIDEOS / "tree.avi"
    info = probe_video(path)
    row = {"id": "tree", "path": str(path), "duration": info.duration, "fps": info.fps, "frames": info.frames}
    for name in ("paper", "dpc", "slowfast_test"):
        views = load_views(path, name)
        item = ClipDataset([row], name)[0]
        assert item["ok"] and torch.equal(views, item["video"]), name
    assert load_views(path, "paper").shape == (1, 3, 8, 224, 224)
    p = resolve_protocol("paper")
    assert torch.equal(load_views(path, "paper")[0], load_clip(path, clip_starts(p, info.duration)[0]))
    with pytest.raises(ValueError, match="use load_views"):
        load_clip(path, 0.0, "slowfast_test")
