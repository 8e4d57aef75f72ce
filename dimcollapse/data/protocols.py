"""Named clip-sampling protocols: which frames of a video a model sees, and how they are scaled.

A :class:`Protocol` is a frozen, fully explicit description of the input side of an
extraction: where the clip(s) start, which frames inside each window are taken, how the
frames are resized, cropped and normalised. Presets reproduce the original codebases:

``paper``
    The paper's PyTorchVideo pipeline (``supervised_baseline.py``/``video_ssl.py``): one
    clip of ``frames`` × ``rate`` frames at a target 30 fps (window ``frames*rate/30`` s),
    ``frames`` indices ``linspace(0, n-1, frames)`` truncated over the frames inside the
    window, short side 256 (bilinear), centre crop 224 (torchvision offsets: Python
    ``round``), ``/255``, ImageNet mean/std. The paper drew the clip start at random
    without a seed; we default to the centre (``clip_position="centre"``) and offer
    ``"random"`` seeded per video.
``slowfast_test``
    SlowFast's multi-view test protocol, decoded as SlowFast decodes it (``backend``):
    ``temporal_views`` = 10 windows placed by SlowFast's own frame arithmetic
    (:mod:`dimcollapse.data.slowfast`), ``spatial_views`` = 3 crops of 256
    (left/centre/right, or top/centre/bottom for portrait video; SlowFast's ``ceil``
    offsets) after scaling the short side to 256; mean 0.45, std 0.225.
    ``backend="torchvision"`` (default; SlowFast's default since commit 99a655b, which
    added the contrastive-SSL configs) scales while decoding with FFmpeg's area filter;
    ``backend="pyav"`` is SlowFast's PyAV path at commit c4ecfa1 (full-size frames,
    bilinear scaling after normalisation).
``dpc``
    DPC's input (Han et al. 2019, as the paper's ``dpc.py`` feeds it): ``num_seq`` = 5
    blocks of ``seq_len`` = 5 consecutive frames taken every ``downsample`` = 3 native
    frames (no frame-rate conversion; use ``downsample=1`` for HMDB51 as DPC does).
    DPC trained and evaluated on uint8 frame dumps scaled to short side ``side_size``
    (240 for UCF101/HMDB51, 256 for Kinetics; DPC's ``extract_frame.py``), so frames are
    scaled and rounded to uint8 first, optionally JPEG round-tripped (``jpeg_quality``,
    80 in DPC's dumps), then centre-cropped to ``crop_size`` with DPC's ``int(round(.))``
    offsets and, when ``output_size`` is set, resized to it with nearest-neighbour
    sampling (DPC's ``Scale``, PIL ``NEAREST``: the UCF101 R18-128 model saw
    240 → crop 224 → 128); ImageNet mean/std. ``min_frames`` drops videos with fewer
    frames, as DPC drops ``vlen <= num_seq*seq_len*downsample`` (76 with downsample 3,
    26 with downsample 1).

Every field can be overridden through :func:`resolve_protocol`; a name that is not a field,
or a field that does not apply to the protocol's family, is rejected with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SLOWFAST_MEAN = (0.45, 0.45, 0.45)
SLOWFAST_STD = (0.225, 0.225, 0.225)

# Bump when the meaning of a field changes in a way that changes pixels, so old caches
# (named by Protocol.key / Protocol.sampling_key) are never reused by mistake.
PIXEL_SEMANTICS_VERSION = 2

FAMILIES = ("slow", "dpc")
CLIP_POSITIONS = ("centre", "random", "uniform")
CROP_ROUNDINGS = ("round", "ceil")
RESIZERS = ("torch", "ffmpeg")
BACKENDS = ("torchvision", "pyav")

# Fields that only make sense for one family; the others are None there (the optional
# ones, ``backend`` and the DPC extras, may be None in their own family too).
_SLOW_ONLY = ("frames", "rate", "target_fps", "temporal_views", "spatial_views")
_SLOW_OPTIONAL = ("backend",)
_DPC_ONLY = ("num_seq", "seq_len", "downsample")
_DPC_OPTIONAL = ("min_frames", "jpeg_quality", "output_size")
# Fields fixed by the preset (they select code paths, not settings).
_FIXED = ("name", "family")


@dataclass(frozen=True)
class Protocol:
    """A complete, hashable description of how clips are sampled and normalised.

    Slow-family fields (``frames``, ``rate``, ``target_fps``, ``temporal_views``,
    ``spatial_views``, ``backend``) are ``None`` for ``dpc``; DPC fields (``num_seq``,
    ``seq_len``, ``downsample``, ``min_frames``, ``jpeg_quality``, ``output_size``) are
    ``None`` for the Slow family. ``backend`` set means SlowFast's own decoding and
    temporal sampling (``slowfast_test``); ``None`` is PyTorchVideo's (``paper``).
    """

    name: str
    family: str
    side_size: int
    crop_size: int
    crop_rounding: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    clip_position: str = "centre"
    seed: int = 0
    resize: str = "torch"
    frames: int | None = None
    rate: int | None = None
    target_fps: float | None = None
    temporal_views: int | None = None
    spatial_views: int | None = None
    num_seq: int | None = None
    seq_len: int | None = None
    downsample: int | None = None
    backend: str | None = None
    min_frames: int | None = None
    jpeg_quality: int | None = None
    output_size: int | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # ----------------------------------------------------------------- derived sizes
    @property
    def frames_per_window(self) -> int:
        """Frames decoded per temporal window (T for Slow, num_seq*seq_len for DPC)."""
        if self.family == "slow":
            return int(self.frames)  # type: ignore[arg-type]
        return int(self.num_seq) * int(self.seq_len)  # type: ignore[arg-type]

    @property
    def windows(self) -> int:
        """Temporal windows per video."""
        return int(self.temporal_views) if self.family == "slow" else 1  # type: ignore[arg-type]

    @property
    def crops(self) -> int:
        """Spatial crops per temporal window."""
        return int(self.spatial_views) if self.family == "slow" else 1  # type: ignore[arg-type]

    @property
    def views(self) -> int:
        """Views per video (windows × crops): 1 for paper and dpc, 30 for slowfast_test."""
        return self.windows * self.crops

    @property
    def input_size(self) -> int:
        """Height = width of one model input: ``output_size`` when set, else ``crop_size``."""
        return int(self.output_size) if self.output_size is not None else self.crop_size

    @property
    def clip_shape(self) -> tuple[int, ...]:
        """Shape of one model input: (3, T, size, size) or (num_seq, 3, seq_len, size, size)."""
        c = self.input_size
        if self.family == "slow":
            return (3, int(self.frames), c, c)  # type: ignore[arg-type]
        return (int(self.num_seq), 3, int(self.seq_len), c, c)  # type: ignore[arg-type]

    def window_seconds(self, fps: float | None = None) -> float:
        """Length of one temporal window in seconds.

        Slow family: ``frames * rate / target_fps`` (frame-rate independent, as PyTorchVideo
        and SlowFast define it). DPC counts native frames, so it needs the video's ``fps``:
        ``num_seq * seq_len * downsample / fps``.
        """
        if self.family == "slow":
            return self.frames * self.rate / self.target_fps  # type: ignore[operator]
        if fps is None or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"protocol {self.name!r} (dpc) needs the video's frame rate, got fps={fps!r}")
        return self.num_seq * self.seq_len * self.downsample / fps  # type: ignore[operator]

    # ------------------------------------------------------------------ identities
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (for sidecars), including ``key`` and ``sampling_key``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["key"] = self.key
        out["sampling_key"] = self.sampling_key
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Protocol":
        """Inverse of :meth:`to_dict` (the derived ``key``/``sampling_key`` entries are ignored)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"key", "sampling_key"}
        if unknown:
            raise ValueError(f"not a protocol description: unknown entries {sorted(unknown)}")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)

    @property
    def key(self) -> str:
        """Short path-safe id that changes whenever anything affecting the clip pixels changes."""
        return f"{self.name}-{_digest(self._pixel_fields())}"

    @property
    def sampling_key(self) -> str:
        """Id of the *scaled uint8 frames* only (what the clip cache stores).

        It covers the frame choice and the short-side scaling (the cache stores frames
        at the protocol's scaled size), not the crop, normalisation or number of spatial
        crops: protocols that differ only in those share one clip cache, so a crop change
        never decodes again.
        """
        return f"{self.family}-{_digest(self._sampling_fields())}"

    def _sampling_fields(self) -> dict[str, Any]:
        keep = ["family", "clip_position", "resize", "side_size", *_SLOW_ONLY, *_DPC_ONLY,
                *_SLOW_OPTIONAL, "min_frames", "jpeg_quality"]
        keep.remove("spatial_views")
        out = {k: getattr(self, k) for k in keep if getattr(self, k) is not None}
        if self.clip_position == "random":
            out["seed"] = self.seed
        out["version"] = PIXEL_SEMANTICS_VERSION
        return out

    def _pixel_fields(self) -> dict[str, Any]:
        out = self._sampling_fields()
        for k in ("crop_size", "crop_rounding", "mean", "std", "spatial_views", "output_size"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


def _digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _validate(p: Protocol) -> None:
    def bad(msg: str) -> ValueError:
        return ValueError(f"protocol {p.name!r}: {msg}")

    if p.family not in FAMILIES:
        raise bad(f"family must be one of {FAMILIES}, got {p.family!r}")
    if not p.name or not all(ch.isalnum() or ch in "_-." for ch in p.name):
        raise bad("name must be a non-empty path-safe string (letters, digits, _ - .)")
    own, other = (_SLOW_ONLY, _DPC_ONLY) if p.family == "slow" else (_DPC_ONLY, _SLOW_ONLY)
    other_optional = _DPC_OPTIONAL if p.family == "slow" else _SLOW_OPTIONAL
    for name in (*other, *other_optional):
        if getattr(p, name) is not None:
            raise bad(f"setting {name!r} does not apply to the {p.family} family")
    for name in own:
        if getattr(p, name) is None:
            raise bad(f"setting {name!r} is required for the {p.family} family")
    ints = ["side_size", "crop_size", *(n for n in own if n != "target_fps")]
    for name in ints:
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise bad(f"{name} must be a positive integer, got {v!r}")
    if isinstance(p.seed, bool) or not isinstance(p.seed, (int, np.integer)) or p.seed < 0:
        raise bad(f"seed must be a non-negative integer, got {p.seed!r}")
    if p.family == "slow":
        if not isinstance(p.target_fps, (int, float)) or not math.isfinite(p.target_fps) or p.target_fps <= 0:
            raise bad(f"target_fps must be a positive number, got {p.target_fps!r}")
        if p.spatial_views not in (1, 3):
            raise bad(f"spatial_views must be 1 (centre crop) or 3 (SlowFast's 3 crops), got {p.spatial_views!r}")
    for name in ("min_frames", "output_size"):
        v = getattr(p, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise bad(f"{name} must be a positive integer or null, got {v!r}")
    q = p.jpeg_quality
    if q is not None and (isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 1 <= q <= 100):
        raise bad(f"jpeg_quality must be an integer from 1 to 100 or null (off), got {q!r}")
    if p.backend is not None:
        if p.backend not in BACKENDS:
            raise bad(f"backend must be one of {BACKENDS} (or null for PyTorchVideo's sampling), got {p.backend!r}")
        if p.clip_position != "uniform":
            raise bad("backend (SlowFast's decoding) places SlowFast's uniform test views: clip_position must be 'uniform'")
        if p.resize != "torch":
            raise bad(f"resize {p.resize!r} does not apply with backend {p.backend!r}, which scales as SlowFast does")
    if p.crop_size > p.side_size:
        raise bad(f"crop_size {p.crop_size} is larger than side_size {p.side_size}: the crop would not fit")
    if p.crop_rounding not in CROP_ROUNDINGS:
        raise bad(f"crop_rounding must be one of {CROP_ROUNDINGS}, got {p.crop_rounding!r}")
    if p.resize not in RESIZERS:
        raise bad(f"resize must be one of {RESIZERS}, got {p.resize!r}")
    if p.clip_position not in CLIP_POSITIONS:
        raise bad(f"clip_position must be one of {CLIP_POSITIONS}, got {p.clip_position!r}")
    if p.clip_position in ("centre", "random") and p.windows != 1:
        raise bad(f"clip_position {p.clip_position!r} gives one clip; use 'uniform' for {p.windows} temporal views")
    if p.family == "dpc" and p.clip_position == "uniform":
        raise bad("dpc samples one window per video: clip_position must be 'centre' or 'random'")
    for name in ("mean", "std"):
        v = getattr(p, name)
        if not isinstance(v, tuple) or len(v) != 3 or not all(isinstance(x, float) and math.isfinite(x) for x in v):
            raise bad(f"{name} must be three finite floats (R, G, B), got {v!r}")
    if min(p.std) <= 0:
        raise bad(f"std must be positive, got {p.std!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        family="slow", frames=8, rate=8, target_fps=30.0, temporal_views=1, spatial_views=1,
        clip_position="centre", side_size=256, crop_size=224, crop_rounding="round",
        mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
    "slowfast_test": dict(
        family="slow", frames=8, rate=8, target_fps=30.0, temporal_views=10, spatial_views=3,
        clip_position="uniform", side_size=256, crop_size=256, crop_rounding="ceil",
        mean=SLOWFAST_MEAN, std=SLOWFAST_STD, backend="torchvision",
    ),
    "dpc": dict(
        family="dpc", num_seq=5, seq_len=5, downsample=3, clip_position="centre",
        side_size=256, crop_size=224, crop_rounding="round", mean=IMAGENET_MEAN, std=IMAGENET_STD,
    ),
}


def _coerce(name: str, value: Any) -> Any:
    """Normalise override values from YAML/CLI (lists for tuples, 'center' spelling, int floats)."""
    if name in ("mean", "std"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,) * 3
        if isinstance(value, Sequence) and not isinstance(value, str):
            try:
                return tuple(float(x) for x in value)
            except (TypeError, ValueError):
                return tuple(value)
        return value
    if name == "clip_position" and value == "center":
        return "centre"
    if name == "target_fps" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def resolve_protocol(name: "str | Protocol", **overrides: Any) -> Protocol:
    """The preset ``name`` (or a given :class:`Protocol`) with ``overrides`` applied.

    Raises ``ValueError`` for an unknown preset, an unknown setting name, a setting that
    does not apply to the preset's family, or an invalid value.
    """
    if isinstance(name, Protocol):
        base = name
        base_fields = {f.name: getattr(base, f.name) for f in fields(Protocol)}
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown protocol {name!r}; known protocols: {sorted(PRESETS)}")
        base_fields = {"name": name, **PRESETS[name]}
    settable = {f.name for f in fields(Protocol)} - set(_FIXED)
    for key, value in overrides.items():
        if key in _FIXED:
            raise ValueError(f"protocol setting {key!r} cannot be overridden (choose another preset)")
        if key not in settable:
            raise ValueError(
                f"unknown protocol setting {key!r} for protocol {base_fields['name']!r}; "
                f"known settings: {sorted(settable)}"
            )
        family = base_fields["family"]
        if (family == "slow" and key in (*_DPC_ONLY, *_DPC_OPTIONAL)) or (
            family == "dpc" and key in (*_SLOW_ONLY, *_SLOW_OPTIONAL)
        ):
            raise ValueError(
                f"protocol setting {key!r} does not apply to protocol {base_fields['name']!r} ({family} family)"
            )
        base_fields[key] = _coerce(key, value)
    return Protocol(**base_fields)


def clip_starts(
    protocol: Protocol, duration: float, *, fps: float | None = None, video_id: str | None = None
) -> list[float]:
    """Start times (seconds, ascending) of the protocol's temporal windows in one video.

    ``duration`` is the video's length in seconds (manifest), ``fps`` its average frame rate
    (needed by ``dpc`` only, whose window is counted in native frames). With
    ``max_start = max(duration - window, 0)``:

    * ``centre``: ``[max_start / 2]``;
    * ``random``: ``[u * max_start]`` with ``u`` uniform in [0, 1) drawn from a generator
      seeded by ``(seed, sha256(video_id))`` — the paper's random clip, reproducible and
      independent of row order or worker count (``video_id`` is required);
    * ``uniform``: ``[i * max_start / n for i in range(n)]``, n = ``temporal_views``
      (SlowFast's test-time ``start_idx = delta * i / num_clips`` expressed in seconds;
      with a ``backend`` SlowFast's own frame arithmetic places the views instead, see
      :mod:`dimcollapse.data.slowfast`, and this function is not used).

    A video shorter than the window starts at 0; its frames are then clamped (repeated)
    and the clip is flagged short by the decoder.
    """
    if duration is None or not isinstance(duration, (int, float, np.floating, np.integer)):
        raise ValueError(f"clip start needs a numeric duration, got {duration!r}")
    duration = float(duration)
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"clip start needs a finite non-negative duration, got {duration!r}")
    window = protocol.window_seconds(fps)
    max_start = max(duration - window, 0.0)
    if protocol.clip_position == "centre":
        return [max_start / 2]
    if protocol.clip_position == "random":
        if video_id is None:
            raise ValueError("clip_position 'random' needs the video id to seed its draw")
        id_hash = int.from_bytes(hashlib.sha256(str(video_id).encode()).digest()[:8], "little")
        rng = np.random.default_rng(np.random.SeedSequence([int(protocol.seed), id_hash]))
        return [float(rng.random()) * max_start]
    n = protocol.windows
    return [i * max_start / n for i in range(n)]

