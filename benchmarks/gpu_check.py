"""GPU check for a lent accelerator: every family on CUDA, the data path, the demo, a projection.

Run by ``benchmarks/gpu_check.sh`` (which installs the wheels a bare GPU node lacks). Parts,
in the order they run, each bounded by what is left of ``--budget`` seconds (a part that
does not fit is listed as skipped):

(a) **families** — every model family and kind (:mod:`families`: the paper's Slow R50s, DPC
    R18/R34, every torchvision and PyTorchVideo arch, every transformers class, custom),
    seeded, small clips: the model prepared for CUDA (:func:`~dimcollapse.extraction.device.prepare_model`)
    against the same model's strict-fp32 CPU features; OK at a relative error ≤ 1e-5. With
    ``--device cpu`` the CUDA preparation runs on the CPU (``device_type="cuda"``).
(b) **end to end** from the clip cache (the demo set, ``--clips-per-video`` random clips per
    video, paper sizes): the uint8 loader alone, with views assembled on the device, and
    :func:`~dimcollapse.extraction.extract.run_shard` at fp32 and bf16, against the model
    alone on views already on the device; features of both paths compared.
(t) **throughput** — the paper's models at their published sizes and VideoMAE-B / V-JEPA 2
    ViT-L (random weights of the published configurations): clips/s at fp32, tf32 and bf16,
    the tf32 and bf16 errors against strict fp32, peak memory.
(d) **projection** — Kinetics-400 validation (19,881 clips) × the paper's six models, from
    the rates measured in (b) and (t).
(c) **demo** (last: it takes what budget is left) — the demo's feature files on the device
    (``--resources gpu=1``) and on the CPU, in two scratch folders, every file compared; the
    inputs (video content hashes, every clip-cache row) compared with
    ``demo_fingerprints.json``, recorded on the development machine, so a difference across
    machines is placed in the inputs or in the compute; then the rest of the workflow
    (``snakemake all``) on the device, stopped at the budget.

    bash benchmarks/gpu_check.sh                           # on the GPU node, < 6 min
    python benchmarks/gpu_check.py --device cpu --quick    # every part at tiny sizes, on a CPU
    python benchmarks/gpu_check.py --write-fingerprints    # record demo_fingerprints.json (CPU, minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
import extract_bench  # noqa: E402
import families  # noqa: E402
import transformers_models  # noqa: E402
from families import Spec  # noqa: E402

from dimcollapse.extraction.device import forward_views, prepare_model, relative_error  # noqa: E402
from dimcollapse.models import METHODS, build_model  # noqa: E402

FAMILY_TOLERANCE = 1e-5
TIMED = ("fp32", "tf32", "bf16")
PARTS = ("families", "e2e", "throughput", "projection", "demo")
K400_VAL = 19_881  # videos of Kinetics-400 validation (README, "Clip cache"), one clip each
PAPER_MODELS = 6
FINGERPRINTS = HERE / "demo_fingerprints.json"
#: What --quick keeps of the demo: a few videos and one instance per protocol family.
QUICK_DEMO_MODELS = ("supervised", "dpc", "moco_views", "cnn")


# ------------------------------------------------------------------------- (a) families
@dataclass
class FamilyRow:
    """One family's CUDA preparation against its CPU features."""

    spec: Spec
    layout: str = ""
    error: float | None = None
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and self.error is not None and self.error <= FAMILY_TOLERANCE


def check_family(spec: Spec, device: torch.device) -> FamilyRow:
    """``spec``'s model prepared for ``device`` against its strict-fp32 CPU features, on one
    batch of two seeded clips (the CPU's reference first, then the same model moved)."""
    row = FamilyRow(spec)
    cpu = torch.device("cpu")
    try:
        model = build_model(spec.method, seed=0, **spec.options)
        spaces = tuple(METHODS[spec.method].spaces)
        x = torch.randn((2, 1, *spec.clip), generator=torch.Generator().manual_seed(0))
        reference = forward_views(prepare_model(model, cpu), x, spaces, cpu, "fp32")
        prepared = prepare_model(model, device, device_type="cuda")
        row.layout = "channels-last 3D" if prepared.preparation.memory_format == torch.channels_last_3d else "contiguous"
        out = forward_views(prepared, x, spaces, device, "fp32")
        row.error = relative_error(reference, {k: v.cpu() for k, v in out.items()})
        if not row.ok:
            row.failure = f"relative error {row.error:.2e} above {FAMILY_TOLERANCE:g}"
    except Exception as err:  # noqa: BLE001 - one failing family must not hide the others
        row.failure = _one_line(err)
    return row


