"""The download_checkpoint rule and the extract stage with a local checkpoint file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from dimcollapse.models.download import fetch_checkpoint
from workflow_helpers import snakemake, write_config

TARGET = "resources/checkpoints/moco/MoCo.pyth"


def _config(source: Path) -> dict:
    return {
        "title": "checkpoint copies",
        "datasets": {"d": {"layout": "folder", "root": "videos"}},
        "models": {"moco": {"method": "MoCo", "checkpoint": str(source)}},
    }


@pytest.mark.slow
def test_a_local_checkpoint_is_copied_again_when_replaced_and_a_missing_one_is_not_retried(tmp_path: Path) -> None:
    source = tmp_path / "mine" / "MoCo.pyth"
    source.parent.mkdir()
    cfg = write_config(tmp_path / "config.yaml", _config(source))
    run = ("--configfile", str(cfg), "--cores", "1", TARGET)

    missing = snakemake(tmp_path, *run, check=False)
    assert missing.returncode != 0
    log = (tmp_path / "logs/download_checkpoint/moco/MoCo.pyth.log").read_text()
    assert "no such file" in log and "Trying to restart" not in missing.stdout + missing.stderr
    assert log.count("rule download_checkpoint") == 1  # one attempt: a missing file stays missing

    source.write_bytes(b"first version, truncated")
    snakemake(tmp_path, *run)
    assert (tmp_path / TARGET).read_bytes() == b"first version, truncated"
    assert "Nothing to be done" in (p := snakemake(tmp_path, *run, "--dry-run")).stdout + p.stderr

    source.write_bytes(b"the fixed file")  # same path, new content
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    snakemake(tmp_path, *run)
    assert (tmp_path / TARGET).read_bytes() == b"the fixed file"


def test_extract_errors_about_a_copied_checkpoint_name_the_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimcollapse.stages import extract
    from dimcollapse.models.checkpoints import CheckpointError

    source = tmp_path / "mine" / "MoCo.pyth"
    source.parent.mkdir()
    source.write_bytes(b"not a checkpoint")
    copy = str(tmp_path / "resources" / "MoCo.pyth")
    fetch_checkpoint(str(source), copy, progress=False)

    def fail(**kw: object) -> None:
        raise CheckpointError(f"{kw['checkpoint']}: not a readable PyTorch checkpoint (16 bytes; truncated or corrupt?)")

    fake = ModuleType("dimcollapse.extraction.extract")
    fake.extract_shard = fail
    monkeypatch.setitem(sys.modules, "dimcollapse.extraction.extract", fake)
    inputs = SimpleNamespace(manifest="m.csv", checkpoint=copy, get=lambda k, d=None: {"checkpoint": copy}.get(k, d))
    wildcards = SimpleNamespace(dataset="d", method="moco", shard="0", nshards="1", items=lambda: [])
    smk = SimpleNamespace(
        log=[str(tmp_path / "extract.log")], rule="extract", threads=1, wildcards=wildcards,
        resources=SimpleNamespace(device="cpu", batch_size=2, loader_workers=0, flush_every=8, gpu_lock_dir=""),
        params=SimpleNamespace(job={}, max_rel_error=0.01), input=inputs, output=["out.npz"],
    )
    with pytest.raises(CheckpointError) as err:
        extract.extract(smk)
    assert str(err.value).startswith(f"{source} (copied to {copy}): not a readable PyTorch checkpoint")
    assert f"Fix or replace {source}" in str(err.value)
