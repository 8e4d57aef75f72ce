"""Every kind of bad input becomes a VideoError naming the file, stage 'decode' and the problem."""

import ctypes
import os
import shutil
import tempfile
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from dimcollapse.failures import VideoError
from dimcollapse.data.video import load_clip

VIDEOS = Path("/work/shared/testdata/videos")


def _error(path: Path, start: float = 0.0) -> VideoError:
    with pytest.raises(VideoError) as info:
        load_clip(path, start)
    err = info.value
    assert err.path == str(path) and err.stage == "decode"
    return err


def _mpeg4_avi(path: Path, n: int = 30) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 4, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _error(tmp_path / "nope.mp4").message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "not a regular file" in _error(tmp_path).message


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    assert "empty (0 bytes)" in _error(tmp_path / "empty.mp4").message


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    assert "cannot open as a video container" in _error(path).message


def test_truncated_files(tmp_path: Path) -> None:
    # an MP4 cut in half loses its index (moov atom) at the end
    mp4 = tmp_path / "clip.mp4"
    with av.open(str(mp4), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(50):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = mp4.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    assert "cannot open as a video container" in _error(tmp_path / "half.mp4").message
    # an AVI cut to its first 4 KB has no usable header
    src = (VIDEOS / "Megamind.avi").read_bytes()
    (tmp_path / "head.avi").write_bytes(src[:4096])
    assert "cannot open" in _error(tmp_path / "head.avi").message
    # an AVI cut at 40 %: its header still claims 11 s, frames end near 4.5 s
    (tmp_path / "cut.avi").write_bytes(src[: len(src) * 4 // 10])
    err = _error(tmp_path / "cut.avi", 6.0)
    assert "no frames in the window [6.000, 8.133) s" in err.message and "end of the video" in err.message


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert "no video stream (streams: audio)" in _error(path).message


def test_unsupported_codec(tmp_path: Path) -> None:
    data = _mpeg4_avi(tmp_path / "ok.avi").read_bytes()
    assert data.count(b"FMP4") == 2  # the stream header and format codec tags
    (tmp_path / "alien.avi").write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    assert load_clip(tmp_path / "ok.avi", 0.0).shape == (3, 8, 224, 224)
    assert "unsupported video codec" in _error(tmp_path / "alien.avi").message


def _load_in_thread_as_nobody(path: Path) -> BaseException | None:
    """Root reads any file; a thread whose file-system uid is 'nobody' does not.

    ``setfsuid`` changes only the calling thread's credentials (and drops its file
    capabilities), so no process has to be forked from the multi-threaded test runner.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    outcome: list[BaseException | None] = []

    def run() -> None:
        previous = libc.setfsuid(65534)
        try:
            load_clip(path, 0.0)
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)
        finally:
            libc.setfsuid(previous)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


def test_unreadable_file() -> None:
    # in a world-traversable directory, so only the file's own mode blocks reading
    folder = Path(tempfile.mkdtemp(prefix="dimcollapse-perm-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        path = folder / "locked.avi"
        shutil.copy(VIDEOS / "tree.avi", path)
        path.chmod(0)
        if os.geteuid() == 0:
            err = _load_in_thread_as_nobody(path)
            assert isinstance(err, VideoError) and err.path == str(path) and err.stage == "decode"
            message = err.message
        else:
            message = _error(path).message
        assert "not readable (permission denied)" in message
    finally:
        shutil.rmtree(folder)


def test_megamind_bugy_decodes_cleanly() -> None:
    """The 'damaged' sample decodes without a single FFmpeg error, corrupt flag or missing
    frame with FFmpeg 8.1 (its damage is an index whose keyframe entries make seeks land after
    the target, handled in test_video_decode); so it is a valid video, not a failure."""
    clip = load_clip(VIDEOS / "Megamind_bugy.avi", 4.0)
    assert clip.shape == (3, 8, 224, 224) and bool(clip.isfinite().all())
