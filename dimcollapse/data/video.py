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

from dimcollapse.failures import VideoError
from dimcollapse.data.protocols import Protocol, resolve_protocol

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
    if protocol.family == "slow":
        idx = torch.linspace(0, n - 1, protocol.frames_per_window)
        return torch.clamp(idx, 0, n - 1).long().tolist()
    return [min(k * int(protocol.downsample), n - 1) for k in range(protocol.frames_per_window)]  # type: ignore[arg-type]


def _needed_distinct(protocol: Protocol) -> int:
    """Frames a window must hold so that no selected frame is a repeat."""
    if protocol.family == "slow":
        return protocol.frames_per_window
    return (protocol.frames_per_window - 1) * int(protocol.downsample) + 1  # type: ignore[arg-type]


def scaled_size(height: int, width: int, protocol: Protocol) -> tuple[int, int]:
    """Output (height, width) of the short-side scaling to ``protocol.side_size``.

    PyTorchVideo's ``short_side_scale`` (and SlowFast's jitter at a fixed scale) compute the
    long side as ``floor(long / short * size)``; DPC's ``Scale``/frame extraction as
    ``int(size * long / short)``. The two can differ by one pixel, so each family keeps its own.
    """
    size = protocol.side_size
    if protocol.family == "dpc":
        if width < height:
            return int(size * height / width), size
        return size, int(size * width / height)
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


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
    if protocol.resize == "ffmpeg":
        h, w = scaled_size(frame.height, frame.width, protocol)
        return frame.reformat(width=w, height=h, format="rgb24", interpolation="BILINEAR").to_ndarray()
    return frame.to_rgb().to_ndarray()


def read_frames(
    path: str | os.PathLike[str], starts: Sequence[float], protocol: Protocol
) -> DecodedFrames:
    """Decode the frames ``protocol`` selects from the windows starting at ``starts`` (seconds).

    Windows are ``[s, s + protocol.window_seconds(fps))``; DPC windows use the stream's
    average frame rate. Raises :class:`VideoError` for unreadable or damaged files and for
    a window that contains no frame at all (e.g. a start past the real end of the video).
    """
    path = Path(path)
    if not starts:
        raise ValueError("read_frames needs at least one window start")
    starts = [s if isinstance(s, (int, float, Fraction)) and not isinstance(s, bool) else _as_float(s) for s in starts]
    for s in starts:
        if not math.isfinite(s) or s < 0:
            raise ValueError(f"{path}: window start must be a finite number >= 0 seconds, got {s!r}")
    try:
        with _Source(path) as src:
            if protocol.family == "dpc" and src.fps is None:
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
            shapes = {a.shape for a in chosen}
            if len(shapes) != 1:
                raise VideoError(path, STAGE, f"frame size changes inside the clip: {sorted(shapes)}")
            return DecodedFrames(np.stack(chosen), tuple(pts_out), tuple(counts), tuple(shorts))
    except av.FFmpegError as err:
        raise VideoError(path, STAGE, f"damaged video data ({_ffmpeg_message(err)})") from None


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"window start must be a number of seconds, got {value!r}") from None


def _ffmpeg_message(err: av.FFmpegError) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"


# ------------------------------------------------------------------------- transforms
def _offset(extra: int, rounding: str) -> int:
    return int(math.ceil(extra / 2)) if rounding == "ceil" else int(round(extra / 2.0))


def _crop_offsets(height: int, width: int, protocol: Protocol) -> list[tuple[int, int]]:
    """Top-left corners of the spatial crops (torchvision/DPC centre crop, or SlowFast's 3)."""
    c = protocol.crop_size
    if height < c or width < c:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {c}")
    y = _offset(height - c, protocol.crop_rounding)
    x = _offset(width - c, protocol.crop_rounding)
    if protocol.crops == 1:
        return [(y, x)]
    if height > width:  # portrait: top / centre / bottom
        return [(0, x), (y, x), (height - c, x)]
    return [(y, 0), (y, x), (y, width - c)]


def frames_to_views(frames: np.ndarray | torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Scale, crop and normalise decoded uint8 frames into the model's input views.

    ``frames``: ``K×H×W×3`` uint8 with ``K`` a multiple of ``protocol.frames_per_window``.
    Returns ``(windows*crops, *protocol.clip_shape)`` float32, window-major (view
    ``w*crops + c``). Per window, in PyTorchVideo's order: float → short side to
    ``side_size`` (bilinear, ``align_corners=False``, no antialiasing; skipped when already
    there) → crop(s) → ``/255`` → ``(x - mean) / std``.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected K×H×W×3 uint8 frames, got {tuple(x.shape)} {x.dtype}")
    per = protocol.frames_per_window
    if x.shape[0] == 0 or x.shape[0] % per:
        raise ValueError(f"{x.shape[0]} frames is not a whole number of {per}-frame windows")
    mean = torch.tensor(protocol.mean, dtype=torch.float32)[:, None, None, None]
    std = torch.tensor(protocol.std, dtype=torch.float32)[:, None, None, None]
    c = protocol.crop_size
    views = []
    for w in range(x.shape[0] // per):
        clip = x[w * per:(w + 1) * per].permute(3, 0, 1, 2).to(torch.float32).contiguous()
        h, wd = clip.shape[-2:]
        nh, nw = scaled_size(h, wd, protocol)
        if (nh, nw) != (h, wd):
            clip = torch.nn.functional.interpolate(clip, size=(nh, nw), mode="bilinear", align_corners=False)
        for y0, x0 in _crop_offsets(nh, nw, protocol):
            v = clip[..., y0:y0 + c, x0:x0 + c] / 255.0
            v = (v - mean) / std
            if protocol.family == "dpc":  # C×(N·SL)×H×W → N×C×SL×H×W, DPC's block layout
                v = v.reshape(3, protocol.num_seq, protocol.seq_len, c, c).permute(1, 0, 2, 3, 4)
            views.append(v)
    return torch.stack(views).contiguous()


def load_clip(
    path: str | os.PathLike[str], start_sec: float, protocol: str | Protocol = "paper", **overrides: Any
) -> torch.Tensor:
    """The normalised clip whose window starts at ``start_sec`` seconds.

    Returns float32 ``3×T×H×W`` for the Slow protocols and ``N×3×SL×H×W`` for ``dpc``.
    For ``slowfast_test`` (3 spatial crops per temporal window) it returns the **centre**
    crop of that window (SlowFast's spatial index 1); all 30 views of a video come from
    :class:`dimcollapse.data.clips.ClipDataset`. For ``paper`` the result equals PyTorchVideo's
    ``get_clip(start_sec, start_sec + window)`` + the paper's transforms (see
    :func:`pytorchvideo_clip`). ``overrides`` are protocol settings (``frames=16, rate=4``...).
    """
    p = resolve_protocol(protocol, **overrides)
    decoded = read_frames(path, [start_sec], p)
    if p.crops > 1:  # the centre crop alone (same offsets as the middle of SlowFast's three)
        p = resolve_protocol(p, spatial_views=1)
    return frames_to_views(decoded.frames, p)[0]


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
    if p.family != "slow" or p.views != 1 or p.crop_rounding != "round" or p.resize != "torch":
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
