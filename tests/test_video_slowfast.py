"""SlowFast's test sampling, against SlowFast's own arithmetic (REFERENCE §9).

The expected index tables were worked out by hand from SlowFast's formulas
(``clip_size = T·rate/30·fps``, ``start = max(size − clip_size, 0)·i/10``, ``linspace``
over ``[start, start + clip_size − 1]``, clamped and truncated). The end-to-end checks run
an independent transcription of SlowFast's decoding flow on generated H.264 videos —
open, seek ``start_pts − 1024``, decode, keep, stack, sample, normalise, scale, crop —
and compare it with :func:`load_views` pixel for pixel.
"""

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from dimcollapse.data import slowfast
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.data.video import load_views, read_frames

MEAN, STD = torch.tensor([0.45] * 3), torch.tensor([0.225] * 3)
RATES = {"10": Fraction(10), "23.976": Fraction(24000, 1001), "25": Fraction(25), "29.97": Fraction(30000, 1001),
         "30": Fraction(30), "60": Fraction(60)}


def h264(path: Path, rate: Fraction, n: int, size: tuple[int, int] = (48, 64)) -> Path:
    """An H.264 MP4 (B-frames on) of ``n`` frames whose colours change every frame."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": "12", "bf": "2"}
        for k in range(n):
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 0] = (k * 7) % 256
            a[..., 1] = (np.arange(w) * 4 % 256)[None, :]
            a[..., 2] = (np.arange(h) * 5 % 256)[:, None]
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


# ----------------------------------------------------------------- pure arithmetic
@pytest.mark.parametrize(
    ("fps", "video_size", "expected_first", "expected_last"),
    [
        # 10 fps: clip_size 64/3 = 21.33, view 9 spans [70.8, 91.13]
        (10.0, 100, [0, 2, 5, 8, 11, 14, 17, 20], [70, 73, 76, 79, 82, 85, 88, 91]),
        # 23.976: clip_size 51.15 (fractional), view 9 spans [248.27, 298.42]
        (24000 / 1001, 327, [0, 7, 14, 21, 28, 35, 42, 50], [248, 255, 262, 269, 276, 284, 291, 298]),
        # 25 fps (UCF101): clip_size 53.33, view 9 spans [177, 229.33]
        (25.0, 250, [0, 7, 14, 22, 29, 37, 44, 52], [177, 184, 191, 199, 206, 214, 221, 229]),
        # 29.97: clip_size 63.94, view 9 spans [212.46, 275.39]
        (30000 / 1001, 300, [0, 8, 17, 26, 35, 44, 53, 62], [212, 221, 230, 239, 248, 257, 266, 275]),
        # 30 fps: clip_size exactly 64, steps of 9
        (30.0, 300, [0, 9, 18, 27, 36, 45, 54, 63], [212, 221, 230, 239, 248, 257, 266, 275]),
        # 60 fps: clip_size 128, view 9 spans [424.8, 551.8]
        (60.0, 600, [0, 18, 36, 54, 72, 90, 108, 127], [424, 442, 461, 479, 497, 515, 533, 551]),
    ],
)
def test_window_indices_for_fractional_and_integer_rates(fps, video_size, expected_first, expected_last) -> None:
    clip = 8 * 8 / 30.0 * fps
    first = slowfast.start_end_idx(video_size, clip, 0, 10)
    last = slowfast.start_end_idx(video_size, clip, 9, 10)
    assert slowfast.temporal_indices(video_size, *first, 8) == expected_first
    assert slowfast.temporal_indices(video_size, *last, 8) == expected_last


def test_short_video_clamps_at_its_end() -> None:
    # 30 fps, 40 frames < clip_size 64: every view starts at 0, indices past 39 repeat frame 39
    assert slowfast.start_end_idx(40, 64.0, 7, 10) == (0.0, 63.0)
    assert slowfast.temporal_indices(40, 0.0, 63.0, 8) == [0, 9, 18, 27, 36, 39, 39, 39]
    assert slowfast.raw_last_index(0.0, 63.0, 8) == 63
    # a selectively decoded window holding fewer frames than clip_size clamps the same way
    assert slowfast.temporal_indices(50, 0.0, 63.0, 8) == [0, 9, 18, 27, 36, 45, 49, 49]


def test_pts_are_truncated_not_rounded_up() -> None:
    # 29.97 fps, time base 1/30000 (1001 pts per frame), 301 frames: view 3 starts at
    # frame 3·(301 − 64000/1001)/10 = 71.1193..., pts 71190.3 -> 71190 (PyTorchVideo's ceil: 71191)
    w = slowfast.pyav_windows(fps=30000 / 1001, frames_length=301, duration=301 * 1001, frames=8, rate=8,
                              target_fps=30.0, num_clips=10)
    start = 3 * (301 - 64 / 30 * 30000 / 1001) / 10
    assert w[3].start_pts == 71190 == math.floor(start * 1001) < math.ceil(start * 1001)
    assert w[3].end_pts == math.floor((start + 64 / 30 * 30000 / 1001 - 1) * 1001)
    # torchvision: float32 fps, pts = int(frame · den / fps), microseconds + 100 at the end
    fps32 = slowfast.torchvision_fps(Fraction(30000, 1001))
    assert fps32 == float(np.float32(30000 / 1001)) != 30000 / 1001
    tv = slowfast.torchvision_windows(fps=fps32, duration_s=10.01, time_base=Fraction(1, 30000), frames=8,
                                      rate=8, target_fps=30.0, num_clips=10)
    clip = 64 / 30 * fps32
    start = 4 * (fps32 * 10.01 - clip) / 10
    s_pts, e_pts = int(start * 30000 / fps32), int((start + clip - 1) * 30000 / fps32)
    assert (tv[4].start_us, tv[4].end_us) == (round(s_pts * 100 / 3), 100 + round(e_pts * 100 / 3))
    assert tv[0].start_us == 0


def test_torchvision_size_rounds_the_long_side() -> None:
    assert slowfast.torchvision_size(240, 320, 256) == (256, 341)  # 341.33
    assert slowfast.torchvision_size(480, 854, 256) == (256, 455)  # 455.47
    assert slowfast.torchvision_size(720, 1282, 256) == (256, 456)  # 455.82: rounds up, floor would give 455
    assert slowfast.torchvision_size(320, 240, 256) == (341, 256)  # portrait
    assert slowfast.torchvision_size(100, 100, 256) == (256, 256)


# ----------------------------------------------------------- SlowFast's PyAV path (c4ecfa1)
def slowfast_pyav_reference(path: Path, T: int = 8, rate: int = 8, clips: int = 10, size: int = 256):
    """SlowFast c4ecfa1 test views (pyav backend), transcribed step by step; with the pts picked."""
    views, picked = [], []
    for i in range(clips):
        with av.open(str(path)) as container:
            st = container.streams.video[0]
            fps, n, dur = float(st.average_rate), st.frames, st.duration
            clip = rate * T / 30 * fps
            start = max(n - clip, 0) * i / clips
            end = start + clip - 1
            s_pts, e_pts = int(start * (dur / n)), int(end * (dur / n))
            container.seek(max(s_pts - 1024, 0), any_frame=False, backward=True, stream=st)
            kept = {}
            for f in container.decode(video=0):
                if f.pts < s_pts:
                    continue
                kept[f.pts] = f
                if f.pts > e_pts:
                    break
            order = sorted(kept)
            frames = torch.as_tensor(np.stack([kept[p].to_rgb().to_ndarray() for p in order]))
        idx = torch.clamp(torch.linspace(0, clip - 1, T), 0, frames.shape[0] - 1).long()
        picked.append(tuple(order[k] for k in idx.tolist()))
        x = frames[idx].float() / 255.0
        x = ((x - MEAN) / STD).permute(3, 0, 1, 2)
        h, w = x.shape[2:]
        nh, nw = (int(math.floor(h / w * size)), size) if w < h else (size, int(math.floor(w / h * size)))
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        y, xo = int(math.ceil((nh - size) / 2)), int(math.ceil((nw - size) / 2))
        for s in range(3):
            if nh > nw:
                yy, xx = (0, y, nh - size)[s], xo
            else:
                yy, xx = y, (0, xo, nw - size)[s]
            views.append(x[:, :, yy:yy + size, xx:xx + size])
    return torch.stack(views), picked


@pytest.mark.parametrize("rate", ["10", "23.976", "25", "29.97", "60"])
def test_pyav_backend_reproduces_slowfast(tmp_path: Path, rate: str) -> None:
    path = h264(tmp_path / "v.mp4", RATES[rate], int(6 * RATES[rate]))
    ref, picked = slowfast_pyav_reference(path)
    p = resolve_protocol("slowfast_test", backend="pyav")
    assert read_frames(path, None, p).pts == tuple(picked)
    assert torch.equal(load_views(path, p), ref)


def test_pyav_backend_on_a_short_video_repeats_the_last_frames(tmp_path: Path) -> None:
    path = h264(tmp_path / "short.mp4", Fraction(30), 40)  # 40 frames < clip_size 64
    ref, picked = slowfast_pyav_reference(path)
    d = read_frames(path, None, resolve_protocol("slowfast_test", backend="pyav"))
    assert d.pts == tuple(picked) and all(d.short_windows)
    assert picked[0][-3:] == picked[0][-1:] * 3  # clamped to the last frame
    assert torch.equal(load_views(path, "slowfast_test", backend="pyav"), ref)


# ------------------------------------------------------- SlowFast's torchvision backend
def test_torchvision_backend_scales_like_a_direct_area_reformat(tmp_path: Path) -> None:
    path = h264(tmp_path / "v.mp4", Fraction(30000, 1001), 180, size=(120, 214))
    p = resolve_protocol("slowfast_test")
    d = read_frames(path, None, p)
    assert d.frames.shape[1:] == (256, 457, 3)  # 214·256/120 = 456.53 rounds to 457 (floor: 456)
    by_pts = {}
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            by_pts[f.pts] = f.reformat(width=457, height=256, format="rgb24", interpolation="AREA").to_ndarray()
    flat = [pt for view in d.pts for pt in view]
    assert all(np.array_equal(d.frames[k], by_pts[pt]) for k, pt in enumerate(flat))


def test_torchvision_backend_frame_choice(tmp_path: Path) -> None:
    """Frames by microsecond range [start_us, end_us + 100], decode order, then linspace."""
    rate = Fraction(25)
    path = h264(tmp_path / "v.mp4", rate, 150)
    d = read_frames(path, None, resolve_protocol("slowfast_test"))
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        tb, fps = st.time_base, float(np.float32(float(st.guessed_rate)))
        dur_s = float(st.duration) * tb.numerator / tb.denominator
        frames = [(f.pts, round(f.pts * tb * 1_000_000)) for f in c.decode(video=0)]
    clip = max(1.0, 64 / 30 * fps)
    for i in range(10):
        start = max(fps * dur_s - clip, 0) * i / 10
        s_pts, e_pts = int(start * tb.denominator / fps), int((start + clip - 1) * tb.denominator / fps)
        s_us = round(s_pts * tb * 1_000_000) if s_pts > 0 else 0
        e_us = 100 + round(e_pts * tb * 1_000_000)
        window = []
        for pts, us in frames:
            if us > e_us:
                break
            if us >= s_us:
                window.append(pts)
        idx = torch.clamp(torch.linspace(0, clip - 1, 8), 0, len(window) - 1).long().tolist()
        assert d.pts[i] == tuple(window[k] for k in idx), i


def test_views_are_temporal_major(tmp_path: Path) -> None:
    path = h264(tmp_path / "v.mp4", Fraction(30), 200, size=(48, 96))
    views = load_views(path)
    assert views.shape == (30, 3, 8, 256, 256)
    # view t*3+s: the three crops of one window share frames (the middle column is in all three)
    d = read_frames(path, None, resolve_protocol("slowfast_test"))
    frames = torch.from_numpy(d.frames).float()
    for t in (0, 5, 9):
        expected = (frames[t * 8:(t + 1) * 8, :, :256].permute(3, 0, 1, 2) / 255.0 - 0.45) / 0.225
        assert torch.equal(views[t * 3], expected)  # left crop of window t


SAMPLES = Path("/work/shared/testdata/videos")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="sample videos not available")
@pytest.mark.parametrize("name", ["Megamind.avi", "tree.avi"])
def test_pyav_backend_reproduces_slowfast_on_the_sample_videos(name: str) -> None:
    """AVI files: packed B-frames (Megamind), a header claiming 444 frames for 68 (tree)."""
    ref, picked = slowfast_pyav_reference(SAMPLES / name)
    p = resolve_protocol("slowfast_test", backend="pyav")
    assert read_frames(SAMPLES / name, None, p).pts == tuple(picked)
    assert torch.equal(load_views(SAMPLES / name, p), ref)


def test_pyav_backend_fails_where_slowfast_finds_no_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header that overstates the video puts late windows past its end: SlowFast's PyAV
    path then stacks an empty list and fails; the torchvision backend decodes it all."""
    from dimcollapse.failures import VideoError

    path = h264(tmp_path / "v.mp4", Fraction(30), 90)
    real = slowfast.pyav_windows

    def overstated(**kw):
        return real(**{**kw, "frames_length": kw["frames_length"] * 4, "duration": kw["duration"] * 4})

    monkeypatch.setattr(slowfast, "pyav_windows", overstated)
    with pytest.raises(VideoError, match="no frame in SlowFast's window .* PyAV path fails"):
        read_frames(path, None, resolve_protocol("slowfast_test", backend="pyav"))
