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

It is faster because it never decodes from the start of the file for a clip in the middle:
it seeks to the keyframe before the window (``backward=True, any_frame=False``), checks
that it really landed at or before the window start (AVI indexes are in decode time, so a
seek can land on a keyframe *after* the target — ``Megamind_bugy.avi`` does), steps back
further when it did not, and falls back to decoding from the start when seeking fails. It
stops decoding at the window end, and converts to RGB (and resizes) only the selected frames.

``slowfast_test`` instead follows SlowFast's own decoding (``backend``: its torchvision
reader or its PyAV path), whose arithmetic lives in :mod:`dimcollapse.data.slowfast`;
:func:`load_views` returns every view of a video through the pipeline's code path.

Threading is SLICE only: FRAME/AUTO threading can deadlock when decoding stops early.
Every problem surfaces as :class:`dimcollapse.failures.VideoError` with the file, stage
``"decode"`` and a message saying what is wrong.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import av.logging
import numpy as np
import torch

from dimcollapse.failures import VideoError, VideoExcluded
from dimcollapse.data import slowfast
from dimcollapse.data.manifest import Row
from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol, clip_starts, resolve_protocol
from dimcollapse.data.uint8_scale import scale_uint8
from dimcollapse.data.views import frames_to_views, scaled_size

STAGE = "decode"

# FFmpeg's log callback takes the GIL and a lock on every message; silence it.
av.logging.set_level(None)

# When the next window starts more than this far past the current decode position,
# seek instead of decoding through the gap.
_SEEK_GAP_SECONDS = 1.0


@dataclass(frozen=True)
class DecodedFrames:
    """The uint8 frames a protocol selects from one video, before any scaling.

    ``frames`` holds ``windows × frames_per_window`` RGB frames (``K×H×W×3``, window-major)
    at the video's native resolution — or already scaled by FFmpeg when the protocol's
    ``resize`` is ``"ffmpeg"``. ``pts`` gives each window's selected frame timestamps
    (stream time base), ``counts`` how many frames each window contained, and ``short``
    whether any window ran past the end of the video or had to repeat frames.
    """

    frames: np.ndarray
    pts: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]
    short_windows: tuple[bool, ...]

    @property
    def short(self) -> bool:
        return any(self.short_windows)


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


# ---------------------------------------------------------------------------- opening
def _check_file(path: Path) -> None:
    """Clear messages for the common file-level problems, before FFmpeg gives a vaguer one."""
    try:
        if not path.exists():
            raise VideoError(path, STAGE, "file does not exist")
        if not path.is_file():
            raise VideoError(path, STAGE, "not a regular file")
        if path.stat().st_size == 0:
            raise VideoError(path, STAGE, "file is empty (0 bytes)")
        with open(path, "rb"):
            pass
    except PermissionError:
        raise VideoError(path, STAGE, "file is not readable (permission denied)") from None


class _Source:
    """One open video: the container, its first video stream and its timing facts.

    The container can be reopened (the last-resort fallback when seeking fails), so every
    decode pass asks this object for the current stream.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        _check_file(path)
        self.container: Any = None
        self._open()
        stream = self.stream
        if stream.time_base is None:
            self.close()
            raise VideoError(path, STAGE, "video stream has no time base: timestamps cannot be read")
        self.time_base: Fraction = stream.time_base
        # PyTorchVideo measures time from the stream's start_time (0 when unknown).
        self.start_pts: int = int(stream.start_time) if stream.start_time is not None else 0
        rate = stream.average_rate or stream.guessed_rate
        self.fps: float | None = float(rate) if rate else None

    def _open(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None
        try:
            container = av.open(str(self.path), mode="r")
        except av.error.PermissionError:
            raise VideoError(self.path, STAGE, "file is not readable (permission denied)") from None
        except av.FFmpegError as err:
            raise VideoError(self.path, STAGE, f"cannot open as a video container ({_ffmpeg_message(err)})") from None
        self.container = container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            container.close()
            raise VideoError(self.path, STAGE, f"no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            container.close()
            raise VideoError(self.path, STAGE, "unsupported video codec: FFmpeg has no decoder for it")
        stream.thread_type = "SLICE"
        self.stream = stream
        self.fresh = True  # no packet read since opening: decoding starts at the file start

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ time
    def sec_to_pts(self, seconds: float) -> int:
        """PyTorchVideo's ``secs_to_pts(..., round_mode="ceil")``, same arithmetic."""
        return math.ceil(seconds / self.time_base) + self.start_pts

    def pts_to_sec(self, pts: int) -> float:
        return float((pts - self.start_pts) * self.time_base)

    # ------------------------------------------------------------------ decoding
    def frames_from(self, start_pts: int) -> Iterator[Any]:
        """Decoded frames, in decode order, from a keyframe at or before ``start_pts`` on.

        After a seek, frames decoded before that anchor keyframe (all earlier than
        ``start_pts``) are dropped; if a frame at or after ``start_pts`` comes before any
        such keyframe, the seek landed too late and is retried further back, down to
        decoding from the start of the file.
        """
        floor = self.start_pts
        target = start_pts
        step = max(1, math.ceil(1 / self.time_base))
        while True:
            if target <= floor:
                if not self.fresh:
                    self._open()
                self.fresh = False
                yield from self._decode()
                return
            try:
                self.container.seek(int(target), backward=True, any_frame=False, stream=self.stream)
            except av.FFmpegError:
                target = floor  # seeking unsupported or index broken: decode from the start
                continue
            self.fresh = False
            anchored = False
            late = False
            for frame in self._decode():
                if not anchored:
                    if frame.key_frame and frame.pts <= start_pts:
                        anchored = True
                    elif frame.pts >= start_pts:
                        late = True  # landed after the window start: frames may be missing
                        break
                    else:
                        continue
                yield frame
            if not late:
                return
            target -= step
            step *= 2

    def _decode(self) -> Iterator[Any]:
        for frame in self.container.decode(self.stream):
            if frame.pts is None:
                raise VideoError(self.path, STAGE, "decoded frame has no timestamp (pts)")
            yield frame