def format_families(rows: Sequence[FamilyRow], device: torch.device) -> list[str]:
    what = "CUDA" if device.type == "cuda" else "CUDA's preparation on the CPU"
    lines = [f"  {'model':52s} {'layout':17s} {'rel.err vs CPU fp32':>20}  ({what}; OK at <= {FAMILY_TOLERANCE:g})"]
    for r in rows:
        status = "OK" if r.ok else f"FAILED: {r.failure}"
        err = "-" if r.error is None else f"{r.error:.2e}"
        lines.append(f"  {r.spec.label:52s} {r.layout:17s} {err:>20}  {status}")
    return lines


# ----------------------------------------------------------------------- (t) throughput
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
    errors: dict[str, float] = field(default_factory=dict)  # precision -> relative error vs strict fp32
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


def check_model(spec: Spec, batch: int, device: torch.device, args: argparse.Namespace) -> Row:
    """Clips/s of ``spec`` at every :data:`TIMED` precision (inputs already on the device) and
    the relative error of each against strict fp32."""
    row = Row(spec, batch)
    try:
        model = prepare_model(build_model(spec.method, seed=0, **spec.options), device)
        spaces = tuple(METHODS[spec.method].spaces)
        x = torch.randn((batch, 1, *spec.clip), generator=torch.Generator().manual_seed(0)).to(device)
        for precision in TIMED:
            row.results[precision] = measure(model, spaces, x, device, precision, args.warmup, args.iters,
                                             args.time_box)
        reference = forward_views(model, x, spaces, device, "fp32")
        row.errors = {p: relative_error(reference, forward_views(model, x, spaces, device, p)) for p in TIMED[1:]}
        del model, x, reference
    except Exception as err:  # noqa: BLE001 - one failing model (e.g. out of memory) must not end the check
        row.error = _one_line(err)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


#: The transformers models timed (random weights of their published configurations).
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
                          (3, frames, crop, crop), "transformers"))
    return specs


def format_throughput(rows: Sequence[Row], skipped: Sequence[Spec], cuda: bool) -> list[str]:
    """The per-model lines of the throughput table."""
    lines = [f"  {'model':20s} {'batch':>5} {'fp32 clips/s':>12} {'tf32 clips/s':>12} {'bf16 clips/s':>12} "
             f"{'bf16/fp32':>9} {'rel.err tf32':>12} {'rel.err bf16':>12} {'peak GiB fp32/bf16':>18}"]
    for r in rows:
        if r.error:
            lines.append(f"  {r.spec.label:20s} {r.batch:>5} FAILED: {r.error}")
            continue
        f32, t32, b16 = (r.results[p] for p in TIMED)
        peak = f"{f32.peak_bytes / 2**30:.2f}/{b16.peak_bytes / 2**30:.2f}" if cuda else "-"
        lines.append(f"  {r.spec.label:20s} {r.batch:>5} {f32.clips_per_s:12.1f} {t32.clips_per_s:12.1f} "
                     f"{b16.clips_per_s:12.1f} {b16.clips_per_s / f32.clips_per_s:9.2f} {r.errors['tf32']:12.2e} "
                     f"{r.errors['bf16']:12.2e} {peak:>18}")
    for s in skipped:
        lines.append(f"  {s.label:20s} skipped: the --budget was spent")
    return lines


