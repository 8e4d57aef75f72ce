"""What a rerun of the workflow costs: wall time and clips computed per scenario.

Runs the real workflow (Snakemake, this repository's Snakefile) on a generated dataset
of short demo videos with two small model instances of DPC R18 (seeded weights, and a
local checkpoint file), then reruns it after each change the feature store is meant to
absorb, in this order (each scenario starts from the state the previous one left):

    clean run, no-op rerun, touch-all rerun, shards change (2 → 3), +10 videos,
    one checkpoint changed

and prints one table row per scenario: wall time, extraction jobs Snakemake ran, and
the clips computed and reused per instance, read from the merged sidecars
(``clips_computed`` / ``clips_reused``; an instance whose features were not rewritten
computed nothing).

    python benchmarks/rerun_bench.py [--videos 200] [--workdir DIR] [--cores 2]

Wall times include everything Snakemake runs (manifest, clip cache, extraction, merge,
spectra, figures) and depend on the machine; the clip counts do not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dimcollapse.data.demo import DEMO_CLASSES, generate_demo  # noqa: E402

INSTANCES = ("dpc_seeded", "dpc_ckpt")
DATASET = "bench"
SHORT = {"duration_range": (2.2, 2.5), "short_seconds": 0.8}


@dataclass
class Step:
    """One scenario's outcome."""

    name: str
    wall_s: float
    extract_jobs: int
    computed: dict[str, int]
    reused: dict[str, int]


def write_checkpoint(path: Path, seed: int) -> Path:
    """A DPC R18 training file with BatchNorm running statistics and random weights
    (written by the tests' fixture writer, which knows DPC's file layout)."""
    tests = ROOT / "tests"
    sys.path.insert(0, str(tests))
    spec = importlib.util.spec_from_file_location("test_models_dpc", tests / "test_models_dpc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    return module.save_dpc(module.pretraining_state("resnet18", True, seed), path, "resnet18")


def study_config(videos: Path, checkpoint: Path, *, shards: int, crop: int, batch_size: int) -> dict[str, Any]:
    return {
        "title": "Rerun benchmark",
        "datasets": {DATASET: {"layout": "kinetics", "root": str(videos), "split": "val"}},
        "models": {
            "dpc_seeded": {"method": "DPC", "seed": 2, "options": {"arch": "resnet18"}},
            "dpc_ckpt": {"method": "DPC", "checkpoint": str(checkpoint), "options": {"arch": "resnet18"}},
        },
        "protocols": {"dpc": {"side_size": crop, "crop_size": crop}},
        "extraction": {"batch_size": batch_size, "workers": 1, "shards": shards, "flush_every": 4 * batch_size,
                       "threads": 1, "device": "cpu"},
        "spectrum": {"bootstrap": 0},
    }


def add_videos(videos: Path, scratch: Path, n: int, seed: int) -> list[Path]:
    """``n`` new videos (other seed: new content) under new names in the dataset's class folders."""
    per_class = -(-n // len(DEMO_CLASSES))
    made = generate_demo(scratch, seed=seed, videos_per_class=per_class, **SHORT)[:n]
    out = []
    for i, src in enumerate(made):
        dest = videos / src.relative_to(scratch).parent / f"added_{seed}_{i}{src.suffix}"
        shutil.copy(src, dest)
        out.append(dest)
    return out


def snakemake(workdir: Path, config: Path, cores: int) -> str:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config), "--cores", str(cores)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def extract_jobs(output: str) -> int:
    """Extraction jobs in the run's ``Job stats`` table (0 when there was nothing to do)."""
    m = re.search(r"^extract\s+(\d+)$", output, re.MULTILINE)
    return int(m.group(1)) if m else 0


def sidecars(workdir: Path) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{instance: (mtime_ns, sidecar)}`` of each instance's representation."""
    out = {}
    for name in INSTANCES:
        path = workdir / "results" / "features" / DATASET / name / "representation.json"
        out[name] = (path.stat().st_mtime_ns, json.loads(path.read_text())) if path.exists() else (0, {})
    return out


def run_step(name: str, workdir: Path, config: Path, cores: int) -> Step:
    before = sidecars(workdir)
    t0 = time.perf_counter()
    output = snakemake(workdir, config, cores)
    wall = time.perf_counter() - t0
    after = sidecars(workdir)
    rewritten = {k: after[k][0] != before[k][0] for k in INSTANCES}
    return Step(name, wall, extract_jobs(output),
                {k: after[k][1]["clips_computed"] if rewritten[k] else 0 for k in INSTANCES},
                {k: after[k][1]["clips_reused"] if rewritten[k] else 0 for k in INSTANCES})


def run(args: argparse.Namespace) -> list[Step]:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rerun_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    videos, scratch = workdir / "videos", workdir / "scratch"
    per_class = -(-args.videos // len(DEMO_CLASSES))
    generate_demo(videos, seed=0, videos_per_class=per_class, **SHORT)
    ckpt = write_checkpoint(workdir / "weights" / "dpc_a.pth.tar", seed=5)
    cfg = study_config(videos, ckpt, shards=2, crop=args.crop, batch_size=args.batch_size)

    def config_file(name: str) -> Path:
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    steps = [run_step("clean run", workdir, config_file("clean"), args.cores)]
    steps.append(run_step("no-op rerun", workdir, config_file("clean"), args.cores))
    for f in videos.rglob("*.*"):
        os.utime(f)
    steps.append(run_step("touch-all rerun", workdir, config_file("clean"), args.cores))
    cfg["extraction"]["shards"] = 3
    steps.append(run_step("shards 2 -> 3", workdir, config_file("shards"), args.cores))
    add_videos(videos, scratch / "added", args.added, seed=1)
    steps.append(run_step(f"+{args.added} videos", workdir, config_file("shards"), args.cores))
    cfg["models"]["dpc_ckpt"]["checkpoint"] = str(write_checkpoint(workdir / "weights" / "dpc_b.pth.tar", seed=6))
    steps.append(run_step("one checkpoint changed", workdir, config_file("ckpt"), args.cores))
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return steps


def format_table(steps: list[Step], n_videos: int) -> list[str]:
    head = f"{'scenario':<24} {'wall s':>7} {'extract jobs':>12}  " + "  ".join(
        f"{name + ' computed/reused':>28}" for name in INSTANCES)
    lines = [head, "-" * len(head)]
    for s in steps:
        cells = "  ".join(f"{f'{s.computed[k]}/{s.reused[k]}':>28}" for k in INSTANCES)
        lines.append(f"{s.name:<24} {s.wall_s:7.1f} {s.extract_jobs:12d}  {cells}")
    lines.append(f"({n_videos} videos at first; computed = clips run through the model, reused = taken from the "
                 "feature store; 0/0 = features not rewritten)")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=200, help="videos of the generated dataset (5 classes)")
    ap.add_argument("--added", type=int, default=10, help="videos added in the +k scenario")
    ap.add_argument("--crop", type=int, default=64, help="DPC sample size (side and crop)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    ap.add_argument("--workdir", help="keep the study here (default: a temporary folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    steps = run(args)
    n = -(-args.videos // len(DEMO_CLASSES)) * len(DEMO_CLASSES)
    print("\n".join(format_table(steps, n)))


if __name__ == "__main__":
    main()
