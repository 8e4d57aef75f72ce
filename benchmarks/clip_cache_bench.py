"""Clip cache cost: bytes per clip at several source resolutions, and the feature error it adds.

1. Generates H.264 videos at 320×240, 1280×720 and 1920×1080 (4 s, 30 fps), builds the
   clip cache of each protocol over them and prints the stored bytes per video against
   the bound ``1.25 × frames·h·w·3`` (``h×w`` the scaled frame size), plus the totals for
   Kinetics-400 val (19,881 videos) at 16:9 and 4:3.
2. Runs a seeded random-weight PyTorchVideo ``slow_r50`` (weights as in
   ``tests/model_fixtures.py``: activations O(1)) on the ``paper`` clips of those videos
   and of the sample videos, once from :func:`load_clip` and once through the cache, and
   prints the relative feature error ``|f_cache − f_clip| / |f_clip|`` (max over clips)
   and, because random-weight features share a large common component (REFERENCE §8),
   the same error relative to the spread between videos ``|f_clip − mean_f|``.

    python benchmarks/clip_cache_bench.py [--videos DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dimcollapse.data.clip_cache import ClipCache, build_clip_cache, stored_shape  # noqa: E402
from dimcollapse.data.clips import ClipDataset  # noqa: E402
from dimcollapse.data.manifest import as_rows  # noqa: E402
from dimcollapse.data.probe import probe_video  # noqa: E402
from dimcollapse.data.protocols import resolve_protocol  # noqa: E402
from dimcollapse.data.views import scaled_size  # noqa: E402

KINETICS_VAL = 19_881
SIZES = [(240, 320), (720, 1280), (1080, 1920)]


def make_video(path: Path, height: int, width: int, seconds: int = 4, fps: int = 30) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast"}
        yy, xx = np.mgrid[0:height, 0:width]
        for k in range(seconds * fps):
            a = np.stack([(xx + 3 * k) % 256, (yy + 2 * k) % 256, ((xx + yy) // 4 + k) % 256], -1).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def manifest_rows(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        info = probe_video(p)
        rows.append({"id": p.stem, "path": str(p), "duration": info.duration, "fps": info.fps,
                     "frames": info.frames, "width": info.width, "height": info.height})
    return pd.DataFrame(rows)


def random_slow_r50() -> torch.nn.Module:
    from model_fixtures import randomize_
    from pytorchvideo.models.hub import slow_r50

    model = slow_r50(pretrained=False)
    randomize_(model, 3)
    model.blocks[-1].proj = torch.nn.Identity()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=Path("/work/shared/testdata/videos"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="clip-cache-bench-") as tmp:
        tmpdir = Path(tmp)
        generated = [make_video(tmpdir / f"{w}x{h}.mp4", h, w) for h, w in SIZES]
        rows = manifest_rows(generated)
        print("1. stored bytes per video (clip cache, uint8 frames at the protocol's scaled size)")
        for name, overrides in (("paper", {}), ("slowfast_test", {}), ("dpc", {"side_size": 256})):
            p = resolve_protocol(name, **overrides)
            build_clip_cache(rows, p, tmpdir / p.sampling_key, workers=0)
            cache = ClipCache(tmpdir / p.sampling_key)
            for e, r in zip(cache.entries, as_rows(rows)):
                k, h, w, _ = e.shape
                sh, sw = scaled_size(r.height, r.width, p)
                bound = 1.25 * k * sh * sw * 3
                print(f"  {name:14s} {r.width}x{r.height} source: {e.nbytes / 1e6:6.2f} MB "
                      f"({k} frames of {w}x{h}; bound 1.25·{k}·{sw}·{sh}·3 = {bound / 1e6:.2f} MB; native "
                      f"{k * r.width * r.height * 3 / 1e6:.1f} MB)")
            for label, (h, w) in (("16:9", (720, 1280)), ("4:3", (240, 320))):
                shape = stored_shape(as_rows(rows)[0].__class__("x", "x", 1.0, 1.0, 1, w, h), p)
                per = int(np.prod(shape))
                print(f"  {name:14s} Kinetics-400 val, all {label}: {per / 1e6:.2f} MB/video × {KINETICS_VAL} = "
                      f"{per * KINETICS_VAL / 1e9:.1f} GB")

        samples = sorted(args.videos.glob("*.avi")) if args.videos.is_dir() else []
        usable = []
        for s in samples:
            try:
                probe_video(s)
                usable.append(s)
            except Exception:  # noqa: BLE001 - damaged sample files are not part of the measure
                pass
        rows = manifest_rows(generated + usable)
        paper = resolve_protocol("paper")
        build_clip_cache(rows, paper, tmpdir / "paper-err", workers=0)
        fly = ClipDataset(rows, paper)
        cached = ClipDataset(rows, paper, cache=tmpdir / "paper-err")
        model = random_slow_r50()
        f_fly, f_cache, gaps = [], [], []
        with torch.no_grad():
            for i in range(len(rows)):
                a, b = fly[i]["video"], cached[i]["video"]
                gaps.append((a - b).abs().max().item())
                f_fly.append(model(a))
                f_cache.append(model(b))
        F, C = torch.cat(f_fly), torch.cat(f_cache)
        rel = ((F - C).norm(dim=1) / F.norm(dim=1)).max().item()
        spread = ((F - C).norm(dim=1) / (F - F.mean(0)).norm(dim=1)).max().item()
        print(f"2. paper protocol through the cache vs load_clip, {len(rows)} videos, random-weight slow_r50:")
        print(f"  max |input difference| {max(gaps):.4f} (bound 0.5/255/min(std) = {0.5 / 255 / min(paper.std):.4f})")
        print(f"  relative feature error, max over videos: {rel:.2e}")
        print(f"  relative to the spread between videos:   {spread:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