# ------------------------------------------------------------------------ (b) end to end
def e2e_check(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict[str, Any]:
    """The uint8 data path from the clip cache against the model alone, at fp32 and bf16."""
    from dimcollapse.data.clip_cache import build_clip_cache
    from dimcollapse.data.clips import ClipDataset
    from dimcollapse.data.demo import FULL, generate_demo
    from dimcollapse.data.protocols import resolve_protocol

    quick = args.quick
    generate_demo(tmp / "videos", videos_per_class=1 if quick else 8, duration_range=FULL["duration_range"],
                  short_seconds=FULL["short_seconds"])
    manifest, _ = extract_bench.manifest_rows(extract_bench.find_videos(tmp / "videos"), tmp / "videos",
                                              clips_per_video=1 if quick else args.clips_per_video)
    side, crop, batch = (37, 32, 2) if quick else (256, 224, args.batch)
    protocol = resolve_protocol("paper", side_size=side, crop_size=crop, clip_position="random")
    cache = tmp / "cache"
    clock = extract_bench._Clock()
    build_clip_cache(manifest, protocol, cache, workers=args.workers)
    out: dict[str, Any] = {"clips": len(manifest), "cache_build": clock.rate(len(manifest)).per_s, "runs": {}}
    frames = ClipDataset(manifest, protocol, cache=cache, output="frames")
    out["data"] = extract_bench.time_data(frames, batch, args.workers, device.type == "cuda").per_s
    out["views"] = extract_bench.time_views(frames, batch, args.workers, device).per_s
    views = [v.to(device) for v in extract_bench.preload(ClipDataset(manifest, protocol, cache=cache), batch)]
    model = prepare_model(build_model("supervised", seed=0, crop_size=crop), device)
    spaces = ("representation",)
    for precision in ("fp32", "bf16"):
        for _ in range(2):  # warm-up: kernel choice (cuDNN autotuning) for both batch shapes
            extract_bench.time_model(model, spaces, views[:1] + views[-1:], device, precision)
        model_only = extract_bench.time_model(model, spaces, views, device, precision)
        rate, features = extract_bench.time_e2e(model, spaces, frames, batch, args.workers, device, precision,
                                                tmp / "store", 256)
        reference = np.concatenate([forward_views(model, v, spaces, device, precision)["representation"]
                                    .mean(dim=1).cpu().numpy() for v in views])
        out["runs"][precision] = {"model": model_only.per_s, "e2e": rate.per_s, "wait": rate.wait,
                                  "agreement": float(np.linalg.norm(features - reference) / np.linalg.norm(reference))}
    return out


def format_e2e(e2e: dict[str, Any], quick: bool) -> list[str]:
    size = "8x32" if quick else "8x224"
    lines = [f"  {e2e['clips']} clips, supervised Slow R50 {size}, from the clip cache (built at "
             f"{e2e['cache_build']:.0f} clips/s): uint8 data only {e2e['data']:.0f} clips/s, with views assembled "
             f"on the device {e2e['views']:.0f} clips/s"]
    for precision, r in e2e["runs"].items():
        lines.append(f"  {precision}: model only {r['model']:.1f} clips/s, end to end {r['e2e']:.1f} clips/s "
                     f"(x{r['e2e'] / r['model']:.2f} of model only; waited {r['wait']:.2f} s for batches); "
                     f"features vs model only: {r['agreement']:.1e}")
    return lines


# ---------------------------------------------------------------------------- (c) demo
def demo_config(device: str, quick: bool) -> dict[str, Any]:
    """config.demo.yaml for a run on ``device`` (``--quick``: 2 videos per class, 4 instances)."""
    import yaml

    config = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    config["extraction"]["device"] = device
    if quick:
        config["datasets"]["demo"]["demo"]["videos_per_class"] = 2
        config["models"] = {k: v for k, v in config["models"].items() if k in QUICK_DEMO_MODELS}
        temporal = config.get("temporal", {})
        if "interventions" in temporal:
            temporal["interventions"] = {k: v for k, v in temporal["interventions"].items() if k in QUICK_DEMO_MODELS}
    return config


def run_demo(workdir: Path, config: dict[str, Any], targets: Sequence[str], cores: int, gpu: bool,
             extra: Sequence[str] = (), timeout: float | None = None) -> float:
    """The workflow in ``workdir`` with ``config``; returns its seconds (raises with the log's
    tail, or when it runs past ``timeout`` seconds)."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *targets, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
           "--workflow-profile", str(REPO / "profiles" / "default"), "--profile", str(REPO / "profiles" / "tiny"),
           "--cores", str(cores), *extra, "--resources", f"gpu={1 if gpu else 0}"]  # targets first: shared/gpu README
    t0 = time.perf_counter()
    # its own process group, so that a run stopped at the budget takes its jobs with it
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # Snakemake stops its jobs and removes their partial outputs
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    if proc.returncode:
        tail = "\n".join(output.splitlines()[-15:])
        raise RuntimeError(f"snakemake {' '.join(targets)} failed in {workdir} (exit {proc.returncode}):\n{tail}")
    return time.perf_counter() - t0


def feature_files(workdir: Path) -> dict[str, Path]:
    root = workdir / "results" / "features"
    return {str(p.relative_to(root)): p for p in sorted(root.glob("*/*/*.npy"))}


def fingerprints(workdir: Path) -> dict[str, dict[str, str]]:
    """The inputs of a demo run: each video's content hash and each clip-cache row's SHA-256."""
    import pandas as pd

    out: dict[str, dict[str, str]] = {}
    for manifest in sorted((workdir / "results" / "manifests").glob("*.csv")):
        if manifest.name.count(".") == 1:  # not the .failures.csv
            rows = pd.read_csv(manifest)
            out[f"videos/{manifest.stem}"] = dict(zip(rows["id"], rows["content"]))
    for meta in sorted((workdir / "results" / "clips").glob("*/*/meta.json")):
        cache = meta.parent
        data = (cache / "frames.u8").read_bytes()
        rows = {}
        for e in json.loads((cache / "index.json").read_text()):
            if e["ok"]:
                size = int(np.prod(e["shape"]))
                rows[e["id"]] = hashlib.sha256(data[e["offset"]:e["offset"] + size]).hexdigest()[:16]
        out[f"clips/{cache.parent.name}/{cache.name}"] = rows
    return out


def compare_fingerprints(found: dict[str, dict[str, str]], reference: dict[str, dict[str, str]]) -> list[str]:
    """One line per group (videos, each clip cache): how many entries equal the reference."""
    lines = []
    for group in sorted(set(found) | set(reference)):
        a, b = found.get(group, {}), reference.get(group, {})
        if not a or not b:
            lines.append(f"  {group}: {'only here' if a else 'not built here'}")
            continue
        same = sum(a.get(k) == v for k, v in b.items())
        differ = sorted(k for k, v in b.items() if k in a and a[k] != v)
        lines.append(f"  {group}: {same} of {len(b)} identical to the development machine's"
                     + (f"; differ: {', '.join(differ[:4])}{' …' if len(differ) > 4 else ''}" if differ else ""))
    return lines


def demo_check(args: argparse.Namespace, device: torch.device, tmp: Path, left: Callable[[], float]) -> dict[str, Any]:
    """The demo's features on the device and on the CPU, compared (inputs fingerprinted); then
    the rest of the workflow (``all``) on the device with the budget left, stopped there.
    ``left()``: seconds of the budget left (each run is stopped there).
    Features first: on the H200 the whole demo outran a 290 s budget before any comparison."""
    cores = os.cpu_count() or 2
    gpu_cfg = demo_config("cuda" if device.type == "cuda" else "cpu", args.quick)
    features = [f"results/features/demo/{m}/representation.npy" for m in gpu_cfg["models"]]
    seconds_gpu = run_demo(tmp / "device", gpu_cfg, features, cores, gpu=True, timeout=max(left(), 30))
    seconds_cpu = run_demo(tmp / "cpu", demo_config("cpu", args.quick), features, cores, gpu=False,
                           timeout=max(left(), 30))
    rest = "not run (--quick)"
    if not args.quick:
        try:
            rest = f"{run_demo(tmp / 'device', gpu_cfg, ['all'], cores, gpu=True, timeout=max(left(), 30)):.0f} s"
        except subprocess.TimeoutExpired:
            rest = "stopped at the budget"
    on_device, on_cpu = feature_files(tmp / "device"), feature_files(tmp / "cpu")
    errors = {}
    for name in sorted(set(on_device) & set(on_cpu)):
        a, b = np.load(on_device[name]), np.load(on_cpu[name])
        errors[name] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
    found = fingerprints(tmp / "device")
    same_inputs = found == fingerprints(tmp / "cpu")
    reference = json.loads(FINGERPRINTS.read_text()) if FINGERPRINTS.is_file() and not args.quick else {}
    return {"seconds": (seconds_gpu, seconds_cpu), "rest": rest, "errors": errors, "same_inputs": same_inputs,
            "inputs": compare_fingerprints(found, reference) if reference else []}


def format_demo(demo: dict[str, Any], device: torch.device) -> list[str]:
    gpu_s, cpu_s = demo["seconds"]
    lines = [f"  features on {device.type}: {gpu_s:.0f} s, on the CPU: {cpu_s:.0f} s; the rest of the workflow "
             f"(all) on {device.type}: {demo['rest']}; inputs of both runs (clip caches) "
             f"{'identical' if demo['same_inputs'] else 'DIFFERENT'}"]
    worst = max(demo["errors"].values(), default=float("nan"))
    lines.append(f"  features {device.type} vs CPU, relative error (Frobenius) per file: largest {worst:.1e}")
    for name, err in demo["errors"].items():
        lines.append(f"    {name:48s} {err:.1e}")
    if demo["inputs"]:
        lines.append("  inputs against demo_fingerprints.json (recorded on the development machine):")
        lines += demo["inputs"]
    return lines


def write_fingerprints(cores: int) -> int:
    """Run the demo's inputs (manifest, clip caches) on this machine and record them."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_fingerprints_") as name:
        run_demo(Path(name), demo_config("cpu", quick=False), ["all"], cores, gpu=False, extra=["--until", "clip_cache"])
        found = fingerprints(Path(name))
    FINGERPRINTS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FINGERPRINTS}: {', '.join(f'{k} ({len(v)})' for k, v in found.items())}")
    return 0