def ensure_openable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`VideoError` unless ``path`` opens as a video with a decodable stream.

    Used to name the real problem of a manifest row that has no usable duration.
    """
    _Source(Path(path)).close()


@dataclass
class _Window:
    start: int
    end: int
    frames: dict[int, Any]
    closed: bool = False
    eof: bool = False


def _collect(src: _Source, bounds: Sequence[tuple[int, int]]) -> list[_Window]:
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


def _to_rgb(frame: Any, protocol: Protocol) -> np.ndarray:
    """One decoded frame as the protocol stores it: RGB uint8, native size unless scaled here.

    FFmpeg-side scaling (``resize="ffmpeg"``, SlowFast's ``torchvision`` backend) happens in
    the colour conversion; DPC frames are scaled and rounded to uint8 (and JPEG
    round-tripped) as DPC's frame dumps were.
    """
    slowfast_area = isinstance(protocol, SlowProtocol) and protocol.backend == "torchvision"
    if protocol.resize == "ffmpeg" or slowfast_area:
        h, w = scaled_size(frame.height, frame.width, protocol)
        method = "AREA" if slowfast_area else "BILINEAR"
        return frame.reformat(width=w, height=h, format="rgb24", interpolation=method).to_ndarray()
    rgb = frame.to_ndarray(format="rgb24")
    if isinstance(protocol, DpcProtocol):
        rgb = scale_frames(rgb[None], protocol)[0]
        if protocol.jpeg_quality is not None:
            rgb = jpeg_roundtrip(rgb, protocol.jpeg_quality)
    return rgb


def scale_frames(frames: np.ndarray, protocol: Protocol) -> np.ndarray:
    """``K×H×W×3`` uint8 frames scaled to the protocol's short side, rounded back to uint8.

    Bilinear (``align_corners=False``, no antialiasing), the interpolation of the
    model-input path, evaluated so that the bytes are the same on every machine
    (:func:`~dimcollapse.data.uint8_scale.scale_uint8`): that is what the clip cache stores
    and what DPC's frames are (see :mod:`dimcollapse.data.clips`). Frames already at the
    scaled size are returned unchanged.
    """
    h, w = frames.shape[1:3]
    nh, nw = scaled_size(h, w, protocol)
    if (nh, nw) == (h, w):
        return frames
    return scale_uint8(frames, nh, nw)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode one ``H×W×3`` uint8 frame as baseline JPEG at ``quality`` and decode it again.

    Emulates DPC's OpenCV ``imwrite(..., IMWRITE_JPEG_QUALITY=80)`` frame dumps, read back
    with PIL: libjpeg(-turbo) with the standard quantisation tables scaled by ``quality``,
    4:2:0 chroma subsampling, no optimisation, integer DCT. PIL and OpenCV both call libjpeg
    with these settings; the library version can still change a few pixel values.
    """
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"))


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
        return _read_slowfast(path, protocol)
    if not starts:
        raise ValueError("read_frames needs at least one window start")
    starts = [s if isinstance(s, (int, float, Fraction)) and not isinstance(s, bool) else _as_float(s) for s in starts]
    for s in starts:
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"{path}: window start must be a finite number >= 0 seconds, got {s!r}")
    try:
        with _Source(path) as src:
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
                        rgb[p] = _to_rgb(w.frames[p], protocol)
                    chosen.append(rgb[p])
                pts_out.append(tuple(sel))
                counts.append(len(ordered))
                past_end = w.eof and src.pts_to_sec(ordered[-1]) + interval < float(s) + window - 0.5 * interval
                shorts.append(past_end or len(ordered) < _needed_distinct(protocol))
            return _decoded(path, chosen, pts_out, counts, shorts)
    except av.FFmpegError as err:
        raise VideoError(path, STAGE, f"damaged video data ({_ffmpeg_message(err)})") from None


def _decoded(path: Path, chosen: list[np.ndarray], pts: list[tuple[int, ...]], counts: list[int],
             shorts: list[bool]) -> DecodedFrames:
    """The chosen frames of every window as one array; a clip whose frame size changes
    part-way (a resolution switch inside the stream) cannot be stacked and is an error."""
    shapes = {a.shape for a in chosen}
    if len(shapes) != 1:
        raise VideoError(path, STAGE, f"frame size changes inside the clip: {sorted(shapes)}")
    return DecodedFrames(np.stack(chosen), tuple(pts), tuple(counts), tuple(shorts))


