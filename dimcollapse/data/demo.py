"""A small synthetic, labelled video dataset for the demo and for tests.

Pretrained weights and real datasets are not available everywhere, so the demo runs
on videos made here: a shape (disc or square) moves over a textured, static
background; the class is the motion (``move_left``, ``move_right``, ``move_up``,
``move_down``, or ``still``). Everything else varies per video from the seed:
texture, colours, shape, size, start position, speed. The files exercise what real
datasets throw at the decoder: three containers/codecs (mp4/H.264 with B-frames,
avi/MPEG-4 part 2, webm/VP9), three frame rates (24, 25, 30), two frame sizes, and one
video per class shorter than the paper's 64/30 s clip window.

Layout (Kinetics-style class folders, read by the ``kinetics`` layout with
``root=<out>`` and ``split=<split>``, or by ``folder`` with ``root=<out>/<split>``)::

    <out>/<split>/<class>/<class>_<k:03d>.<mp4|avi|webm>
    <out>/demo.json          # the plan: seed and per-video parameters

Determinism: the same arguments give the same decoded frames and, with this pinned
FFmpeg build, byte-identical files (single-threaded encoders, bit-exact muxing).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

import av
import numpy as np

from dimcollapse.atomic import atomic_path, write_json

DEMO_CLASSES: tuple[str, ...] = ("move_down", "move_left", "move_right", "move_up", "still")
_DIRECTIONS: dict[str, tuple[int, int]] = {
    "move_down": (0, 1),
    "move_left": (-1, 0),
    "move_right": (1, 0),
    "move_up": (0, -1),
    "still": (0, 0),
}
# (extension, FFmpeg muxer, encoder, encoder options). x264's macroblock-tree rate
# control made about one file in a hundred differ between identical runs (seen with
# this build even single-threaded), so it is off; B-frames stay on.
FORMATS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("mp4", "mp4", "libx264", {"preset": "veryfast", "crf": "23", "x264-params": "mbtree=0"}),
    ("avi", "avi", "mpeg4", {}),
    ("webm", "webm", "libvpx-vp9", {
        "deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "lag-in-frames": "0", "row-mt": "0",
    }),
)
FRAME_RATES: tuple[int, ...] = (24, 25, 30)
SIZES: tuple[tuple[int, int], ...] = ((160, 120), (176, 144))


class DemoSize(TypedDict):
    """How many demo videos, and how long: keywords of :func:`generate_demo`."""

    videos_per_class: int
    duration_range: tuple[float, float]
    short_seconds: float


# Keyword sets for generate_demo: the full demo, and a quick fixture for tests.
FULL: DemoSize = {"videos_per_class": 8, "duration_range": (2.4, 3.6), "short_seconds": 1.0}
TINY: DemoSize = {"videos_per_class": 3, "duration_range": (2.2, 2.5), "short_seconds": 0.8}


@dataclass(frozen=True)
class DemoVideo:
    """Everything needed to render one demo video (pure data, so plans are testable)."""

    relpath: str
    label_name: str
    container: str
    codec: str
    fps: int
    width: int
    height: int
    frames: int
    seed: tuple[int, int]


def plan_demo(
    *,
    seed: int = 0,
    videos_per_class: int = FULL["videos_per_class"],
    classes: Sequence[str] = DEMO_CLASSES,
    split: str = "val",
    duration_range: tuple[float, float] = FULL["duration_range"],
    short_seconds: float = FULL["short_seconds"],
) -> list[DemoVideo]:
    """The videos :func:`generate_demo` writes, without rendering anything.

    Video ``j`` of class ``c`` gets format ``(c + j) mod 3`` and frame rate
    ``(2c + j) mod 3``, so every class with three or more videos has every container and
    every rate, and the short videos (the last of each class, ``short_seconds`` long)
    vary in container and rate across classes.
    """
    unknown = [c for c in classes if c not in _DIRECTIONS]
    if unknown or not classes:
        raise ValueError(f"demo classes must be a non-empty subset of {DEMO_CLASSES}, got {list(classes)}")
    if videos_per_class < 1:
        raise ValueError(f"videos_per_class must be at least 1, got {videos_per_class}")
    low, high = duration_range
    if not (short_seconds > 0 and 0 < low <= high):
        raise ValueError(f"durations must be positive (duration_range={duration_range}, short={short_seconds})")
    plan = []
    for ci, name in enumerate(classes):
        for j in range(videos_per_class):
            k = ci * videos_per_class + j
            ext, _, codec, _ = FORMATS[(ci + j) % len(FORMATS)]
            fps = FRAME_RATES[(2 * ci + j) % len(FRAME_RATES)]
            width, height = SIZES[k % len(SIZES)]
            rng = np.random.default_rng([seed, k])
            seconds = short_seconds if j == videos_per_class - 1 else rng.uniform(low, high)
            plan.append(DemoVideo(
                relpath=f"{split}/{name}/{name}_{k:03d}.{ext}",
                label_name=name,
                container=ext,
                codec=codec,
                fps=fps,
                width=width,
                height=height,
                frames=max(2, round(seconds * fps)),
                seed=(seed, k),
            ))
    return plan


def render_frames(video: DemoVideo) -> np.ndarray:
    """The video's RGB frames, ``frames × H × W × 3`` uint8, a pure function of ``video``."""
    rng = np.random.default_rng([*video.seed, 1])
    h, w = video.height, video.width
    background = _texture(rng, h, w)
    shape_colour = 255.0 - background.mean(axis=(0, 1)) + rng.uniform(-30, 30, 3)
    shape_colour = np.clip(shape_colour, 0, 255).astype(np.float32)
    radius = rng.uniform(9, 16)
    square = bool(rng.integers(2))
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    speed = rng.uniform(35, 70)  # pixels per second, so motion does not depend on fps
    dx, dy = _DIRECTIONS[video.label_name]
    still = np.rint(background).astype(np.uint8)
    out = np.empty((video.frames, h, w, 3), np.uint8)
    reach = math.ceil(radius) + 1
    for i in range(video.frames):
        t = i / video.fps
        cx, cy = x0 + dx * speed * t, y0 + dy * speed * t
        # Only the patch around the shape changes; indices wrap, so the shape leaves
        # one edge and re-enters at the other.
        xs = np.arange(math.floor(cx) - reach, math.floor(cx) + reach + 1)
        ys = np.arange(math.floor(cy) - reach, math.floor(cy) + reach + 1)
        ox, oy = np.meshgrid(xs - cx, ys - cy)
        dist = np.maximum(np.abs(ox), np.abs(oy)) if square else np.hypot(ox, oy)
        alpha = np.clip(radius + 0.5 - dist, 0.0, 1.0)[..., None]
        patch = np.ix_(ys % h, xs % w)
        out[i] = still
        out[i][patch] = np.rint(background[patch] * (1 - alpha) + shape_colour * alpha)
    return out


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random background: two coloured gratings plus blurred blotches."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    image = np.broadcast_to(base, (h, w, 3)).copy()
    for _ in range(2):
        angle = rng.uniform(0, math.pi)
        freq = rng.uniform(0.03, 0.12) * 2 * math.pi
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
        image += wave[..., None] * rng.uniform(-35, 35, 3).astype(np.float32)
    coarse = rng.uniform(-30, 30, (h // 24 + 2, w // 24 + 2, 3)).astype(np.float32)
    rows = np.minimum(np.arange(h) // 24, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(w) // 24, coarse.shape[1] - 1)
    blotches = coarse[rows][:, cols]
    kernel = np.ones(9, np.float32) / 9
    for axis in (0, 1):
        blotches = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, blotches)
    return np.clip(image + blotches, 0, 255).astype(np.float32)


def _encode(video: DemoVideo, frames: np.ndarray, final: Path) -> None:
    ext, muxer, codec, options = next(f for f in FORMATS if f[0] == video.container)
    with atomic_path(final, suffix="." + ext) as tmp:
        with av.open(str(tmp), "w", format=muxer, options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream(codec, rate=video.fps, options=dict(options))
            if not isinstance(stream, av.VideoStream):
                raise ValueError(f"{codec} is not a video encoder")
            stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
            stream.codec_context.thread_count = 1  # multi-threaded encoders are not bit-exact
            stream.codec_context.gop_size = video.fps  # a keyframe per second, so seeking matters
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))


def generate_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    videos_per_class: int = FULL["videos_per_class"],
    classes: Sequence[str] = DEMO_CLASSES,
    split: str = "val",
    duration_range: tuple[float, float] = FULL["duration_range"],
    short_seconds: float = FULL["short_seconds"],
) -> list[Path]:
    """Write the demo dataset under ``out_dir`` and return the video paths, sorted.

    Defaults: 5 classes × 8 videos = 40 videos of 2.4–3.6 s (one of 1 s per class).
    ``generate_demo(out, **TINY)`` writes a 15-video fixture for fast tests. Existing
    files of the same plan are overwritten; other videos in the split folder are an
    error (they would silently join the dataset).
    """
    out = Path(out_dir)
    plan = plan_demo(
        seed=seed, videos_per_class=videos_per_class, classes=classes, split=split,
        duration_range=duration_range, short_seconds=short_seconds,
    )
    planned = {out / v.relpath for v in plan}
    split_dir = out / split
    if split_dir.exists():
        strangers = sorted(p for p in split_dir.rglob("*") if p.is_file() and p not in planned)
        if strangers:
            raise FileExistsError(
                f"{split_dir}: holds files this demo plan does not write ({strangers[0]}, ...); "
                "remove the folder or choose another output directory"
            )
    for video in plan:
        _encode(video, render_frames(video), out / video.relpath)
    write_json(out / "demo.json", {"seed": seed, "split": split, "videos": [asdict(v) for v in plan]})
    return sorted(planned)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m dimcollapse.data.demo OUT [--seed N] [--videos-per-class N] [--tiny]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="val")
    parser.add_argument("--videos-per-class", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="the quick 15-video test fixture")
    args = parser.parse_args(argv)
    kwargs = (TINY if args.tiny else FULL).copy()
    if args.videos_per_class is not None:
        kwargs["videos_per_class"] = args.videos_per_class
    paths = generate_demo(args.out_dir, seed=args.seed, split=args.split, **kwargs)
    print(f"wrote {len(paths)} demo videos under {args.out_dir}")


if __name__ == "__main__":
    main()