# ---------------------------------------------------------------------- (d) projection
def projection(rows: Sequence[Row], e2e: dict[str, Any] | None) -> list[str]:
    """Kinetics-400 val × the paper's six models from the measured rates: the clip caches
    (``paper``, shared by the five Slow R50s; ``dpc``, 25 frames for 8, at a third of the rate
    as an assumption), then each model at min(its model-only rate, the data path's rate)."""
    if e2e is None:
        return ["  not computed: needs the end-to-end part"]
    by_label = {r.spec.label: r for r in rows if not r.error}
    paper = [r for label, r in by_label.items() if label.split()[0] in ("supervised", "SimCLR", "MoCo", "SwAV")
             or label.startswith("BYOL 8x")]
    dpc = by_label.get(next((label for label in by_label if label.startswith("DPC R34")), ""))
    if len(paper) < 5 or dpc is None:
        return ["  not computed: needs the throughput rows of the five Slow R50s and DPC R34"]
    data = e2e["views"]
    build = K400_VAL / e2e["cache_build"] + K400_VAL / (e2e["cache_build"] / 3)
    lines = [f"  Kinetics-400 val ({K400_VAL:,} clips) x {PAPER_MODELS} models; clip caches (paper + dpc) "
             f"{build / 60:.1f} min, once"]
    for precision in ("fp32", "bf16"):
        per_model = [K400_VAL / min(r.results[precision].clips_per_s, data) for r in [*paper, dpc]]
        lines.append(f"  {precision}: extraction {sum(per_model) / 60:.1f} min "
                     f"(model-bound {sum(K400_VAL / r.results[precision].clips_per_s for r in [*paper, dpc]):.0f} s), "
                     f"total with the caches {(sum(per_model) + build) / 60:.1f} min")
    return lines


