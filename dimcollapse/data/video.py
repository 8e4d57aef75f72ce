"""Fast, exact, robust clip decoding with PyAV.

The reference for the ``paper`` protocol is PyTorchVideo's
``EncodedVideo.from_path(path, decoder="pyav", decode_audio=False).get_clip(s, s + window)``
followed by the paper's transforms. This module reproduces its frame choice exactly:

* timestamps are ``pts`` in the stream's time base; the window is
  ``[ceil(s / time_base) + start_time, ceil((s + window) / time_base) + start_time)`` in pts;
* frames are taken in decode order until the first frame whose pts is at or past the window
  end (so, exactly like PyTorchVideo, a B-frame decoded after that frame is not included),
  de-duplicated by pts (a later frame with the same pts wins) and sorted by pts, because
  with B-frames decode order differs from presentation order (``Megamind.avi``);
* ``T`` frames are picked at ``torch.linspace(0, n-1, T)`` truncated (float32, as
  PyTorchVideo computes it) — repeated when the window holds fewer than ``T`` frames.

It is faster because it never decodes from the start of the file for a clip in the middle
(it seeks, :class:`~dimcollapse.data.pyav_source.Source`), stops decoding at the window end,
and converts to RGB (and resizes) only the selected frames.

``slowfast_test`` instead follows SlowFast's own decoding (``backend``: its torchvision
reader or its PyAV path, :mod:`dimcollapse.data.slowfast_video`); :func:`read_frames` and
:func:`decode_row` dispatch on the protocol, and :func:`load_views` returns every view of a
video through the pipeline's code path. The PyTorchVideo pipeline itself, for verification,
is in the tests (``tests/pytorchvideo_reference.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from dimcollapse.data.manifest import Row
from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol, clip_starts, resolve_protocol
from dimcollapse.data.pyav_source import (
    STAGE,
    DecodedFrames,
    Source,
    decoded_frames,
    ensure_openable,
    ffmpeg_message,
    to_rgb,
)
from dimcollapse.data.slowfast_video import read_slowfast
from dimcollapse.data.views import frames_to_views
from dimcollapse.failures import VideoError, VideoExcluded

# When the next window starts more than this far past the current decode position,
# seek instead of decoding through the gap.
_SEEK_GAP_SECONDS = 1.0


def frame_indices(n: int, protocol: Protocol) -> list[int]:
    """Indices of the frames taken from a window that holds ``n`` frames (pts order).

    Slow family: ``linspace(0, n-1, frames)`` truncated, computed in float32 like
    PyTorchVideo's ``uniform_temporal_subsample`` (so rounding ties match it exactly).
    DPC: every ``downsample``-th frame, ``num_seq*seq_len`` of them, clamped to the last
    frame (DPC's ``start + k*downsample`` frame blocks).
    """
    if n < 1:
        raise ValueError("a window needs at least one frame")
    if isinstance(protocol, DpcProtocol):
        return [min(k * protocol.downsample, n - 1) for k in range(protocol.frames_per_window)]
    idx = torch.linspace(0, n - 1, protocol.frames_per_window)
    return torch.clamp(idx, 0, n - 1).long().tolist()


def _needed_distinct(protocol: Protocol) -> int:
    """Frames a window must hold so that no selected frame is a repeat."""
    if isinstance(protocol, DpcProtocol):
        return (protocol.frames_per_window - 1) * protocol.downsample + 1
    return protocol.frames_per_window


@dataclass
class _Window:
    start: int
    end: int
    frames: dict[int, Any]
    closed: bool = False
    eof: bool = False


def _collect(src: Source, bounds: Sequence[tuple[int, int]]) -> list[_Window]:
    """Frames of every window (distinct, ascending starts), in as few decode passes as sensible.

    One pass serves consecutive windows while the gap to the next one is short; each window
    takes the frames with ``start <= pts < end`` decoded before the first frame with
    ``pts >= end`` (PyTorchVideo's rule).
    """
    windows = [_Window(s, e, {}) for s, e in bounds]
    gap = _SEEK_GAP_SECONDS / src.time_base
    while True:
        todo = [w for w in windows if not w.closed]
        if not todo:
            return windows
        exhausted = True
        anchor = todo[0].start
        frames = src.frames_from(anchor)
        for frame in frames:
            pts = frame.pts
            for w in todo:
                if w.closed:
                    continue
                if pts >= w.end:
                    w.closed = True
                elif pts >= w.start:
                    w.frames[pts] = frame
            todo = [w for w in todo if not w.closed]
            if not todo:
                exhausted = False
                break
            nxt = todo[0]
            if nxt.start > anchor and not nxt.frames and nxt.start - pts > gap:
                exhausted = False  # seek to the next window rather than decode the gap
                break
        frames.close()
        if exhausted:
            for w in todo:
                w.closed = True
                w.eof = True


def read_frames(
    path: str | os.PathLike[str], starts: Sequence[float] | None, protocol: Protocol
) -> DecodedFrames:
    """Decode the frames ``protocol`` selects from the windows starting at ``starts`` (seconds).

    Windows are ``[s, s + protocol.window_seconds(fps))``; DPC windows use the stream's
    average frame rate. With a SlowFast ``backend`` the windows are SlowFast's own (placed
    from the stream's metadata, :mod:`dimcollapse.data.slowfast`) and ``starts`` must be
    ``None``. Raises :class:`VideoError` for unreadable or damaged files and for a window
    that contains no frame at all (e.g. a start past the real end of the video).
    """
    path = Path(path)
    if isinstance(protocol, SlowProtocol) and protocol.backend is not None:
        if starts is not None:
            raise ValueError(f"protocol {protocol.name!r} places SlowFast's own windows: pass starts=None")
        return read_slowfast(path, protocol)
    if not starts:
        raise ValueError("read_frames needs at least one window start")
    starts = [s if isinstance(s, (int, float, Fraction)) and not isinstance(s, bool) else _as_float(s) for s in starts]
    for s in starts:
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"{path}: window start must be a finite number >= 0 seconds, got {s!r}")
    try:
        with Source(path) as src:
            if isinstance(protocol, DpcProtocol) and src.fps is None:
                raise VideoError(path, STAGE, "stream has no frame rate, needed for DPC's frame-counted window")
            window = protocol.window_seconds(src.fps)
            bounds = [(src.sec_to_pts(s), src.sec_to_pts(s + window)) for s in starts]
            distinct = sorted(set(bounds))
            collected = dict(zip(distinct, _collect(src, distinct)))
            interval = 1 / src.fps if src.fps else 0.0
            rgb: dict[int, np.ndarray] = {}
            chosen: list[np.ndarray] = []
            pts_out: list[tuple[int, ...]] = []
            counts: list[int] = []
            shorts: list[bool] = []
            for s, b in zip(starts, bounds):
                w = collected[b]
                ordered = sorted(w.frames)
                if not ordered:
                    end = "end of the video" if w.eof else "window end"
                    raise VideoError(
                        path, STAGE,
                        f"no frames in the window [{float(s):.3f}, {float(s) + window:.3f}) s "
                        f"(reached the {end}; the video may be shorter than its header says, or truncated)",
                    )
                sel = [ordered[i] for i in frame_indices(len(ordered), protocol)]
                for p in sel:
                    if p not in rgb:
                        rgb[p] = to_rgb(w.frames[p], protocol)
                    chosen.append(rgb[p])
                pts_out.append(tuple(sel))
                counts.append(len(ordered))
                past_end = w.eof and src.pts_to_sec(ordered[-1]) + interval < float(s) + window - 0.5 * interval
                shorts.append(past_end or len(ordered) < _needed_distinct(protocol))
            return decoded_frames(path, chosen, pts_out, counts, shorts)
    except av.FFmpegError as err:
        raise VideoError(path, STAGE, f"damaged video data ({ffmpeg_message(err)})") from None


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"window start must be a number of seconds, got {value!r}") from None


def load_clip(
    path: str | os.PathLike[str], start_sec: float, protocol: str | Protocol = "paper", **overrides: Any
) -> torch.Tensor:
    """The normalised clip whose window starts at ``start_sec`` seconds.

    Returns float32 ``3×T×H×W`` for the Slow protocols and ``N×3×SL×H×W`` for ``dpc``.
    For a multi-crop protocol it returns the **centre** crop of that window. For ``paper``
    the result equals PyTorchVideo's ``get_clip(start_sec, start_sec + window)`` + the
    paper's transforms (``tests/pytorchvideo_reference.py``). ``overrides`` are protocol
    settings (``frames=16, rate=4``...). SlowFast's decoding (``slowfast_test``, any
    ``backend``) places its own windows: use :func:`load_views`.
    """
    p = resolve_protocol(protocol, **overrides)
    if p.slowfast_windows:
        raise ValueError(f"protocol {p.name!r} places SlowFast's own windows (its backend): use load_views")
    decoded = read_frames(path, [start_sec], p)
    if p.crops > 1:  # the centre crop alone (same offsets as the middle of SlowFast's three)
        p = resolve_protocol(p, spatial_views=1)
    return frames_to_views(decoded.frames, p)[0]


def decode_row(row: Row, protocol: Protocol) -> tuple[np.ndarray, bool]:
    """The protocol's uint8 frames for one manifest row and its short flag.

    Raises :class:`VideoExcluded` for a video the protocol's ``min_frames`` leaves out and
    :class:`VideoError` (stage ``decode``) for any problem, including a manifest row whose
    duration is unusable.
    """
    min_frames = protocol.min_frames if isinstance(protocol, DpcProtocol) else None
    if min_frames is not None and row.frames is not None and row.frames < min_frames:
        raise VideoExcluded(
            row.path, STAGE,
            f"excluded: {row.frames} frames, fewer than min_frames={min_frames} "
            f"(DPC drops videos of at most num_seq*seq_len*downsample frames)",
        )
    if protocol.slowfast_windows:  # SlowFast places its windows from the stream itself
        decoded = read_frames(row.path, None, protocol)
        return decoded.frames, decoded.short
    try:
        starts = clip_starts(protocol, row.duration, fps=row.fps, video_id=row.id)
    except ValueError as err:
        ensure_openable(row.path)  # a broken file explains a missing duration best
        raise VideoError(row.path, STAGE, f"cannot place the clip: {err}") from None
    decoded = read_frames(row.path, starts, protocol)
    return decoded.frames, decoded.short


def load_views(
    path: str | os.PathLike[str], protocol: str | Protocol = "slowfast_test", **overrides: Any
) -> torch.Tensor:
    """Every view of one video, as the extraction pipeline computes them.

    Returns float32 ``V×3×T×H×W`` (``V×N×3×SL×H×W`` for ``dpc``) in SlowFast's order
    (view ``temporal·crops + spatial``): 30 views for ``slowfast_test``, 1 for ``paper`` and
    ``dpc``. Windows are placed by the protocol's own rule; ``paper`` and ``dpc`` need the
    video's duration and frame rate, which are probed here exactly as the manifest does.
    Same code path as :class:`dimcollapse.data.clips.ClipDataset` without a cache.
    """
    from dimcollapse.data.probe import probe_video

    p = resolve_protocol(protocol, **overrides)
    path = Path(path)
    if p.slowfast_windows:
        row = Row(path.stem, str(path), math.nan, math.nan)
    else:
        info = probe_video(path)
        row = Row(path.stem, str(path), info.duration, info.fps, info.frames)
    frames, _ = decode_row(row, p)
    return frames_to_views(frames, p)
