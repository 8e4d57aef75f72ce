"""Named clip-sampling protocols: which frames of a video a model sees, and how they are scaled.

A protocol is a frozen, fully explicit description of the input side of an extraction:
where the clip(s) start, which frames inside each window are taken, how the frames are
resized, cropped and normalised. Each sampling family has its own small type —
:class:`SlowProtocol` (``T`` frames of a window, one or several windows and crops) and
:class:`DpcProtocol` (blocks of consecutive frames) — on a common base :class:`Protocol`
with the settings they share (scaling, crop, normalisation, clip placement). Presets
reproduce the original codebases:

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
or a field of the other family, is rejected with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SLOWFAST_MEAN = (0.45, 0.45, 0.45)
SLOWFAST_STD = (0.225, 0.225, 0.225)

# Bump when the meaning of a field changes in a way that changes pixels, so old caches
# (named by Protocol.key / Protocol.sampling_key) are never reused by mistake.
PIXEL_SEMANTICS_VERSION = 2
# The scaler that makes the uint8 frames of the clip cache and of DPC's frame dumps
# (dimcollapse.data.uint8_scale): in the sampling key of the protocols whose stored
# frames it makes (Protocol.scales_to_uint8), so a change to it renews exactly their clip
# caches and features. Keys without it are those of torch's float32 kernel, whose bytes
# depended on the machine.
UINT8_SCALER = "float64-1"

FAMILIES = ("slow", "dpc")
CLIP_POSITIONS = ("centre", "random", "uniform")
CROP_ROUNDINGS = ("round", "ceil")
RESIZERS = ("torch", "ffmpeg")
BACKENDS = ("torchvision", "pyav")

#: The layout of :meth:`Protocol.to_dict`: every setting of every family, ``null`` where
#: one does not apply. It is the layout of the single protocol type this module had
#: before the families got types of their own; feature-store and Snakemake parameter
#: keys hash this dict, so keeping it keeps every store entry and clip cache valid.
DICT_FIELDS = (
    "name", "family", "side_size", "crop_size", "crop_rounding", "mean", "std", "clip_position",
    "seed", "resize", "frames", "rate", "target_fps", "temporal_views", "spatial_views", "num_seq",
    "seq_len", "downsample", "backend", "min_frames", "jpeg_quality", "output_size",
)


def _positive_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and bool(v >= 1)


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """What every sampling family has: placement, scaling, crop and normalisation.

    Not built directly: :func:`resolve_protocol` builds the family's own type. The
    properties below are what the decoder and the clip cache need from any protocol.
    """

    family: ClassVar[str]

    name: str
    side_size: int
    crop_size: int
    crop_rounding: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    clip_position: str = "centre"
    seed: int = 0
    resize: str = "torch"

    def __post_init__(self) -> None:
        self._validate()

    # ----------------------------------------------------------------- derived sizes
    @property
    def frames_per_window(self) -> int:
        """Frames decoded per temporal window."""
        raise NotImplementedError

    @property
    def windows(self) -> int:
        """Temporal windows per video."""
        return 1

    @property
    def crops(self) -> int:
        """Spatial crops per temporal window."""
        return 1

    @property
    def views(self) -> int:
        """Views per video (windows × crops): 1 for paper and dpc, 30 for slowfast_test."""
        return self.windows * self.crops

    @property
    def input_size(self) -> int:
        """Height = width of one model input."""
        return self.crop_size

    @property
    def clip_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        raise NotImplementedError

    @property
    def slowfast_windows(self) -> bool:
        """True when SlowFast's own decoding places the windows from the stream (``backend``),
        so no start times are computed from the manifest."""
        return False

    @property
    def scales_to_uint8(self) -> bool:
        """True when frames are scaled in our code and rounded to uint8 before the views (the
        clip cache's frames, DPC's frame dumps); FFmpeg scales them for ``resize="ffmpeg"``
        and SlowFast's ``torchvision`` backend."""
        return self.resize == "torch"

    def window_seconds(self, fps: float | None = None) -> float:
        """Length of one temporal window in seconds."""
        raise NotImplementedError

    # ------------------------------------------------------------------ identities
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (for sidecars) in the :data:`DICT_FIELDS` layout, with ``key``
        and ``sampling_key``."""
        out: dict[str, Any] = {}
        for name in DICT_FIELDS:
            v = getattr(self, name, None)
            out[name] = list(v) if isinstance(v, tuple) else v
        out["key"] = self.key
        out["sampling_key"] = self.sampling_key
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Protocol:
        """Inverse of :meth:`to_dict` (the derived ``key``/``sampling_key`` entries are ignored).

        The family's type is chosen by the ``family`` entry; settings of the other family
        must be null (as :meth:`to_dict` writes them).
        """
        unknown = set(data) - set(DICT_FIELDS) - {"key", "sampling_key"}
        if unknown:
            raise ValueError(f"not a protocol description: unknown entries {sorted(unknown)}")
        family = data.get("family")
        if family not in FAMILY_TYPES:
            raise ValueError(f"not a protocol description: family must be one of {FAMILIES}, got {family!r}")
        cls = FAMILY_TYPES[family]
        names = _field_names(cls)
        foreign = sorted(
            k for k in data if k in DICT_FIELDS and k not in names and k != "family" and data[k] is not None
        )
        if foreign:
            raise ValueError(f"not a {family} protocol description: settings {foreign} belong to another family")
        settings: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**settings)

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

    def _family_sampling(self) -> dict[str, Any]:
        """The family's settings that decide which frames are decoded and how they are scaled."""
        raise NotImplementedError

    def _family_pixels(self) -> dict[str, Any]:
        """The family's settings that decide the model input beyond the decoded frames."""
        raise NotImplementedError

    def _neutral_pixels(self) -> dict[str, Any]:
        """Values of :meth:`_family_pixels` settings that leave the decoded frames as they are."""
        raise NotImplementedError

    def cache_protocol(self) -> Protocol:
        """The protocol of this one's clip cache: the same frames (same :attr:`sampling_key`,
        which also names it) with a neutral crop and normalisation, which the cache does not
        use. It depends on the sampling alone, so every model instance that shares the cache
        gives the same one, and a crop change of one of them is no change of the cache's job."""
        neutral: dict[str, Any] = {
            "crop_size": self.side_size,
            "crop_rounding": "round",
            "mean": (0.0, 0.0, 0.0),
            "std": (1.0, 1.0, 1.0),
        }
        return replace(self, name=self.sampling_key, **neutral, **self._neutral_pixels())

    def _sampling_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "family": self.family,
            "clip_position": self.clip_position,
            "resize": self.resize,
            "side_size": self.side_size,
        }
        out.update({k: v for k, v in self._family_sampling().items() if v is not None})
        if self.clip_position == "random":
            out["seed"] = self.seed
        if self.scales_to_uint8:
            out["uint8_scaler"] = UINT8_SCALER
        out["version"] = PIXEL_SEMANTICS_VERSION
        return out

    def _pixel_fields(self) -> dict[str, Any]:
        out = self._sampling_fields()
        out.update(crop_size=self.crop_size, crop_rounding=self.crop_rounding, mean=self.mean, std=self.std)
        out.update({k: v for k, v in self._family_pixels().items() if v is not None})
        return out

    # ------------------------------------------------------------------ validation
    def _bad(self, msg: str) -> ValueError:
        return ValueError(f"protocol {self.name!r}: {msg}")

    def _check_positive(self, *names: str) -> None:
        for name in names:
            v = getattr(self, name)
            if not _positive_int(v):
                raise self._bad(f"{name} must be a positive integer, got {v!r}")

    def _validate(self) -> None:
        if not self.name or not all(ch.isalnum() or ch in "_-." for ch in self.name):
            raise self._bad("name must be a non-empty path-safe string (letters, digits, _ - .)")
        self._check_positive("side_size", "crop_size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise self._bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.crop_size > self.side_size:
            raise self._bad(
                f"crop_size {self.crop_size} is larger than side_size {self.side_size}: the crop would not fit"
            )
        if self.crop_rounding not in CROP_ROUNDINGS:
            raise self._bad(f"crop_rounding must be one of {CROP_ROUNDINGS}, got {self.crop_rounding!r}")
        if self.resize not in RESIZERS:
            raise self._bad(f"resize must be one of {RESIZERS}, got {self.resize!r}")
        if self.clip_position not in CLIP_POSITIONS:
            raise self._bad(f"clip_position must be one of {CLIP_POSITIONS}, got {self.clip_position!r}")
        if self.clip_position in ("centre", "random") and self.windows != 1:
            raise self._bad(
                f"clip_position {self.clip_position!r} gives one clip; use 'uniform' for {self.windows} temporal views"
            )
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != 3 or not all(isinstance(x, float) and math.isfinite(x) for x in v):
                raise self._bad(f"{name} must be three finite floats (R, G, B), got {v!r}")
        if min(self.std) <= 0:
            raise self._bad(f"std must be positive, got {self.std!r}")


@dataclass(frozen=True, kw_only=True)
class SlowProtocol(Protocol):
    """``frames`` frames of each ``frames × rate / target_fps`` s window (``paper``,
    ``slowfast_test``). ``backend`` set means SlowFast's own decoding and temporal sampling
    (``slowfast_test``); ``None`` is PyTorchVideo's (``paper``)."""

    family: ClassVar[str] = "slow"

    frames: int
    rate: int
    target_fps: float
    temporal_views: int = 1
    spatial_views: int = 1
    backend: str | None = None

    @property
    def frames_per_window(self) -> int:
        return self.frames

    @property
    def windows(self) -> int:
        return self.temporal_views

    @property
    def crops(self) -> int:
        return self.spatial_views

    @property
    def clip_shape(self) -> tuple[int, ...]:
        """(3, T, size, size)."""
        return (3, self.frames, self.input_size, self.input_size)

    @property
    def slowfast_windows(self) -> bool:
        return self.backend is not None

    @property
    def scales_to_uint8(self) -> bool:
        return super().scales_to_uint8 and self.backend != "torchvision"

    def window_seconds(self, fps: float | None = None) -> float:
        """``frames * rate / target_fps``: frame-rate independent, as PyTorchVideo and SlowFast
        define it (``fps`` is ignored)."""
        return self.frames * self.rate / self.target_fps

    def _family_sampling(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "rate": self.rate,
            "target_fps": self.target_fps,
            "temporal_views": self.temporal_views,
            "backend": self.backend,
        }

    def _family_pixels(self) -> dict[str, Any]:
        return {"spatial_views": self.spatial_views}

    def _neutral_pixels(self) -> dict[str, Any]:
        return {"spatial_views": 1}

    def _validate(self) -> None:
        self._check_positive("frames", "rate", "temporal_views", "spatial_views")
        super()._validate()
        fps = self.target_fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise self._bad(f"target_fps must be a positive number, got {fps!r}")
        if self.spatial_views not in (1, 3):
            raise self._bad(
                f"spatial_views must be 1 (centre crop) or 3 (SlowFast's 3 crops), got {self.spatial_views!r}"
            )
        if self.backend is not None:
            if self.backend not in BACKENDS:
                raise self._bad(
                    f"backend must be one of {BACKENDS} (or null for PyTorchVideo's sampling), got {self.backend!r}"
                )
            if self.clip_position != "uniform":
                raise self._bad(
                    "backend (SlowFast's decoding) places SlowFast's uniform test views: "
                    "clip_position must be 'uniform'"
                )
            if self.resize != "torch":
                raise self._bad(
                    f"resize {self.resize!r} does not apply with backend {self.backend!r}, "
                    "which scales as SlowFast does"
                )


@dataclass(frozen=True, kw_only=True)
class DpcProtocol(Protocol):
    """``num_seq`` blocks of ``seq_len`` frames, one every ``downsample`` native frames (``dpc``).

    ``min_frames`` drops shorter videos, ``jpeg_quality`` round-trips frames through libjpeg,
    ``output_size`` resizes the crop (nearest); each is off when ``None``.
    """

    family: ClassVar[str] = "dpc"

    num_seq: int
    seq_len: int
    downsample: int
    min_frames: int | None = None
    jpeg_quality: int | None = None
    output_size: int | None = None

    @property
    def frames_per_window(self) -> int:
        return self.num_seq * self.seq_len

    @property
    def input_size(self) -> int:
        """``output_size`` when set, else ``crop_size``."""
        return self.output_size if self.output_size is not None else self.crop_size

    @property
    def clip_shape(self) -> tuple[int, ...]:
        """(num_seq, 3, seq_len, size, size): DPC's block layout."""
        return (self.num_seq, 3, self.seq_len, self.input_size, self.input_size)

    def window_seconds(self, fps: float | None = None) -> float:
        """DPC counts native frames, so it needs the video's ``fps``:
        ``num_seq * seq_len * downsample / fps``."""
        if fps is None or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"protocol {self.name!r} (dpc) needs the video's frame rate, got fps={fps!r}")
        return self.num_seq * self.seq_len * self.downsample / fps

    def _family_sampling(self) -> dict[str, Any]:
        return {
            "num_seq": self.num_seq,
            "seq_len": self.seq_len,
            "downsample": self.downsample,
            "min_frames": self.min_frames,
            "jpeg_quality": self.jpeg_quality,
        }

    def _family_pixels(self) -> dict[str, Any]:
        return {"output_size": self.output_size}

    def _neutral_pixels(self) -> dict[str, Any]:
        return {"output_size": None}

    def _validate(self) -> None:
        self._check_positive("num_seq", "seq_len", "downsample")
        super()._validate()
        for name in ("min_frames", "output_size"):
            v = getattr(self, name)
            if v is not None and not _positive_int(v):
                raise self._bad(f"{name} must be a positive integer or null, got {v!r}")
        q = self.jpeg_quality
        if q is not None and (isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 1 <= q <= 100):
            raise self._bad(f"jpeg_quality must be an integer from 1 to 100 or null (off), got {q!r}")
        if self.clip_position == "uniform":
            raise self._bad("dpc samples one window per video: clip_position must be 'centre' or 'random'")


