"""Probe videos cheaply: can the file be used, and how long is it really?

Probing reads every packet of the video stream (demuxing, which touches only the
container's bytes) but decodes only the first frame, so it costs a fraction of a full
decode. Header values are not trusted: ``tree.avi`` in the sample set claims 444 frames
and holds 68, so the numbers come from the packets themselves:

* ``frames``: the number of non-empty video packets. For the codecs of the datasets
  (H.264, MPEG-4 part 2/XviD, VP9, cinepak, msmpeg4) one packet carries one frame, so
  this equals the decoded frame count; it over-counts only for streams that pad with
  placeholder packets (DivX "packed B-frames" N-VOPs).
* ``duration`` (seconds): from the first packet's timestamp to the end of the last
  one (its timestamp plus its duration; when packets carry no duration, the median
  gap between timestamps). Timestamps are pts, or dts where pts is missing. Only a
  stream without any timestamps falls back to the header durations.
* ``fps``: ``frames / duration``, the mean rate actually present (variable-rate safe);
  for constant-rate files it equals the nominal rate.
* ``width``, ``height``: the frame size of the stream (what the clip cache's disk estimate
  scales from).
* ``rotation``: the display rotation the file asks a player to apply (the display matrix
  FFmpeg attaches to the first decoded frame, degrees counter-clockwise in 0..359), which
  the pipeline does *not* apply: PyTorchVideo and SlowFast decode through PyAV, which
  returns frames as stored, so the paper's models saw them unrotated too. It is recorded
  so that such videos are named (``results/failures/<dataset>.notes.csv``).

A file is rejected (a :class:`~dimcollapse.failures.VideoError` with stage ``"probe"``
and a message naming the problem) when it does not exist, is not a regular file, is
empty, cannot be read, is not a container FFmpeg can open, has no video stream, has a
codec without decoder, has no packets, yields an incomplete/corrupt packet or a read
error while demuxing (truncated or damaged), ends far before its header's duration
(truncated), or whose first frame does not decode.
"""

from __future__ import annotations

import logging
import os
import stat
import statistics
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context

import av
from tqdm import tqdm

from dimcollapse.failures import VideoError

STAGE = "probe"
_AV_TIME_BASE = 1_000_000
# A file whose packets end this much before its header duration is called truncated.
_TRUNCATION_SLACK_S = 0.5
_TRUNCATION_SLACK_FRACTION = 0.05

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """Measured properties of a usable video (see the module docstring)."""

    duration: float
    fps: float
    frames: int
    width: int = 0
    height: int = 0
    rotation: int = 0


def _fail(path: str, message: str) -> VideoError:
    return VideoError(path, STAGE, message)


