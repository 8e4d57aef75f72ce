"""SlowFast's test-time frame arithmetic, reproduced number for number.

SlowFast (``slowfast/datasets/decoder.py``) places its ``num_clips`` = 10 test windows
by frame arithmetic on stream metadata, converts them to pts with truncation, and picks
``T`` frames by ``linspace`` over a *fractional* clip length. The two decoding backends
differ in the metadata they use and in how a window becomes frames:

``pyav`` (the default backend up to commit c4ecfa1, 2021-09-19)
    ``fps`` = the stream's average rate, ``video_size`` = the header frame count,
    ``clip_size = rate·T / target_fps · fps``; window ``i`` spans frame indices
    ``start = max(video_size − clip_size, 0) · i / num_clips``, ``end = start + clip_size − 1``;
    pts ``int(start · duration / video_size)`` and ``int(end · duration / video_size)``
    (rounding *down*). Frames with ``start_pts <= pts <= end_pts`` in decode order, plus
    the first frame past ``end_pts`` (``buffer_size=0`` still stores it), sorted by pts.
    Without a stream duration the whole video is decoded and the window is placed on
    the decoded frames instead. (At HEAD ``pyav_decode`` sizes the window with
    ``ceil(rate·(T−1)/target_fps·fps)`` and fails on list-valued sampling rates: this is
    why the c4ecfa1 arithmetic is the one reproduced.)
``torchvision`` (the default since commit 99a655b, 2022-04-06, which added the
contrastive-SSL configs; unchanged at HEAD)
    ``fps`` = FFmpeg's guessed frame rate stored as float32, ``video_size = fps ·
    duration`` (seconds), ``clip_size = max(1, rate·T / target_fps · fps)``; pts
    ``int(start · den / fps)`` (``den`` the time-base denominator); torchvision's reader
    converts that to microseconds, adds 100 µs to the end, keeps frames with
    ``start_us <= pts_us <= end_us`` in decode order and stops at the first frame past
    the end; frames are scaled while decoding (FFmpeg ``SWS_AREA``) to short side
    ``side_size``, long side rounded. When the video holds at most ``rate·T`` frames, or
    the window yields no frame, the whole video is decoded and the window placed on it.

Either way the ``T`` frames of a window are ``clamp(linspace(start, end, T), 0, n−1)``
truncated, over the ``n`` frames found (``start = 0``, ``end = clip_size − 1`` for a
selectively decoded window), computed in float32 like ``torch.linspace``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

MICROSECONDS = Fraction(1, 1_000_000)
# torchvision's video reader widens the end of a pts range by this many microseconds.
END_JITTER_US = 100


def start_end_idx(video_size: float, clip_size: float, clip_idx: int, num_clips: int) -> tuple[float, float]:
    """SlowFast's ``get_start_end_idx`` for test views (``use_offset=False``)."""
    delta = max(video_size - clip_size, 0)
    start = delta * clip_idx / num_clips
    return start, start + clip_size - 1


def temporal_indices(n: int, start: float, end: float, num_samples: int) -> list[int]:
    """SlowFast's ``temporal_sampling`` indices into ``n`` frames (float32 linspace, clamp, truncate)."""
    if n < 1:
        raise ValueError("a window needs at least one frame")
    idx = torch.linspace(start, end, num_samples)
    return torch.clamp(idx, 0, n - 1).long().tolist()


def raw_last_index(start: float, end: float, num_samples: int) -> int:
    """The largest index ``linspace`` asks for before clamping (to tell whether it clamped)."""
    return int(torch.linspace(start, end, num_samples)[-1].long())


def rescale(value: int, src: Fraction, dst: Fraction) -> int:
    """FFmpeg's ``av_rescale_q`` (round to nearest, halves away from zero)."""
    exact = Fraction(value) * src / dst
    floor = math.floor(exact)
    rest = exact - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and exact > 0):
        return floor + 1
    return floor