def _read_slowfast(path: Path, protocol: SlowProtocol) -> DecodedFrames:
    """SlowFast's test views of one video (see :mod:`dimcollapse.data.slowfast`)."""
    try:
        with _Source(path) as src:
            stream = src.stream
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
                        rgb[key] = _to_rgb(frames[k], protocol)
                    chosen.append(rgb[key])
                pts_out.append(tuple(frames[k].pts for k in sel))
                counts.append(n)
                shorts.append(slowfast.raw_last_index(start, end, T) > n - 1 or len(set(sel)) < T)
            return _decoded(path, chosen, pts_out, counts, shorts)
    except av.FFmpegError as err:
        raise VideoError(path, STAGE, f"damaged video data ({_ffmpeg_message(err)})") from None


def _pyav_window(src: _Source, w: "slowfast.PyavWindow | None") -> list[Any]:
    """SlowFast's ``pyav_decode_stream`` (buffer_size 0): frames with ``start <= pts <= end``
    in decode order, plus the first one past ``end`` (it is stored before the loop stops),
    de-duplicated by pts (later wins) and sorted by pts. ``None``: the whole video."""
    start, end = (0, math.inf) if w is None else (w.start_pts, w.end_pts)
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


def _torchvision_window(src: _Source, w: "slowfast.TorchvisionWindow | None") -> list[Any]:
    """torchvision's video reader on a microsecond range: frames with
    ``start_us <= pts_us <= end_us`` in decode order (no sorting, no de-duplication), stopping
    at the first frame past the end. ``None`` or ``end_us = -1``: to the end of the video."""
    start_us, end_us = (0, -1) if w is None else (w.start_us, w.end_us)
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


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"window start must be a number of seconds, got {value!r}") from None


def _ffmpeg_message(err: av.FFmpegError) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"


def load_clip(
    path: str | os.PathLike[str], start_sec: float, protocol: str | Protocol = "paper", **overrides: Any
) -> torch.Tensor:
    """The normalised clip whose window starts at ``start_sec`` seconds.

    Returns float32 ``3×T×H×W`` for the Slow protocols and ``N×3×SL×H×W`` for ``dpc``.
    For a multi-crop protocol it returns the **centre** crop of that window. For ``paper``
    the result equals PyTorchVideo's ``get_clip(start_sec, start_sec + window)`` + the
    paper's transforms (see :func:`pytorchvideo_clip`). ``overrides`` are protocol
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


def load_views(path: str | os.PathLike[str], protocol: str | Protocol = "slowfast_test", **overrides: Any) -> torch.Tensor:
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


# ------------------------------------------------------------------------- reference
def _pytorchvideo_functional() -> ModuleType:
    """``pytorchvideo.transforms.functional`` loaded from its file.

    Importing it as a package module runs ``pytorchvideo/transforms/__init__.py``, which
    fails on current torchvision; the functional module itself only needs torch and numpy.
    """
    import pytorchvideo

    file = Path(pytorchvideo.__file__).parent / "transforms" / "functional.py"
    spec = importlib.util.spec_from_file_location("_pytorchvideo_transforms_functional", file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytorchvideo_clip(
    path: str | os.PathLike[str], start_sec: float, protocol: str | Protocol = "paper", **overrides: Any
) -> torch.Tensor:
    """The paper's own pipeline, for verification and benchmarks: PyTorchVideo's PyAV
    ``EncodedVideo`` (reads the whole file, decodes from its start, converts every frame in
    the window) + ``UniformTemporalSubsample`` → ``ShortSideScale`` → ``CenterCropVideo`` →
    ``/255`` → ``NormalizeVideo``. Only defined for single-view Slow protocols with
    torchvision-style centre crops (``paper`` and its overrides).
    """
    p = resolve_protocol(protocol, **overrides)
    if not isinstance(p, SlowProtocol) or p.views != 1 or p.crop_rounding != "round" or p.resize != "torch":
        raise ValueError(f"PyTorchVideo reference covers the paper's single-view pipeline, not {p.name!r}")
    from pytorchvideo.data.encoded_video import EncodedVideo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from torchvision.transforms._transforms_video import CenterCropVideo, NormalizeVideo
    functional = _pytorchvideo_functional()
    video = EncodedVideo.from_path(str(path), decoder="pyav", decode_audio=False)
    try:
        data = video.get_clip(start_sec, start_sec + p.window_seconds())["video"]
    finally:
        video.close()
    if data is None:
        raise VideoError(path, STAGE, "PyTorchVideo found no frames in the window")
    x = functional.uniform_temporal_subsample(data, p.frames)
    x = functional.short_side_scale(x, p.side_size)
    x = CenterCropVideo(crop_size=(p.crop_size, p.crop_size))(x)
    x = x / 255.0
    return NormalizeVideo(list(p.mean), list(p.std))(x)