FAMILY_TYPES: dict[str, type[Protocol]] = {"slow": SlowProtocol, "dpc": DpcProtocol}


def _field_names(cls: type[Protocol]) -> set[str]:
    return {f.name for f in fields(cls)}


def _digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


def resolve_protocol(name: str | Protocol, **overrides: Any) -> Protocol:
    """The preset ``name`` (or a given protocol) with ``overrides`` applied, as its family's type.

    Raises ``ValueError`` for an unknown preset, an unknown setting name, a setting of the
    other family, or an invalid value.
    """
    if isinstance(name, Protocol):
        cls: type[Protocol] = type(name)
        base_fields = {f: getattr(name, f) for f in _field_names(cls)}
    else:
        if name not in PRESETS:
            raise ValueError(f"unknown protocol {name!r}; known protocols: {sorted(PRESETS)}")
        preset = dict(PRESETS[name])
        cls = FAMILY_TYPES[preset.pop("family")]
        base_fields = {"name": name, **preset}
    settable = _field_names(cls) - {"name"}
    every_setting = set().union(*(_field_names(t) for t in FAMILY_TYPES.values()))
    for key, value in overrides.items():
        if key in ("name", "family"):
            raise ValueError(f"protocol setting {key!r} cannot be overridden (choose another preset)")
        if key in every_setting and key not in settable:
            raise ValueError(
                f"protocol setting {key!r} does not apply to protocol {base_fields['name']!r} ({cls.family} family)"
            )
        if key not in settable:
            raise ValueError(
                f"unknown protocol setting {key!r} for protocol {base_fields['name']!r}; "
                f"known settings: {sorted(settable)}"
            )
        base_fields[key] = _coerce(key, value)
    return cls(**base_fields)


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
