"""The paper's own clip pipeline, PyTorchVideo's, for verification and benchmarks: what
:func:`dimcollapse.data.video.load_clip` must equal (``tests/test_video_reference.py``) and the
baseline of ``benchmarks/decode_bench.py`` and ``benchmarks/extract_bench.py``."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dimcollapse.data.protocols import Protocol, SlowProtocol, resolve_protocol
from dimcollapse.data.pyav_source import STAGE
from dimcollapse.failures import VideoError


def pytorchvideo_functional() -> ModuleType:
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
    functional = pytorchvideo_functional()
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
