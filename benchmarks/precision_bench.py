"""What reduced precision does to a spectrum: features and eigenvalues at bf16 (and TF32) against fp32.

Features of the same clips — the demo set (40 generated videos, ``--clips-per-video`` clips
each at seeded random positions, ``paper`` sampling at ``--side``/``--crop``) through a seeded
random supervised Slow R50 (2048-d) — at each precision:

* ``fp32``: strict float32 (what extraction's ``precision: fp32`` computes on every device);
* ``bf16``: autocast to bfloat16 (:func:`~dimcollapse.extraction.device.precision_context`),
  measured on this CPU (AVX-512 BF16 where the CPU has it);
* ``tf32 (emulated)``: every convolution and linear layer's inputs and weights rounded to
  TF32's 10-bit mantissa, float32 elsewhere — what TF32 tensor cores compute, emulated
  on the CPU (a CPU has no TF32 units; compare the relative error with a GPU's: 5e-4 for a
  Slow R50 on an H200, REFERENCE §17).

For each: the features' relative error against fp32, and the spectrum of the normalised
features (:func:`dimcollapse.analysis.spectrum.analyze`): the first eigenvalue index where
λ departs from fp32's by more than 1 % and 10 %, λ there relative to λ₁, and the scalar
metrics (RankMe, α-ReQ, AUC). The tail is where reduced precision shows: its noise floor
is about (relative error)² of the total variance.

    python benchmarks/precision_bench.py                   # 40 videos x 5 clips at 112 px, minutes on 2 cores
    python benchmarks/precision_bench.py --quick           # 10 videos x 2 clips at 32 px
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import extract_bench  # noqa: E402

from dimcollapse.analysis.spectrum import analyze  # noqa: E402
from dimcollapse.data.clips import ClipDataset, make_loader  # noqa: E402
from dimcollapse.data.protocols import resolve_protocol  # noqa: E402
from dimcollapse.extraction.device import forward_views, prepare_model  # noqa: E402
from dimcollapse.models import build_model  # noqa: E402

CPU = torch.device("cpu")


def to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32 (10 explicit mantissa bits, round to nearest, ties away)."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view_as(x)


@contextlib.contextmanager
def tf32_emulated(model: nn.Module) -> Iterator[None]:
    """Convolutions and linear layers see TF32-rounded inputs and weights (restored after)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))]
    saved = [m.weight.data for m in layers]
    hooks = [m.register_forward_pre_hook(lambda m, args: (to_tf32(args[0]), *args[1:])) for m in layers]
    for m in layers:
        m.weight.data = to_tf32(m.weight.data)
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
        for m, w in zip(layers, saved):
            m.weight.data = w


def features(model: nn.Module, dataset: ClipDataset, batch: int, precision: str) -> np.ndarray:
    """The representation of every clip (views averaged) at ``precision``."""
    emulate = precision == "tf32 (emulated)"
    rows = []
    with tf32_emulated(model) if emulate else contextlib.nullcontext():
        for b in make_loader(dataset, batch_size=batch, workers=1):
            out = forward_views(model, b["video"], ("representation",), CPU, "fp32" if emulate else precision)
            rows.append(out["representation"].mean(dim=1).numpy())
    return np.concatenate(rows)


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Relative error of ``other``'s features and spectrum against ``reference``'s."""
    a, b = analyze(reference), analyze(other)
    k = min(a.n_samples - 1, a.dim)
    la, lb = a.cov_eigenvalues[:k], b.cov_eigenvalues[:k]
    dev = np.abs(lb / np.where(la > 0, la, np.nan) - 1)
    first = {t: int(np.argmax(dev > t)) if np.any(dev > t) else k for t in (0.01, 0.1)}
    return {
        "rel_error": float(np.linalg.norm(other - reference) / np.linalg.norm(reference)),
        "index_1pct": first[0.01], "lambda_1pct": float(la[min(first[0.01], k - 1)] / la[0]),
        "index_10pct": first[0.1], "lambda_10pct": float(la[min(first[0.1], k - 1)] / la[0]),
        "rankme": b.rankme - a.rankme, "alpha_req": b.alpha_req - a.alpha_req, "auc": b.auc - a.auc,
        "k": k, "rankme_ref": a.rankme, "alpha_ref": a.alpha_req, "auc_ref": a.auc,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips-per-video", type=int, default=None, help="default 5 (--quick 2)")
    ap.add_argument("--crop", type=int, default=None, help="default 112 (--quick 32)")
    ap.add_argument("--side", type=int, default=None, help="default 128 (--quick 37)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    args.clips_per_video = args.clips_per_video or (2 if args.quick else 5)
    args.crop = args.crop or (32 if args.quick else 112)
    args.side = args.side or (37 if args.quick else 128)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from dimcollapse.data.demo import FULL, generate_demo

    with tempfile.TemporaryDirectory(prefix="precision-bench-") as tmp:
        videos = Path(tmp) / "demo"
        generate_demo(videos, videos_per_class=2 if args.quick else 8, duration_range=FULL["duration_range"],
                      short_seconds=FULL["short_seconds"])
        manifest, _ = extract_bench.manifest_rows(extract_bench.find_videos(videos), videos,
                                                  clips_per_video=args.clips_per_video)
        protocol = resolve_protocol("paper", side_size=args.side, crop_size=args.crop, clip_position="random")
        dataset = ClipDataset(manifest, protocol)
        model = prepare_model(build_model("supervised", seed=0, crop_size=args.crop), CPU)
        print(f"{len(manifest)} clips (demo set, {args.clips_per_video} random clips per video, paper sampling at "
              f"{args.side}/{args.crop}); supervised Slow R50, seeded random weights, 2048-d; {args.threads} threads; "
              f"load {extract_bench._load()}")
        out = {}
        for precision in ("fp32", "bf16", "tf32 (emulated)"):
            t0 = time.perf_counter()
            out[precision] = features(model, dataset, args.batch, precision)
            print(f"  {precision}: {time.perf_counter() - t0:.0f} s", flush=True)
    ref = out.pop("fp32")
    rows = {p: compare(ref, f) for p, f in out.items()}
    first = next(iter(rows.values()))
    print(f"fp32 spectrum: {first['k']} eigenvalues above the N-1 floor; RankMe {first['rankme_ref']:.1f}, "
          f"alpha-ReQ {first['alpha_ref']:.3f}, AUC {first['auc_ref']:.4f}")
    print("| precision | feature rel. error | λ off by > 1 % from index (λ/λ₁ there) | > 10 % from index "
          "(λ/λ₁) | ΔRankMe | Δα-ReQ | ΔAUC |")
    print("|---|---|---|---|---|---|---|")
    for precision, r in rows.items():
        print(f"| {precision} | {r['rel_error']:.1e} | {r['index_1pct']} ({r['lambda_1pct']:.1e}) | "
              f"{r['index_10pct']} ({r['lambda_10pct']:.1e}) | {r['rankme']:+.2f} | {r['alpha_req']:+.4f} | "
              f"{r['auc']:+.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
