"""GPU check for a lent accelerator: every model's throughput at fp32 and bf16, bf16 error, end to end.

Part 1, synthetic clips (seeded random weights, seeded random inputs already on the
device, so this is the model alone): for each model of the study — the Slow R50s
(supervised, SimCLR, MoCo, SwAV, BYOL at 8×224², BYOL 16×4) and DPC (R34 at 224, R18 at
128), then VideoMAE-B (16×224²) and V-JEPA 2 ViT-L (64×256²) of the ``transformers`` family
(random weights of their published configurations, :mod:`transformers_models`) — prepared as extraction prepares them (:func:`~dimcollapse.extraction.extract.prepare_model`:
cuDNN autotuning, channels-last 3D) and run through
:func:`~dimcollapse.extraction.extract.forward_views`:

* clips/s at fp32 and at bf16 autocast: ``--warmup`` calls, then ``--iters`` timed calls
  (synchronised each), cut short after ``--time-box`` seconds;
* the relative error of bf16 features against fp32
  (:func:`~dimcollapse.extraction.extract.relative_error`, the figure extraction's precision check
  compares with ``extraction.max_rel_error``), and of the default fp32 (TF32 convolutions
  on Ampere and later) against strict fp32;
* peak GPU memory (``torch.cuda.max_memory_allocated``) per measurement.

Part 2, end to end on the demo set (generated here): ``extract_bench.py`` at the paper's
sizes (short side 256, crop 224, supervised Slow R50, ``--clips-per-video`` random clips
per video), our pipeline against the naive one-process script, on the same device.

A short table is printed last. Without a CUDA device it says so and exits 0.
``--budget`` seconds bound part 1 (models not reached are listed as skipped); the shell
wrapper bounds the whole run.

    bash benchmarks/gpu_check.sh                           # on the GPU machine, < 7 min
    python benchmarks/gpu_check.py --device cpu --quick    # the logic, on CPU at tiny sizes
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import extract_bench  # noqa: E402
import transformers_models  # noqa: E402

from dimcollapse.extraction.extract import forward_views, prepare_model, relative_error  # noqa: E402
from dimcollapse.models import METHODS, build_model  # noqa: E402

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Spec:
    """One model of the study: how to build it and the shape of one clip it takes."""

    label: str
    method: str
    options: dict[str, Any]
    clip: tuple[int, ...]


def study_models(slow_crop: int = 224, dpc34_size: int = 224, dpc18_size: int = 128) -> list[Spec]:
    """The study's models at their published input sizes (smaller sizes for a CPU check)."""
    c = slow_crop

    def slow(label: str, method: str, frames: int = 8) -> Spec:
        return Spec(label, method, {"frames": frames, "crop_size": c}, (3, frames, c, c))

    def dpc(label: str, arch: str, size: int) -> Spec:
        return Spec(label, "DPC", {"arch": arch, "sample_size": size}, (5, 3, 5, size, size))

    return [
        slow(f"supervised 8x{c}", "supervised"),
        slow(f"SimCLR 8x{c}", "SimCLR"),
        slow(f"MoCo 8x{c}", "MoCo"),
        slow(f"SwAV 8x{c}", "SwAV"),
        slow(f"BYOL 8x{c}", "BYOL"),
        slow(f"BYOL 16x4 {c}", "BYOL", frames=16),
        dpc(f"DPC R34-{dpc34_size}", "resnet34", dpc34_size),
        dpc(f"DPC R18-{dpc18_size}", "resnet18", dpc18_size),
    ]


#: The transformers models timed here (random weights of their published configurations).
TRANSFORMERS_ROWS = (("VideoMAE-B", "MCG-NJU/videomae-base"), ("V-JEPA 2 ViT-L", "facebook/vjepa2-vitl-fpc64-256"))
#: What ``--quick`` makes of their configurations: the tiny test sizes (REFERENCE §13).
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "image_size": 32, "crop_size": 32, "num_frames": 4, "frames_per_clip": 4, "pred_hidden_size": 32,
        "pred_num_hidden_layers": 1, "pred_num_attention_heads": 4, "mlp_ratio": 2.0, "decoder_hidden_size": 32,
        "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 4, "decoder_intermediate_size": 64}


def transformers_specs(root: Path, quick: bool = False) -> list[Spec]:
    """VideoMAE-B and V-JEPA 2 ViT-L as checkpoint folders under ``root`` with random weights of
    their published configurations (``quick``: the same classes at tiny sizes), at their default clip."""
    published = {m.hub_id: m for m in transformers_models.PUBLISHED}
    specs = []
    for label, hub_id in TRANSFORMERS_ROWS:
        model = published[hub_id]
        if quick:
            config = {**model.config, **{k: v for k, v in TINY.items() if k in model.config or k.startswith("pred")}}
            pre = {**model.preprocessor, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}
            model = transformers_models.Published(label, hub_id, config, pre, model.preprocessor_file)
        folder = transformers_models.random_checkpoint(model, root / hub_id.replace("/", "--"))
        clip = transformers_models.measure(model, folder).clip
        frames, crop = clip["frames"], clip["crop_size"]
        specs.append(Spec(f"{label} {frames}x{crop}", "transformers", {"checkpoint": str(folder)},
                          (3, frames, crop, crop)))
    return specs


