"""Which jobs ask Snakemake (and Slurm) for the GPU: the resources of a dry run's jobs.

No GPU is needed: the device is configured (``cuda``), or left to ``auto`` under the Slurm
profile, which must request a GPU from a submit host that has none.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

from workflow_helpers import REPO, snakemake, write_config

STUDY: dict[str, Any] = {
    "datasets": {"gen": {"layout": "kinetics", "root": "resources/gen", "split": "val",
                         "demo": {"seed": 3, "videos_per_class": 1}}},
    "models": {"sup": {"method": "supervised", "seed": 0},
               "dpc": {"method": "DPC", "seed": 2, "options": {"arch": "resnet18"}}},
    "temporal": {"interventions": {"sup": ["shuffled"]}},
}


def gpu_requests(workdir: Path, config: dict[str, Any], *args: str) -> dict[str, set[int]]:
    """Per rule, the ``gpu`` resource values of its planned jobs (rules without one are absent)."""
    cfg = write_config(workdir / "config.yaml", config)
    proc = snakemake(workdir, "--configfile", str(cfg), "--dry-run", "--nolock", "--cores", "1", *args)
    out: dict[str, set[int]] = collections.defaultdict(set)
    rule = None
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule is not None and (m := re.search(r"^\s+resources: .*\bgpu=(\d+)", line)):
            out[rule].add(int(m.group(1)))
    return out


def test_every_job_that_runs_on_cuda_asks_for_the_gpu(tmp_path: Path) -> None:
    config = {**STUDY, "extraction": {"device": "cuda", "shards": 1}, "analysis": {"device": "cuda"},
              "probes": {"device": "cuda"}}
    gpu = gpu_requests(tmp_path, config)
    assert {rule for rule, values in gpu.items() if values == {1}} == {
        "extract", "extract_intervened", "spectrum", "similarity", "probe"}
    assert not any(1 in values for rule, values in gpu.items() if rule not in
                   ("extract", "extract_intervened", "spectrum", "similarity", "probe"))


def test_on_slurm_every_extraction_asks_for_a_gpu_from_a_submit_host_without_one(tmp_path: Path) -> None:
    gpu = gpu_requests(tmp_path, {**STUDY, "extraction": {"device": "auto", "shards": 1}},
                       "--workflow-profile", str(REPO / "profiles" / "slurm"))
    assert gpu["extract"] == {1} and gpu["extract_intervened"] == {1}
