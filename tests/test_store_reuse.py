"""What the feature store recomputes, counted from the merged sidecars (issue 10's criteria).

Each scenario runs the real extraction jobs and merge stage on demo videos with one
shared store, for two DPC R18 instances (seeded weights, and a checkpoint file with
running statistics), and compares with a clean run (empty store):

- touching every video (and rebuilding the manifest), or changing the number of shards,
  computes 0 clips;
- adding k videos computes exactly k clips per instance;
- a new checkpoint recomputes only its instance; the same file at another path nothing;
- the merged features are byte-identical to a clean run's every time.

(A code change that keeps the numbers recomputes nothing because the key holds the
numerics version, not a code hash: ``test_workflow.py`` checks the rule side.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from extract_fixtures import job_for, run_extract, run_stage

from dimcollapse.stages import data as data_stages
from dimcollapse.stages import extract as extract_stages
from dimcollapse.data.demo import generate_demo
from dimcollapse.data.manifest import build_manifest, read_manifest, write_manifest
from dimcollapse.failures import write_failures

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("store_reuse")]

INSTANCES = ("seeded", "ckpt")


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def dpc_checkpoint(path: Path, seed: int) -> Path:
    """A DPC R18 training file with BatchNorm running statistics (random weights)."""
    from test_models_dpc import pretraining_state, save_dpc

    path.parent.mkdir(parents=True, exist_ok=True)
    return save_dpc(pretraining_state("resnet18", True, seed), path, "resnet18")


def job(name: str, checkpoint: Path | None = None) -> dict[str, Any]:
    overrides = {"checkpoint": str(checkpoint)} if checkpoint else {}
    return job_for("dpc", overrides=overrides)


def manifest_of(videos: Path, path: Path, cache: Path) -> Path:
    frame, failures = build_manifest({"layout": "kinetics", "root": str(videos), "split": "val"},
                                     progress=False, hash_cache=cache)
    assert not failures
    write_manifest(path, frame)
    return path


def run_study(root: Path, manifest: Path, store: Path, *, shards: int, checkpoint: Path) -> dict[str, dict]:
    """Extraction (all shards) and merge of both instances; returns {instance: sidecar + features}."""
    out = {}
    for name in INSTANCES:
        spec = job(name, checkpoint if name == "ckpt" else None)
        paths = []
        for shard in range(shards):
            path = root / name / "shards" / f"{shard}-of-{shards}.npz"
            run_extract(job=spec, manifest=manifest, output=path, store_root=store, shard=shard, n_shards=shards,
                        checkpoint=checkpoint if name == "ckpt" else None)
            paths.append(path)
        none = root / "none.failures.csv"
        write_failures(none, [])
        run_stage(data_stages.failures, root / "logs" / "failures.log", input={"stages": [none, *paths], "manifest": manifest},
                  output={"failures": root / "failures.csv", "index": root / "index.csv"}, wildcards={"dataset": "d"})
        files = {"features": root / name / "representation.npy", "sidecar": root / name / "representation.json"}
        run_stage(extract_stages.merge_features, root / "logs" / f"merge-{name}.log",
                  input={"shards": paths, "index": root / "index.csv", "manifest": manifest}, output=files,
                  params={"job": spec}, wildcards={"dataset": "d", "method": name, "space": "representation"})
        out[name] = {**json.loads(files["sidecar"].read_text()), "features": np.load(files["features"])}
    return out


def counts(study: dict[str, dict]) -> dict[str, tuple[int, int]]:
    return {name: (s["clips_computed"], s["clips_reused"]) for name, s in study.items()}


def same(a: dict[str, dict], b: dict[str, dict]) -> bool:
    return all(a[n]["features"].tobytes() == b[n]["features"].tobytes() and a[n]["features"].shape
               == b[n]["features"].shape for n in INSTANCES)


def test_reruns_compute_only_what_changed(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    generate_demo(videos, seed=0, videos_per_class=2, duration_range=(2.2, 2.5), short_seconds=0.8)
    hashes = tmp_path / "hash-cache"
    manifest = manifest_of(videos, tmp_path / "m0.csv", hashes)
    n = len(read_manifest(manifest))
    store = tmp_path / "store"
    ckpt = dpc_checkpoint(tmp_path / "ckpt" / "a.pth.tar", seed=5)

    clean = run_study(tmp_path / "r0", manifest, store, shards=2, checkpoint=ckpt)
    assert counts(clean) == {"seeded": (n, 0), "ckpt": (n, 0)}
    assert not same(clean, {"seeded": clean["ckpt"], "ckpt": clean["seeded"]})  # the instances differ

    # Touch every video: the manifest is rebuilt (new mtimes), nothing is computed.
    for f in videos.rglob("*.*"):
        os.utime(f)
    touched = run_study(tmp_path / "r1", manifest_of(videos, tmp_path / "m1.csv", hashes), store, shards=2,
                        checkpoint=ckpt)
    assert counts(touched) == {"seeded": (0, n), "ckpt": (0, n)} and same(touched, clean)

    # Another number of shards.
    resharded = run_study(tmp_path / "r2", manifest, store, shards=3, checkpoint=ckpt)
    assert counts(resharded) == {"seeded": (0, n), "ckpt": (0, n)} and same(resharded, clean)

    # The same checkpoint file at another path (as after a re-download) is the same instance.
    moved = shutil.copy(ckpt, tmp_path / "ckpt" / "moved.pth.tar")
    again = run_study(tmp_path / "r3", manifest, store, shards=1, checkpoint=Path(moved))
    assert counts(again) == {"seeded": (0, n), "ckpt": (0, n)} and same(again, clean)

    # Add k = 2 videos (new names, new content): exactly 2 clips per instance, and the
    # result equals a clean run of the grown dataset to the bit.
    extra = tmp_path / "extra"
    new_videos = generate_demo(extra, seed=9, videos_per_class=1, duration_range=(2.2, 2.5), short_seconds=0.8)
    for i, src in enumerate(new_videos[:2]):
        rel = src.relative_to(extra)
        shutil.copy(src, videos / rel.parent / f"added_{i}{src.suffix}")
    grown = manifest_of(videos, tmp_path / "m2.csv", hashes)
    assert len(read_manifest(grown)) == n + 2
    added = run_study(tmp_path / "r4", grown, store, shards=2, checkpoint=ckpt)
    assert counts(added) == {"seeded": (2, n), "ckpt": (2, n)}
    fresh = run_study(tmp_path / "r5", grown, tmp_path / "fresh-store", shards=1, checkpoint=ckpt)
    assert counts(fresh) == {"seeded": (n + 2, 0), "ckpt": (n + 2, 0)} and same(added, fresh)

    # A new checkpoint recomputes that instance only.
    new = dpc_checkpoint(tmp_path / "ckpt" / "b.pth.tar", seed=6)
    swapped = run_study(tmp_path / "r6", grown, store, shards=2, checkpoint=new)
    assert counts(swapped) == {"seeded": (0, n + 2), "ckpt": (n + 2, 0)}
    assert swapped["seeded"]["features"].tobytes() == added["seeded"]["features"].tobytes()
    assert swapped["ckpt"]["features"].tobytes() != added["ckpt"]["features"].tobytes()
