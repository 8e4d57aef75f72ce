"""Why features differ across machines: each machine-dependent step of the demo, measured on one machine.

The demo's instances (``supervised`` and ``cnn`` on ``paper``, ``dpc``, ``moco_views`` on
``slowfast_test``, the demo config's sizes) run on the 40 demo videos, decoded and cached as
the workflow does, in a subprocess per variant:

* ``ours``: this machine, the machine-independent uint8 scaler (:mod:`dimcollapse.data.uint8_scale`);
* ``torch scaler``: the scaler before it, torch's float32 bilinear rounded to uint8;
* ``… , ATEN default``: the same with ``ATEN_CPU_CAPABILITY=default`` (torch's kernels
  without AVX2/AVX-512, as on a machine that has none — or another torch build);
* ``FFmpeg C``: FFmpeg's SIMD disabled (``av_force_cpu_flags(0)``), as on a machine whose
  FFmpeg takes its C paths (no SSSE3, or another architecture's SIMD).

Each pair of variants is compared: how many uint8 pixels of the stored frames differ (clip
cache / DPC frames) and the relative (Frobenius) difference of each instance's feature
matrix. ``ours`` against ``ours, ATEN default`` separates the model's own arithmetic from
the inputs (their frames are identical by construction).

    python benchmarks/cross_machine.py            # 5 variants, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: name: (environment, worker flags)
VARIANTS = {
    "ours": ({}, []),
    "ours, ATEN default": ({"ATEN_CPU_CAPABILITY": "default"}, []),
    "torch scaler": ({}, ["--torch-scaler"]),
    "torch scaler, ATEN default": ({"ATEN_CPU_CAPABILITY": "default"}, ["--torch-scaler"]),
    "FFmpeg C": ({}, ["--ffmpeg-c"]),
}
PAIRS = (
    ("torch scaler", "torch scaler, ATEN default", "the previous scaler across instruction sets"),
    ("ours", "ours, ATEN default", "ours across instruction sets (the model's arithmetic only)"),
    ("ours", "torch scaler", "what the machine-independent scaler changed (this machine)"),
    ("ours", "FFmpeg C", "FFmpeg's C yuv->rgb conversion against its SIMD one"),
)
INSTANCES = ("supervised", "cnn", "dpc", "moco_views")


def worker(out: Path, videos: Path, torch_scaler: bool, ffmpeg_c: bool) -> None:
    """Stored frames and features of every demo video for every instance, into ``out`` (npz)."""
    if ffmpeg_c:
        import av

        libs = glob.glob(str(Path(av.__file__).parent.parent / "av.libs" / "libavutil-*.so*"))
        ctypes.CDLL(libs[0]).av_force_cpu_flags(ctypes.c_int(0))
    import torch

    from dimcollapse.data import pyav_source, video
    from dimcollapse.data.clip_cache import cache_frames
    from dimcollapse.data.manifest import Row
    from dimcollapse.data.probe import probe_video
    from dimcollapse.data.protocols import resolve_protocol
    from dimcollapse.data.views import frames_to_views
    from dimcollapse.models import build_model

    if torch_scaler:
        def torch_scale(frames: np.ndarray, height: int, width: int) -> np.ndarray:
            torch.set_num_threads(1)
            x = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))).float()
            y = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
            return np.ascontiguousarray(y.round_().clamp_(0, 255).to(torch.uint8).numpy().transpose(0, 2, 3, 1))

        pyav_source.scale_uint8 = torch_scale  # the name scale_frames looks up
    torch.set_num_threads(1)
    paper = resolve_protocol("paper", side_size=128, crop_size=112)
    models = {
        "supervised": (build_model("supervised", seed=0, crop_size=112), paper),
        "cnn": (build_model("custom", seed=7, builder="dimcollapse.models.demo_nets:demo_video_net",
                            builder_options={"width": 64}, crop_size=112), paper),
        "dpc": (build_model("DPC", seed=5, arch="resnet18", sample_size=128), resolve_protocol(
            "dpc", side_size=146, crop_size=128)),
        "moco_views": (build_model("MoCo", seed=6, crop_size=112), resolve_protocol(
            "slowfast_test", side_size=128, crop_size=112, temporal_views=2, spatial_views=1)),
    }
    arrays: dict[str, np.ndarray] = {}
    feats: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for path in sorted(p for p in videos.rglob("*") if p.suffix in (".mp4", ".avi", ".webm")):
        info = probe_video(path)
        row = Row(path.stem, str(path), info.duration, info.fps, info.frames)
        for name, (model, protocol) in models.items():
            frames = cache_frames(video.decode_row(row, protocol)[0], protocol)
            if name in ("supervised", "dpc", "moco_views"):  # one per sampling
                arrays[f"frames/{protocol.family}-{name}/{path.stem}"] = frames
            with torch.no_grad():
                feats[name].append(model(frames_to_views(frames, protocol))["representation"].mean(0).numpy())
    np.savez(out, **arrays, **{f"features/{k}": np.stack(v) for k, v in feats.items()})


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[dict[str, tuple[int, int]], dict[str, float]]:
    """Pixels that differ per sampling (differing, total) and each instance's feature difference."""
    pixels: dict[str, list[int]] = {}
    for key in a:
        if key.startswith("frames/"):
            sampling = key.split("/")[1]
            diff, total = pixels.setdefault(sampling, [0, 0]), a[key].size
            diff[0] += int((a[key] != b[key]).sum())
            diff[1] += total
    features = {k.split("/")[1]: float(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(a[k])) for k in a
                if k.startswith("features/")}
    return {k: (v[0], v[1]) for k, v in pixels.items()}, features


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--videos", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--torch-scaler", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ffmpeg-c", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.videos, args.torch_scaler, args.ffmpeg_c)
        return 0
    import torch

    from dimcollapse.data.demo import generate_demo

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="cross-machine-") as tmp:
        videos = Path(tmp) / "demo"
        generate_demo(videos, videos_per_class=8)
        results = {}
        for name, (env, flags) in VARIANTS.items():
            out = Path(tmp) / f"{len(results)}.npz"
            subprocess.run([sys.executable, __file__, "--worker", str(out), "--videos", str(videos), *flags],
                           env={**os.environ, **env}, check=True)
            with np.load(out) as data:
                results[name] = {k: data[k] for k in data.files}
            print(f"  {name}: done", flush=True)
    print(f"\n| compared | {' | '.join(f'{s} pixels differing' for s in ('paper', 'dpc', 'slowfast_test'))} | "
          f"{' | '.join(INSTANCES)} |")
    print("|---" * (4 + len(INSTANCES)) + "|")
    for first, second, what in PAIRS:
        pixels, features = compare(results[first], results[second])
        cells = [f"{pixels[s][0]:,} of {pixels[s][1]:,}" for s in ("slow-supervised", "dpc-dpc", "slow-moco_views")]
        print(f"| {what} ({first} / {second}) | {' | '.join(cells)} | "
              f"{' | '.join(f'{features[i]:.1e}' for i in INSTANCES)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