# --------------------------------------------------------------------------------- main
def selected(specs: Sequence[Spec], only: Sequence[str]) -> list[Spec]:
    """The specs whose label contains one of ``only`` (all without it)."""
    return [s for s in specs if not only or any(o in s.label for o in only)]


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes everywhere: checks the logic, e.g. on CPU")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--batch", type=int, default=None, help="clips per forward call (default 16; --quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 3; --quick 1)")
    ap.add_argument("--iters", type=int, default=None, help="timed calls (default 20; --quick 2)")
    ap.add_argument("--time-box", type=float, default=4.0, help="stop timing a measurement after this many s")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for all parts; later ones are skipped")
    ap.add_argument("--workers", type=int, default=None,
                    help="loader and cache-build workers (default min(12, cores - 2); --quick 1)")
    ap.add_argument("--clips-per-video", type=int, default=25, help="end-to-end clips per demo video (40 videos)")
    ap.add_argument("--only", default="", help="comma-separated parts of model labels: only those rows of (a) and (t)")
    ap.add_argument("--write-fingerprints", action="store_true", help=f"record {FINGERPRINTS.name} and exit")
    args = ap.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    args.only = [o for o in args.only.split(",") if o]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    args.batch = args.batch or (2 if args.quick else 16)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.iters = args.iters or (2 if args.quick else 20)
    if args.workers is None:
        args.workers = 1 if args.quick else max(1, min(12, (os.cpu_count() or 1) - 2))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_fingerprints:
        return write_fingerprints(os.cpu_count() or 2)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is available here, so the GPU check was not run "
              "(use --device cpu --quick to exercise its logic on CPU).")
        return 0
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(f"gpu_check on {device} ({name}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version() if cuda else '-'}; Python {platform.python_version()}; "
          f"{os.cpu_count()} cores; torch threads {torch.get_num_threads()}; parts {', '.join(args.parts)}")
    summary: list[str] = []
    failed = False
    left = lambda: args.budget - (time.perf_counter() - start)  # noqa: E731

    def part(key: str, title: str, run: Callable[[], list[str]]) -> None:
        nonlocal failed
        if key not in args.parts:
            return
        if left() <= 0:
            summary.extend([f"({key}) {title}", "  skipped: the --budget was spent"])
            return
        t0 = time.perf_counter()
        try:
            lines = run()
        except Exception as err:  # noqa: BLE001 - report the other parts
            failed = True
            lines = [f"  FAILED: {err}"]
        block = [f"({key}) {title} [{time.perf_counter() - t0:.0f} s]", *lines]
        print("\n".join(block), flush=True)
        summary.extend(block)

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp_name:
        tmp = Path(tmp_name)
        state: dict[str, Any] = {"rows": [], "e2e": None}

        def run_families() -> list[str]:
            nonlocal failed
            rows = []
            for spec in families.every_family(tmp / "hf", args.only):
                rows.append(check_family(spec, device))
                if left() <= 0:
                    break
            failed |= not all(r.ok for r in rows)
            return format_families(rows, device)

        def run_demo_part() -> list[str]:
            nonlocal failed
            demo = demo_check(args, device, tmp / "demo", left)
            failed |= not demo["errors"]
            return format_demo(demo, device)

        def run_e2e() -> list[str]:
            state["e2e"] = e2e_check(args, device, tmp / "e2e")
            return format_e2e(state["e2e"], args.quick)

        def run_throughput() -> list[str]:
            nonlocal failed
            specs = families.paper_models(32, 32, 32) if args.quick else families.paper_models()
            specs = selected(specs + transformers_specs(tmp / "published", quick=args.quick), args.only)
            skipped = []
            for spec in specs:
                if left() <= 0:
                    skipped.append(spec)
                    continue
                state["rows"].append(check_model(spec, args.batch, device, args))
            failed |= any(r.error for r in state["rows"])
            return [f"  seeded random weights, batch {args.batch}, inputs on the device, up to {args.iters} timed "
                    f"calls (cut at {args.time_box:g} s); rel.err = ||x - fp32|| / ||fp32|| (strict fp32)",
                    *format_throughput(state["rows"], skipped, cuda)]

        part("families", "every family, CUDA preparation vs CPU strict fp32", run_families)
        part("e2e", "end to end from the clip cache (uint8 path)", run_e2e)
        part("throughput", "model throughput and precision", run_throughput)
        part("projection", "projection", lambda: projection(state["rows"], state["e2e"]))
        part("demo", "the demo workflow", run_demo_part)  # last: the longest, it takes what budget is left
    print(f"\nGPU check summary ({name}, {time.perf_counter() - start:.0f} s)")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