@dataclass(frozen=True)
class PyavWindow:
    """One test window of SlowFast's PyAV path (c4ecfa1): pts range or whole-video placement."""

    clip_size: float
    start_pts: int | None  # None: decode the whole video, place the window on its frames
    end_pts: int | None

    @property
    def whole(self) -> bool:
        return self.start_pts is None


def pyav_windows(
    *, fps: float, frames_length: int, duration: int | None, frames: int, rate: int, target_fps: float,
    num_clips: int,
) -> list[PyavWindow]:
    """Windows of SlowFast's ``pyav_decode`` at c4ecfa1 for every temporal index.

    ``fps`` the stream's average rate, ``frames_length`` its header frame count,
    ``duration`` its header duration in time-base units (``None`` when unknown).
    """
    clip_size = rate * frames / target_fps * fps
    if duration is None:
        return [PyavWindow(clip_size, None, None) for _ in range(num_clips)]
    if frames_length <= 0:
        raise ValueError("the stream header gives no frame count, which SlowFast's PyAV path divides by")
    timebase = duration / frames_length
    out = []
    for i in range(num_clips):
        start, end = start_end_idx(frames_length, clip_size, i, num_clips)
        out.append(PyavWindow(clip_size, int(start * timebase), int(end * timebase)))
    return out


@dataclass(frozen=True)
class TorchvisionWindow:
    """One test window of SlowFast's torchvision backend: a microsecond range, or whole video."""

    clip_size: float
    start_us: int | None  # None: decode the whole video, place the window on its frames
    end_us: int | None  # -1: no end (torchvision's "until the end")

    @property
    def whole(self) -> bool:
        return self.start_us is None


def torchvision_fps(rate: Fraction | None) -> float:
    """The frame rate as torchvision's probe reports it: FFmpeg's guess, stored as float32."""
    return float(np.float32(float(rate))) if rate else 0.0


def torchvision_duration(duration: int | None, time_base: Fraction) -> float:
    """Stream duration in seconds as torchvision's probe reports it (via microseconds and back)."""
    if duration is None:
        return 0.0
    back = rescale(rescale(duration, time_base, MICROSECONDS), MICROSECONDS, time_base)
    return float(back) * (time_base.numerator / float(time_base.denominator))


def torchvision_windows(
    *, fps: float, duration_s: float, time_base: Fraction, frames: int, rate: int, target_fps: float,
    num_clips: int,
) -> list[TorchvisionWindow]:
    """Windows of SlowFast's ``torchvision_decode`` (99a655b and HEAD) for every temporal index."""
    clip_size = float(np.maximum(1.0, rate * frames / target_fps * fps))
    selective = time_base.denominator > 0 and duration_s > 0 and fps * duration_s > frames * rate
    if not selective:
        return [TorchvisionWindow(clip_size, None, None) for _ in range(num_clips)]
    pts_per_frame = time_base.denominator / fps
    out = []
    for i in range(num_clips):
        start, end = start_end_idx(fps * duration_s, clip_size, i, num_clips)
        start_pts, end_pts = int(start * pts_per_frame), int(end * pts_per_frame)
        start_us = rescale(start_pts, time_base, MICROSECONDS) if start_pts > 0 else 0
        end_us = END_JITTER_US + rescale(end_pts, time_base, MICROSECONDS) if end_pts > 0 else -1
        out.append(TorchvisionWindow(clip_size, start_us, end_us))
    return out


def torchvision_size(height: int, width: int, min_dimension: int) -> tuple[int, int]:
    """Output (height, width) of torchvision's decode-time scaling to ``min_dimension``.

    Landscape (``width > height``): height = min_dimension, width = ``round(width·min/height)``
    (C ``round``, halves up); otherwise the same with the roles swapped.
    """
    if width > height:
        return min_dimension, int(math.floor(width * min_dimension / height + 0.5))
    return int(math.floor(height * min_dimension / width + 0.5)), min_dimension
