"""rerun_bench's pieces (the full benchmark runs the workflow six times: minutes, not a test).

The clip counts it reports are the ones ``test_store_reuse.py`` and ``test_workflow.py``
check; here: its configuration is a valid study, added videos are new content under new
names, and the table is read from the right places.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from dimcollapse.data.content import file_digest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("rerun_bench", REPO / "benchmarks" / "rerun_bench.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
sys.modules["rerun_bench"] = bench
spec.loader.exec_module(bench)


def test_config_is_a_valid_study_with_both_instances(tmp_path: Path) -> None:
    from snakemake.utils import validate

    from dimcollapse.config.instances import model_instances

    ckpt = bench.write_checkpoint(tmp_path / "w" / "a.pth.tar", seed=1)
    cfg = bench.study_config(tmp_path / "videos", ckpt, shards=2, crop=64, batch_size=8)
    validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))
    models = model_instances(cfg)
    assert tuple(models) == bench.INSTANCES
    assert models["dpc_ckpt"].checkpoint == str(ckpt) and models["dpc_seeded"].untrained


def test_added_videos_are_new_files_with_new_content(tmp_path: Path) -> None:
    from dimcollapse.data.demo import generate_demo

    videos = tmp_path / "videos"
    before = generate_demo(videos, seed=0, videos_per_class=1, **bench.SHORT)
    added = bench.add_videos(videos, tmp_path / "scratch", 2, seed=1)
    assert len(added) == 2 and not set(added) & set(before)
    assert all(p.is_relative_to(videos / "val") for p in added)
    assert not {file_digest(p) for p in added} & {file_digest(p) for p in before}


def test_job_count_and_table() -> None:
    out = "Job stats:\njob               count\n--------------  -------\nextract               6\nmerge_features    2\n"
    assert bench.extract_jobs(out) == 6 and bench.extract_jobs("Nothing to be done.") == 0
    steps = [bench.Step("clean run", 12.34, 4, {"dpc_seeded": 5, "dpc_ckpt": 5}, {"dpc_seeded": 0, "dpc_ckpt": 0}),
             bench.Step("+1 videos", 3.0, 6, {"dpc_seeded": 1, "dpc_ckpt": 1}, {"dpc_seeded": 5, "dpc_ckpt": 5})]
    lines = bench.format_table(steps, 5)
    assert lines[2].split() == ["clean", "run", "12.3", "4", "5/0", "5/0"]
    assert lines[3].split() == ["+1", "videos", "3.0", "6", "1/5", "1/5"]