@dataclass
class Measure:
    """Throughput of one model at one precision."""

    clips_per_s: float
    iters: int
    seconds: float
    peak_bytes: int


@dataclass
class Row:
    """Everything measured for one model (``error`` set when a step failed)."""

    spec: Spec
    batch: int
    results: dict[str, Measure] = field(default_factory=dict)
    bf16_error: float | None = None
    tf32_error: float | None = None
    error: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model: torch.nn.Module, spaces: tuple[str, ...], x: torch.Tensor, device: torch.device,
            precision: str, warmup: int, iters: int, time_box: float) -> Measure:
    """``warmup`` untimed calls, then up to ``iters`` timed ones, stopping after ``time_box`` s."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        forward_views(model, x, spaces, device, precision)
    _sync(device)
    done = 0
    t0 = time.perf_counter()
    while done < iters:
        forward_views(model, x, spaces, device, precision)
        _sync(device)
        done += 1
        if time.perf_counter() - t0 > time_box:
            break
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return Measure(len(x) * done / seconds, done, seconds, peak)


def tf32_error(model: torch.nn.Module, spaces: tuple[str, ...], x: torch.Tensor,
               device: torch.device, reference: dict[str, torch.Tensor]) -> float:
    """Relative error of TF32 (PyTorch's default for convolutions) against the strict fp32
    ``reference`` that ``prepare_model`` sets up for ``precision: fp32``."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = forward_views(model, x, spaces, device, "fp32")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return relative_error(reference, tf32)


def check_model(spec: Spec, batch: int, device: torch.device, args: argparse.Namespace) -> Row:
    row = Row(spec, batch)
    try:
        model = prepare_model(build_model(spec.method, seed=0, **spec.options), device)
        spaces = tuple(METHODS[spec.method].spaces)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch, 1, *spec.clip), generator=gen).to(device)
        for precision in PRECISIONS:
            row.results[precision] = measure(model, spaces, x, device, precision, args.warmup, args.iters,
                                             args.time_box)
        reference = forward_views(model, x, spaces, device, "fp32")
        row.bf16_error = relative_error(reference, forward_views(model, x, spaces, device, "bf16"))
        row.tf32_error = tf32_error(model, spaces, x, device, reference)
        del model, x, reference
    except Exception as err:  # noqa: BLE001 - one failing model (e.g. out of memory) must not end the check
        row.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[Row], skipped: Sequence[Spec], cuda: bool) -> list[str]:
    """The per-model lines of the summary."""
    lines = [f"  {'model':18s} {'batch':>5} {'fp32 clips/s':>12} {'bf16 clips/s':>12} {'bf16/fp32':>9} "
             f"{'rel.err bf16':>12} {'rel.err tf32':>12} {'peak GiB fp32/bf16':>18}"]
    for r in rows:
        if r.error:
            lines.append(f"  {r.spec.label:18s} {r.batch:>5} FAILED: {r.error}")
            continue
        f32, b16 = r.results["fp32"], r.results["bf16"]
        peak = f"{f32.peak_bytes / 2**30:.2f}/{b16.peak_bytes / 2**30:.2f}" if cuda else "-"
        lines.append(f"  {r.spec.label:18s} {r.batch:>5} {f32.clips_per_s:12.1f} {b16.clips_per_s:12.1f} "
                     f"{b16.clips_per_s / f32.clips_per_s:9.2f} {_fmt(r.bf16_error, '12.2e')} "
                     f"{_fmt(r.tf32_error, '12.2e')} {peak:>18}")
    for s in skipped:
        lines.append(f"  {s.label:18s} skipped: the --budget for part 1 was spent")
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes (crop 32, batch 2, 2 iterations, 5 demo videos): checks the logic, e.g. on CPU")
    ap.add_argument("--batch", type=int, default=None, help="clips per forward call (default 16; --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3; --quick 1)")
    ap.add_argument("--iters", type=int, default=None, help="timed calls (default 20; --quick 2)")
    ap.add_argument("--time-box", type=float, default=8.0, help="stop timing a measurement after this many s")
    ap.add_argument("--budget", type=float, default=170.0, help="seconds for part 1; later models are skipped")
    ap.add_argument("--workers", type=int, default=None,
                    help="loader workers of the end-to-end run (default min(12, cores - 2); --quick 1)")
    ap.add_argument("--clips-per-video", type=int, default=3, help="end-to-end clips per demo video")
    ap.add_argument("--skip-e2e", action="store_true", help="part 1 only")
    ap.add_argument("--skip-transformers", action="store_true",
                    help="leave out the VideoMAE-B and V-JEPA 2 ViT-L rows (random weights of the published configs)")
    args = ap.parse_args(argv)
    args.batch = args.batch or (2 if args.quick else 16)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.iters = args.iters or (2 if args.quick else 20)
    if args.workers is None:
        args.workers = 1 if args.quick else max(1, min(12, (os.cpu_count() or 1) - 2))
    return args


