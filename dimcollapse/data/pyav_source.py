"""One video opened with PyAV, as every decoding path of the package reads it.

:class:`Source` opens the container (SLICE threading only: FRAME/AUTO threading can deadlock
when decoding stops early), knows the stream's time base and start, and decodes from a
keyframe at or before a timestamp: it seeks to the keyframe before it
(``backward=True, any_frame=False``), checks that it really landed at or before that time
(AVI indexes are in decode time, so a seek can land on a keyframe *after* the target —
``Megamind_bugy.avi`` does), steps back further when it did not, and falls back to decoding
from the start when seeking fails. :func:`to_rgb` converts a selected frame as the protocol
stores it (scaled in FFmpeg, or scaled and rounded to uint8 as DPC's frame dumps were).

The frame rules that choose which frames are decoded live with their codebases:
:mod:`dimcollapse.data.video` (PyTorchVideo's, for ``paper`` and ``dpc``) and
:mod:`dimcollapse.data.slowfast_video` (SlowFast's two backends). Every problem surfaces as
:class:`dimcollapse.failures.VideoError` with the file, stage ``"decode"`` and a message
saying what is wrong.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np

from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol
from dimcollapse.data.uint8_scale import scale_uint8
from dimcollapse.data.views import scaled_size
from dimcollapse.failures import VideoError

STAGE = "decode"

# FFmpeg's log callback takes the GIL and a lock on every message; silence it.
av.logging.set_level(None)


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


def decoded_frames(path: Path, chosen: list[np.ndarray], pts: list[tuple[int, ...]], counts: list[int],
             shorts: list[bool]) -> DecodedFrames:
    """The chosen frames of every window as one array; a clip whose frame size changes
    part-way (a resolution switch inside the stream) cannot be stacked and is an error."""
    shapes = {a.shape for a in chosen}
    if len(shapes) != 1:
        raise VideoError(path, STAGE, f"frame size changes inside the clip: {sorted(shapes)}")
    return DecodedFrames(np.stack(chosen), tuple(pts), tuple(counts), tuple(shorts))


def check_file(path: Path) -> None:
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


class Source:
    """One open video: the container, its first video stream and its timing facts.

    The container can be reopened (the last-resort fallback when seeking fails), so every
    decode pass asks this object for the current stream.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        check_file(path)
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
            raise VideoError(self.path, STAGE, f"cannot open as a video container ({ffmpeg_message(err)})") from None
        self.container = container
        if not container.streams.video:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
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

    def __enter__(self) -> Source:
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
    def frames_from(self, start_pts: int) -> Generator[Any, None, None]:
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
    Source(Path(path)).close()


def to_rgb(frame: Any, protocol: Protocol) -> np.ndarray:
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


def ffmpeg_message(err: av.FFmpegError) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"
