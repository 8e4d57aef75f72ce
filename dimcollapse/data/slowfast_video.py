"""SlowFast's test views decoded as SlowFast decodes them (``slowfast_test``, its ``backend``).

``backend="torchvision"``: SlowFast's torchvision video reader on a microsecond range (frames
scaled while decoding by FFmpeg's area filter); ``backend="pyav"``: SlowFast's PyAV path at
commit c4ecfa1. The arithmetic that places the windows and picks the frames is SlowFast's
own, transcribed in :mod:`dimcollapse.data.slowfast`; this module runs it on a
:class:`~dimcollapse.data.pyav_source.Source`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from dimcollapse.data import slowfast
from dimcollapse.data.protocols import SlowProtocol
from dimcollapse.data.pyav_source import STAGE, DecodedFrames, Source, decoded_frames, ffmpeg_message, to_rgb
from dimcollapse.failures import VideoError


def read_slowfast(path: Path, protocol: SlowProtocol) -> DecodedFrames:
    """SlowFast's test views of one video (see :mod:`dimcollapse.data.slowfast`)."""
    try:
        with Source(path) as src:
            stream = src.stream
            collect: Callable[[Source, Any], list[Any]]  # frames of one window (None: all)
            if protocol.backend == "pyav":
                if not stream.average_rate:
                    raise VideoError(path, STAGE, "stream has no average frame rate, needed by SlowFast's PyAV path")
                try:
                    windows: Sequence[Any] = slowfast.pyav_windows(
                        fps=float(stream.average_rate), frames_length=int(stream.frames or 0),
                        duration=stream.duration, frames=protocol.frames, rate=protocol.rate,
                        target_fps=float(protocol.target_fps), num_clips=protocol.windows,
                    )
                except ValueError as err:
                    raise VideoError(path, STAGE, f"SlowFast's PyAV path cannot place its windows: {err}") from None
                collect = _pyav_window
            else:
                fps = slowfast.torchvision_fps(stream.guessed_rate)
                windows = slowfast.torchvision_windows(
                    fps=fps, duration_s=slowfast.torchvision_duration(stream.duration, src.time_base),
                    time_base=src.time_base, frames=protocol.frames, rate=protocol.rate,
                    target_fps=float(protocol.target_fps), num_clips=protocol.windows,
                )
                collect = _torchvision_window
            whole: list[Any] | None = None
            rgb: dict[int, np.ndarray] = {}
            chosen: list[np.ndarray] = []
            pts_out: list[tuple[int, ...]] = []
            counts: list[int] = []
            shorts: list[bool] = []
            T = protocol.frames_per_window
            for i, w in enumerate(windows):
                frames = None if w.whole else collect(src, w)
                if frames:
                    start, end = 0.0, w.clip_size - 1
                elif not w.whole and protocol.backend == "pyav":  # c4ecfa1 stacks an empty list
                    raise VideoError(
                        path, STAGE,
                        f"no frame in SlowFast's window {i} (pts {w.start_pts} to {w.end_pts}); SlowFast's PyAV "
                        "path fails on this video (the header's frame count or duration overstates it)",
                    )
                else:  # torchvision backend (or no usable header): decode all, place the window on it
                    if whole is None:
                        whole = collect(src, None)
                    if not whole:
                        raise VideoError(path, STAGE, "no frame decodes (SlowFast would fail on this video)")
                    frames = whole
                    start, end = slowfast.start_end_idx(len(frames), w.clip_size, i, protocol.windows)
                n = len(frames)
                sel = slowfast.temporal_indices(n, start, end, T)
                for k in sel:
                    key = frames[k].pts
                    if key not in rgb:
                        rgb[key] = to_rgb(frames[k], protocol)
                    chosen.append(rgb[key])
                pts_out.append(tuple(frames[k].pts for k in sel))
                counts.append(n)
                shorts.append(slowfast.raw_last_index(start, end, T) > n - 1 or len(set(sel)) < T)
            return decoded_frames(path, chosen, pts_out, counts, shorts)
    except av.FFmpegError as err:
        raise VideoError(path, STAGE, f"damaged video data ({ffmpeg_message(err)})") from None


def _pyav_window(src: Source, w: slowfast.PyavWindow | None) -> list[Any]:
    """SlowFast's ``pyav_decode_stream`` (buffer_size 0): frames with ``start <= pts <= end``
    in decode order, plus the first one past ``end`` (it is stored before the loop stops),
    de-duplicated by pts (later wins) and sorted by pts. ``None``: the whole video."""
    start: float = 0
    end: float = math.inf
    if w is not None and w.start_pts is not None and w.end_pts is not None:  # (both None: a whole window)
        start, end = w.start_pts, w.end_pts
    found: dict[int, Any] = {}
    frames = src.frames_from(int(start))
    for frame in frames:
        if frame.pts < start:
            continue
        found[frame.pts] = frame
        if frame.pts > end:
            break
    frames.close()
    return [found[p] for p in sorted(found)]


def _torchvision_window(src: Source, w: slowfast.TorchvisionWindow | None) -> list[Any]:
    """torchvision's video reader on a microsecond range: frames with
    ``start_us <= pts_us <= end_us`` in decode order (no sorting, no de-duplication), stopping
    at the first frame past the end. ``None`` or ``end_us = -1``: to the end of the video."""
    start_us, end_us = 0, -1
    if w is not None and w.start_us is not None and w.end_us is not None:  # (both None: a whole window)
        start_us, end_us = w.start_us, w.end_us
    tb = src.time_base
    out: list[Any] = []
    # first stream pts whose microsecond value can reach start_us
    anchor = math.floor(Fraction(int(start_us)) * slowfast.MICROSECONDS / tb) - 1
    frames = src.frames_from(anchor)
    for frame in frames:
        us = slowfast.rescale(frame.pts, tb, slowfast.MICROSECONDS)
        if end_us > 0 and us > end_us:
            break
        if us >= start_us:
            out.append(frame)
    frames.close()
    return out