def e2e_argv(args: argparse.Namespace) -> list[str]:
    """``extract_bench.py`` arguments of part 2."""
    if args.quick:
        sizes = ["--videos-per-class", "1", "--crop", "32", "--side", "37", "--batch-size", "2",
                 "--clips-per-video", "1"]
    else:
        sizes = ["--videos-per-class", "8", "--crop", "224", "--side", "256", "--batch-size", str(args.batch),
                 "--clips-per-video", str(args.clips_per_video)]
    return [*sizes, "--device", args.device, "--threads", "1", "--workers", str(args.workers), "--repeat", "1"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available here, so the GPU check was not run "
              "(use --device cpu --quick to exercise its logic on CPU).")
        return 0
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    t_start = time.perf_counter()
    torch.backends.cudnn.benchmark = True  # as prepare_model sets it for CUDA
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(f"gpu_check on {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version() if cuda else '-'}; TF32 convolutions "
          f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmul "
          f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}; torch threads {torch.get_num_threads()}")

    specs = study_models(32, 32, 32) if args.quick else study_models()
    checkpoints = tempfile.TemporaryDirectory(prefix="gpu_check_transformers_")
    if not args.skip_transformers:
        try:
            specs += transformers_specs(Path(checkpoints.name), quick=args.quick)
        except Exception as err:  # noqa: BLE001 - e.g. no disk for the checkpoints: the other rows still run
            print(f"[1] transformers rows left out: writing their checkpoints failed ({type(err).__name__}: {err})")
    rows: list[Row] = []
    skipped: list[Spec] = []
    for spec in specs:
        if time.perf_counter() - t_start > args.budget:
            skipped.append(spec)
            continue
        t0 = time.perf_counter()
        row = check_model(spec, args.batch, device, args)
        rows.append(row)
        status = row.error or ", ".join(f"{p} {m.clips_per_s:.1f} clips/s ({m.iters} calls)"
                                        for p, m in row.results.items())
        print(f"[1] {spec.label}: {status} [{time.perf_counter() - t0:.0f} s]", flush=True)

    e2e: dict[str, Any] | None = None
    e2e_error = ""
    if not args.skip_e2e:
        print("[2] end to end on the demo set: extract_bench.py " + " ".join(e2e_argv(args)), flush=True)
        buffer = io.StringIO()
        try:
            with redirect_stdout(buffer):
                e2e = extract_bench.run(extract_bench.parse_args(e2e_argv(args)))
        except Exception as err:  # noqa: BLE001 - report part 1 even when part 2 fails
            e2e_error = f"{type(err).__name__}: {err}"
        print("\n".join("    " + line for line in buffer.getvalue().splitlines()), flush=True)

    print(f"\nGPU check summary ({name}, {time.perf_counter() - t_start:.0f} s)")
    print(f"synthetic clips, seeded random weights, batch {args.batch}, up to {args.iters} timed calls "
          f"(cut at {args.time_box:g} s); rel.err = ||x - fp32|| / ||fp32|| over the feature spaces "
          "(tf32: PyTorch's default TF32 convolutions vs the strict fp32 the pipeline uses)")
    for line in format_table(rows, skipped, cuda):
        print(line)
    if e2e is not None:
        ours, naive = e2e["ours"], e2e["naive"]
        print(f"end to end, demo set, {e2e['clips']} clips, supervised 8x{224 if not args.quick else 32}, fp32, "
              f"ours T={e2e['threads']} W={e2e['workers']} (clips/s): data {ours.data:.1f}, model {ours.model:.1f}, "
              f"end to end {ours.e2e:.1f} (x{ours.overlap:.2f} of the slower); naive end to end {naive.e2e:.1f}; "
              f"ours / naive = {ours.e2e / naive.e2e:.2f}; from clip cache {e2e['cached'].e2e:.1f}; "
              f"features agree to {e2e['agreement']:.1e}"
              + (f"; peak GPU memory {e2e['peak_gpu_bytes'] / 2**30:.2f} GiB" if cuda else ""))
    elif e2e_error:
        print(f"end to end: FAILED: {e2e_error}")
    checkpoints.cleanup()
    failed = any(r.error for r in rows) or bool(e2e_error)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
