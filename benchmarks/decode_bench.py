"""Clip decoding speed: dimcollapse against the paper's PyTorchVideo path, same clips, same run.

For every video in ``--videos`` it draws ``--clips-per-video`` clip starts (the ``paper``
protocol with ``clip_position=random``, seed 0, so starts are spread over each video), then

* times PyTorchVideo's ``EncodedVideo(decoder="pyav").get_clip`` + the paper's transforms
  (``pytorchvideo_clip`` of ``tests/pytorchvideo_reference.py``) and :func:`dimcollapse.data.video.load_clip`
  clip by clip (alternating which goes first), checking the two clips agree to 1e-5;
* times the :class:`~dimcollapse.data.clips.ClipDataset` loader with ``--workers`` workers
  decoding on the fly (worker start-up included) and checks its clips are bit-identical
  to ``load_clip``'s;
* builds the uint8 clip cache (frames stored at the scaled size) and times the loader
  reading it, and reports the cache's disk cost per clip and its largest difference to
  ``load_clip`` (uint8 rounding of the scaled frames: at most 0.5/255/std).

The last line is the ratio of ``load_clip``'s rate to PyTorchVideo's (both one process).

    python benchmarks/decode_bench.py [--videos DIR] [--clips-per-video 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import av
import pandas as pd
import torch

from dimcollapse.data.clip_cache import ClipCache, build_clip_cache
from dimcollapse.data.clips import ClipDataset, make_loader
from dimcollapse.failures import VideoError
from dimcollapse.data.protocols import clip_starts, resolve_protocol
from dimcollapse.data.video import load_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pytorchvideo_reference import pytorchvideo_clip  # noqa: E402  (the paper's own pipeline)

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v"}


def _stream_info(path: Path) -> tuple[float, float, int, int] | None:
    """(duration s, fps, width, height) from the container header, or None when it is not a usable video."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            s = c.streams.video[0]
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif c.duration is not None:
                duration = c.duration / 1_000_000
            else:
                return None
            rate = s.average_rate or s.guessed_rate
            return duration, float(rate) if rate else float("nan"), s.width, s.height
    except (av.FFmpegError, OSError):
        return None


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=Path("/work/shared/testdata/videos"))
    ap.add_argument("--clips-per-video", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # one core per decoding process on both paths
    protocol = resolve_protocol("paper", clip_position="random", seed=0)
    rows, skipped = [], []
    for path in sorted(p for p in args.videos.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
        info = _stream_info(path)
        if info is None:
            skipped.append(path.name)
            continue
        for j in range(args.clips_per_video):
            rows.append({"id": f"{path.name}#{j}", "path": str(path), "duration": info[0], "fps": info[1],
                         "width": info[2], "height": info[3]})
    if not rows:
        print(f"no usable videos under {args.videos}", file=sys.stderr)
        return 1
    manifest = pd.DataFrame(rows)
    starts = [clip_starts(protocol, r["duration"], fps=r["fps"], video_id=r["id"])[0] for r in rows]
    print(f"{len(manifest)} clips from {manifest.path.nunique()} videos in {args.videos}"
          + (f" (skipped, not openable: {', '.join(skipped)})" if skipped else ""))

    # warm-up: imports and first-call initialisation are not decode speed
    load_clip(rows[0]["path"], starts[0], protocol)
    pytorchvideo_clip(rows[0]["path"], starts[0], protocol)

    t_ref = t_ours = 0.0
    per_video: dict[str, list[float]] = {}
    worst = 0.0
    digests: dict[int, str] = {}
    clips: dict[int, torch.Tensor] = {}
    errors = 0
    for i, (row, start) in enumerate(zip(rows, starts)):
        order = ("ref", "ours") if i % 2 == 0 else ("ours", "ref")
        out: dict[str, torch.Tensor | None] = {}
        for which in order:
            t0 = time.perf_counter()
            try:
                fn = pytorchvideo_clip if which == "ref" else load_clip
                out[which] = fn(row["path"], start, protocol)
            except VideoError:
                out[which] = None
            dt = time.perf_counter() - t0
            times = per_video.setdefault(Path(row["path"]).name, [0.0, 0.0, 0])
            if which == "ref":
                t_ref += dt
                times[0] += dt
            else:
                t_ours += dt
                times[1] += dt
        per_video[Path(row["path"]).name][2] += 1
        ref, ours = out["ref"], out["ours"]
        if ref is None or ours is None or ref.shape != ours.shape:
            errors += 1
            print(f"  MISMATCH {row['id']} at {start:.3f} s: reference {None if ref is None else tuple(ref.shape)}, "
                  f"ours {None if ours is None else tuple(ours.shape)}")
            continue
        worst = max(worst, (ref - ours).abs().max().item())
        digests[i] = _digest(ours)
        clips[i] = ours
    n = len(rows)
    for name, (ref_s, ours_s, k) in per_video.items():
        print(f"  {name:24s} PyTorchVideo {1000 * ref_s / k:7.1f} ms/clip, load_clip {1000 * ours_s / k:7.1f} ms/clip"
              f"  ({ref_s / ours_s:.1f}x)")
    print(f"PyTorchVideo EncodedVideo + transforms : {n / t_ref:8.2f} clips/s  ({t_ref:.2f} s)")
    print(f"dimcollapse load_clip                  : {n / t_ours:8.2f} clips/s  ({t_ours:.2f} s)")
    print(f"agreement: {n - errors}/{n} clips, max |difference| {worst:.2e} (tolerance 1e-5)")

    dataset = ClipDataset(manifest, protocol)
    t0 = time.perf_counter()
    same = seen = 0
    for batch in make_loader(dataset, batch_size=args.batch_size, workers=args.workers, persistent_workers=False):
        for idx, clip in zip(batch["index"].tolist(), batch["video"]):
            seen += 1
            same += digests.get(idx) == _digest(clip[0])
    t_loader = time.perf_counter() - t0
    print(f"ClipDataset loader, {args.workers} workers, decoding  : {n / t_loader:8.2f} clips/s  "
          f"({t_loader:.2f} s incl. worker start; {same}/{seen} clips bit-identical to load_clip)")

    with tempfile.TemporaryDirectory(prefix="decode-bench-") as tmp:
        cache_dir = Path(tmp) / protocol.sampling_key
        t0 = time.perf_counter()
        build_clip_cache(manifest, protocol, cache_dir, workers=args.workers)
        t_build = time.perf_counter() - t0
        cache = ClipCache(cache_dir)
        ok = [e for e in cache.entries if e.ok]
        per_clip = sum(e.nbytes for e in ok) / max(len(ok), 1)
        t0 = time.perf_counter()
        gap = 0.0
        loader = make_loader(ClipDataset(manifest, protocol, cache=cache), batch_size=args.batch_size,
                             workers=args.workers, persistent_workers=False)
        for batch in loader:
            for idx, clip in zip(batch["index"].tolist(), batch["video"]):
                if idx in clips:
                    gap = max(gap, (clips[idx] - clip[0]).abs().max().item())
        t_cached = time.perf_counter() - t0
    print(f"clip cache build, {args.workers} workers             : {n / t_build:8.2f} clips/s  "
          f"({per_clip / 1e6:.2f} MB per clip on disk, uint8 {ok[0].shape if ok else '-'} e.g.)")
    print(f"ClipDataset loader, {args.workers} workers, from cache: {n / t_cached:8.2f} clips/s  "
          f"(max |difference| to load_clip {gap:.4f}; bound 0.5/255/min(std) = {0.5 / 255 / min(protocol.std):.4f})")
    print(f"ratio loader ({args.workers} workers, decoding) / PyTorchVideo: {t_ref / t_loader:.2f}x")
    print(f"ratio load_clip / PyTorchVideo (one process each): {t_ref / t_ours:.2f}x")
    return 0 if errors == 0 and worst <= 1e-5 else 2


if __name__ == "__main__":
    sys.exit(main())