def _check_file(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "file does not exist") from None
    except OSError as err:
        raise _fail(path, f"cannot stat file: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "not a regular file")
    if st.st_size == 0:
        raise _fail(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise _fail(path, "permission denied: the file is not readable") from None
    except OSError as err:
        raise _fail(path, f"cannot read file: {err.strerror}") from None


def _ffmpeg_message(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return f"{type(err).__name__}: {text}"


def probe_video(path: str | os.PathLike[str]) -> ProbeResult:
    """Probe one video; raise :class:`VideoError` (stage ``"probe"``) if it is unusable."""
    path = os.fspath(path)
    _check_file(path)
    av.logging.set_level(None)
    try:
        container = av.open(path)
    except av.error.PermissionError:
        raise _fail(path, "permission denied: the file is not readable") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise _fail(path, f"cannot open as a video container ({_ffmpeg_message(err)})") from None
    with container:
        return _probe_open(path, container)


def _probe_open(path: str, container: av.container.InputContainer) -> ProbeResult:
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
        raise _fail(path, f"no video stream (streams present: {', '.join(kinds)})")
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None:
        raise _fail(path, "unsupported codec: FFmpeg has no decoder for the video stream")
    codec.thread_count = 1
    time_base = stream.time_base
    stamps: list[int] = []
    durations: list[int] = []
    frames = 0
    first: list[av.VideoFrame] = []
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.is_corrupt:
                raise _fail(
                    path,
                    f"damaged or truncated: packet {frames + 1} at byte {packet.pos} is incomplete or corrupt",
                )
            frames += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                stamps.append(ts)
                durations.append(packet.duration or 0)
            if not first:
                first = _decodes(path, packet)
        if not first and frames:
            first = _flush(path, codec)
    except av.error.FFmpegError as err:
        raise _fail(
            path, f"damaged container: read error after {frames} packets ({_ffmpeg_message(err)})"
        ) from None
    if frames == 0:
        raise _fail(path, "the video stream has no packets")
    if not first:
        raise _fail(path, f"no frame of the {codec.name} stream decodes")
    duration = _duration(stream, container, stamps, durations, frames, time_base)
    if not duration > 0:
        raise _fail(path, "cannot determine the duration (no timestamps and no header duration)")
    header = _header_duration(stream, container)
    if header is not None and duration < header - max(_TRUNCATION_SLACK_S, _TRUNCATION_SLACK_FRACTION * header):
        raise _fail(
            path, f"truncated: the header says {header:.2f} s but the packets end after {duration:.2f} s"
        )
    return ProbeResult(duration=duration, fps=frames / duration, frames=frames,
                       width=int(codec.width or stream.width or 0), height=int(codec.height or stream.height or 0),
                       rotation=round(first[0].rotation) % 360)


def _decodes(path: str, packet: av.Packet) -> list[av.VideoFrame]:
    try:
        return list(packet.decode())
    except av.error.FFmpegError as err:
        raise _fail(path, f"the first frame does not decode ({_ffmpeg_message(err)})") from None


def _flush(path: str, codec: av.video.codeccontext.VideoCodecContext) -> list[av.VideoFrame]:
    try:
        return list(codec.decode(None))
    except av.error.FFmpegError as err:
        raise _fail(path, f"the first frame does not decode ({_ffmpeg_message(err)})") from None


def _duration(
    stream: av.video.stream.VideoStream,
    container: av.container.InputContainer,
    stamps: list[int],
    durations: list[int],
    frames: int,
    time_base: Fraction | None,
) -> float:
    if stamps and time_base:
        order = sorted(set(stamps))
        gaps = [b - a for a, b in zip(order, order[1:]) if b > a]
        fallback = statistics.median(gaps) if gaps else _nominal_ticks(stream, time_base)
        end = max(ts + (d if d > 0 else fallback) for ts, d in zip(stamps, durations))
        return float((end - order[0]) * time_base)
    header = _header_duration(stream, container)
    if header is not None:
        return header
    rate = stream.average_rate or stream.guessed_rate
    return float(frames / rate) if rate else 0.0


def _nominal_ticks(stream: av.video.stream.VideoStream, time_base: Fraction) -> float:
    """One frame's length in stream ticks from the nominal rate (single-packet streams)."""
    rate = stream.average_rate or stream.guessed_rate
    return float(1 / (rate * time_base)) if rate else 0.0


def _header_duration(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> float | None:
    """The duration the header claims for the video stream, if it states one.

    The container-level duration only counts when the video stream is the only stream
    (otherwise it may be an audio track's length).
    """
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / _AV_TIME_BASE
    return None


def _probe_or_message(path: str) -> ProbeResult | str:
    """Worker body: the result, or the failure message (``VideoError`` does not pickle)."""
    try:
        return probe_video(path)
    except VideoError as err:
        return err.message
    except Exception as err:  # noqa: BLE001 - any unexpected error is this file's failure
        return f"unexpected error while probing: {type(err).__name__}: {err}"


def probe_many(
    paths: Sequence[str], *, workers: int = 1, progress: bool = True
) -> list[ProbeResult | VideoError]:
    """Probe ``paths`` in parallel processes; result ``i`` belongs to ``paths[i]``.

    Processes rather than threads because demuxing runs Python code per packet. A
    ``spawn`` pool keeps workers clean of the parent's threads (PyTorch, tqdm).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    bar = tqdm(total=len(paths), desc="probing videos", unit="video", disable=not progress, mininterval=1.0)
    results: list[ProbeResult | VideoError] = []
    with bar:
        for path, outcome in zip(paths, _probe_iter(paths, workers)):
            results.append(_fail(path, outcome) if isinstance(outcome, str) else outcome)
            bar.update()
    return results


def _probe_iter(paths: Sequence[str], workers: int) -> Iterator[ProbeResult | str]:
    """Outcomes in input order; a worker that dies (FFmpeg crash) costs only its file.

    Tasks go one at a time (``chunksize=1``) so that few are in flight when a worker
    dies; the first unfinished file is then probed alone in a fresh process, named in
    the failure if it crashes again, and a new pool takes the rest.
    """
    if workers == 1 or len(paths) <= 1:
        yield from map(_probe_or_message, paths)
        return
    start = 0
    while start < len(paths):
        try:
            with _pool(min(workers, len(paths) - start)) as pool:
                for outcome in pool.map(_probe_or_message, paths[start:]):
                    yield outcome
                    start += 1
        except BrokenProcessPool:
            log.warning("a probe worker died; probing %s alone", paths[start])
            yield _probe_isolated(paths[start])
            start += 1


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def _probe_isolated(path: str) -> ProbeResult | str:
    with _pool(1) as pool:
        try:
            return pool.submit(_probe_or_message, path).result()
        except BrokenProcessPool:
            return "the probing process crashed on this file (FFmpeg/PyAV died while reading it)"
