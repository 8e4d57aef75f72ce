"""Running the Snakemake workflow from tests: tiny configurations and job listings."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"

#: Files every tiny-dataset video set gets besides the generated videos, to exercise the
#: failure table: (relative path, content).
BAD_FILES = {
    "val/move_left/zero_bytes.mp4": b"",
    "val/move_up/random_bytes.avi": bytes(range(256)) * 64,
}


def make_videos(root: Path, *, videos_per_class: int = 2, seed: int = 0, bad: bool = True) -> Path:
    """A small real dataset (Kinetics layout) of demo videos, plus unusable files."""
    from dimcollapse.data.demo import generate_demo

    generate_demo(root, seed=seed, videos_per_class=videos_per_class, duration_range=(2.2, 2.5), short_seconds=0.8)
    if bad:
        for rel, content in BAD_FILES.items():
            (root / rel).write_bytes(content)
    return root


#: Videos :func:`add_noted_videos` writes (relative path: what the notes table says of it).
NOTED_VIDEOS = {"val/still/one_frame.mp4": "short", "val/move_down/rotated.mp4": "rotated"}


def add_noted_videos(root: Path) -> Path:
    """Two usable videos the pipeline uses with a caveat: a 1-frame video (every clip
    repeats it) and a 3-s video whose container asks for a 90° display rotation."""
    import av
    import numpy as np

    rng = np.random.default_rng(7)
    for rel, frames, rotation in (("val/still/one_frame.mp4", 1, 0), ("val/move_down/rotated.mp4", 90, 90)):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast"})
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            if rotation:
                stream.set_display_rotation(rotation)
            base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
            for t in range(frames):
                frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * t, axis=1), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
    return root


def tiny_config(workdir: Path, videos: Path) -> dict[str, Any]:
    """A complete study that runs in about a minute on 2 cores.

    Two datasets (a real folder with bad files, and a generated one), three model
    instances of both families, 64-pixel crops, two shards.
    """
    return {
        "title": "Tiny test study",
        "datasets": {
            "real": {"layout": "kinetics", "root": str(videos), "split": "val"},
            "gen": {"layout": "kinetics", "root": "resources/gen", "split": "val",
                    "demo": {"seed": 3, "videos_per_class": 1}},
        },
        "models": {
            "sup": {"method": "supervised", "label": "Supervised", "seed": 0},
            "simclr": {"method": "SimCLR", "label": "SimCLR", "seed": 1},
            "dpc": {"method": "DPC", "label": "DPC", "seed": 2, "options": {"arch": "resnet18"}},
        },
        "protocols": {
            "paper": {"side_size": 64, "crop_size": 64},
            "dpc": {"side_size": 64, "crop_size": 64},
        },
        "extraction": {"batch_size": 4, "workers": 0, "shards": 2, "flush_every": 4, "threads": 1},
        "spectrum": {"bootstrap": 0},
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


#: The tests' studies are tiny, like the demo: one thread per analysis job, so that two run
#: at once on 2 cores (profiles/default, with its greedy scheduler, applies by itself).
TINY_RUN_ARGS = ("--profile", str(REPO / "profiles" / "tiny"))


def snakemake(workdir: Path, *args: str, timeout: float = 900, check: bool = True,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the workflow (this repository's Snakefile) in ``workdir`` with :data:`TINY_RUN_ARGS`."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           *TINY_RUN_ARGS, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, configfile: Path, *args: str) -> collections.Counter[str]:
    """Jobs a dry run would execute, by rule (``all`` excluded)."""
    proc = snakemake(workdir, "--configfile", str(configfile), "--dry-run", "--nolock", "--cores", "1", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return collections.Counter()
    table = text[text.index("Job stats:"):]
    counts: collections.Counter[str] = collections.Counter()
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m or m.group(1) == "total":
            break
        if m.group(1) != "all":
            counts[m.group(1)] = int(m.group(2))
    return counts


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, scripts, package, ...) to edit in a test."""
    for name in ("Snakefile", "rules", "scripts", "dimcollapse", "schemas", "envs", "report"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest / "Snakefile"


def job_stats(output: str) -> collections.Counter[str]:
    """Jobs by rule from the ``Job stats:`` table that a Snakemake run prints first (``all`` included)."""
    if "Job stats:" not in output:
        raise AssertionError(f"no 'Job stats:' table in Snakemake's output:\n{output[-3000:]}")
    table = output[output.index("Job stats:"):]
    counts: collections.Counter[str] = collections.Counter()
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m or m.group(1) == "total":
            break
        counts[m.group(1)] = int(m.group(2))
    return counts
