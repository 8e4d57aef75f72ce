"""``dimcollapse store list|prune|verify`` on small stores written by the package itself;
the workflow's own results are checked in test_any_model_workflow.py and test_workflow.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dimcollapse.cli import main
from dimcollapse.data.cache_files import marker_path
from dimcollapse.data.clip_cache import build_clip_cache
from dimcollapse.extraction.shards import ShardResult
from dimcollapse.atomic import write_json
from dimcollapse.extraction.store import FeatureStore, InstanceStore, clip_keys
from dimcollapse.failures import write_failures
from dimcollapse.results_stores import Usage, prune_plan
from dimcollapse.workflow_lock import locks_holding

VIDEO = Path("/work/shared/testdata/videos/tree.avi")


def write_key(store: Path, identity: dict, rows: int = 4, used_by: dict | None = None) -> Path:
    """A store key with ``rows`` clips in two segments."""
    instance = FeatureStore(store).instance(identity, used_by)
    for part in np.array_split(np.arange(rows), 2):
        keys = clip_keys([f"c{r}" for r in part], [2.0] * len(part), [25.0] * len(part))
        result = ShardResult(part, np.ones(len(part), bool), {"representation": np.ones((len(part), 3), np.float32)}, [])
        instance.add(keys, result, [f"v{r}" for r in part])
    return instance.dir


def identity(method: str = "DPC", sha: str | None = None) -> dict:
    return {"method": method, "checkpoint_sha256": sha, "protocol": {"key": "dpc-1", "name": "dpc"},
            "frames": "clip cache", "precision": "fp32", "numerics_version": 2, "build_options": {}}


def store_cmd(*args: str, results: Path) -> int:
    return main(["store", *args, "--results", str(results)])


def test_list_shows_each_key_and_cache_old_keys_with_what_is_known(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    new = write_key(results / "store", identity(sha="ab" * 32), used_by={"instance": "mine@20", "checkpoint": "runs/e20.pth"})
    old = write_key(results / "store", identity("SimCLR"))
    (old / "instance.json").unlink()  # a key written before instance.json existed
    rows = [{"id": "t", "path": str(VIDEO), "duration": 1.0, "fps": 25.0}]
    build_clip_cache(rows, "paper", results / "clips" / "ds" / "slow-1", workers=0)
    assert store_cmd("list", results=results) == 0
    out = capsys.readouterr().out
    assert "2 instance keys" in out and new.name in out and old.name in out
    line = next(l for l in out.splitlines() if new.name in l)
    for text in ("mine@20", "DPC", "e20.pth", "abababababab", "dpc-1", "clip cache", "fp32"):
        assert text in line
    assert "slow-1" in out and "complete" in out
    assert store_cmd("list", "--json", results=results) == 0
    listed = json.loads(capsys.readouterr().out)
    by_key = {k["key"]: k for k in listed["store"]}
    assert by_key[new.name]["clips"] == 4 and by_key[new.name]["bytes"] > 0 and by_key[new.name]["last_written"]
    assert by_key[old.name]["clips"] == 4 and "method" not in by_key[old.name]
    assert listed["clips"][0]["clips"] == 1 and listed["clips"][0]["dataset"] == "ds"


def test_verify_names_a_truncated_segment_and_repair_sets_it_aside(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    key = write_key(results / "store", identity())
    assert store_cmd("verify", results=results) == 0
    segment = sorted((key / "data").glob("*.npz"))[0]
    segment.write_bytes(segment.read_bytes()[:-10])
    capsys.readouterr()
    assert store_cmd("verify", results=results) == 1
    assert str(segment) in capsys.readouterr().out and segment.exists()  # verify alone changes nothing
    assert store_cmd("verify", "--repair", results=results) == 0
    assert not segment.exists() and (key / "quarantine" / "data" / segment.name).exists()
    assert store_cmd("verify", results=results) == 0


def test_verify_finds_a_damaged_clip_cache(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    cache = results / "clips" / "ds" / "slow-1"
    build_clip_cache([{"id": "t", "path": str(VIDEO), "duration": 1.0, "fps": 25.0}], "paper", cache, workers=0)
    marker_path(cache).write_text("{}")
    (cache / "index.json").write_text('[{"id": ')
    assert store_cmd("verify", results=results) == 1
    assert str(cache / "index.json") in capsys.readouterr().out
    assert store_cmd("verify", "--repair", results=results) == 0
    assert not cache.exists() and marker_path(cache).exists()  # the next workflow run drops it
    assert (cache.parent / "quarantine" / "slow-1" / "index.json").exists()


def cache_files(clips: Path, key: str, *, folder: str | None = None) -> None:
    """The files the clip cache rule leaves for sampling ``key`` (folder ``folder``, default ``key``)."""
    folder = folder or key
    (clips / folder).mkdir(parents=True)
    (clips / folder / "frames.u8").write_bytes(b"x" * 10)
    write_json(clips / folder / "meta.json", {"format": 3, "sampling_key": key, "complete": not folder.startswith(".")})
    if folder == key:
        write_json(clips / f"{key}.cache.json", {"cache": str(clips / key), "sampling_key": key, "rows": 1})
        write_failures(clips / f"{key}.failures.csv", [])


def test_prune_plan_keeps_what_is_used_and_keys_it_cannot_rule_out(tmp_path: Path) -> None:
    results = tmp_path / "results"
    used = write_key(results / "store", identity("DPC"))
    unused = write_key(results / "store", identity("SimCLR"))
    maybe = write_key(results / "store", identity("custom", sha="cd" * 32))
    clips = results / "clips" / "ds"
    for key, folder in (("slow-1", None), ("slow-2", None), ("slow-2", ".slow-2.partial")):
        cache_files(clips, key, folder=folder)
    (results / "clips" / "gone").mkdir()  # a dataset no config has

    usage = Usage({used.name}, {("ds", "slow-1")}, unresolved={"mine@5": "custom"})
    plan = prune_plan(results, usage)
    assert {p.path.relative_to(results).as_posix() for p in plan.removals} == {
        f"store/{unused.name}", "clips/ds/slow-2", "clips/ds/.slow-2.partial",
        "clips/ds/slow-2.cache.json", "clips/ds/slow-2.failures.csv"}
    assert len(plan.kept) == 1 and maybe.name in plan.kept[0] and "mine@5" in plan.kept[0]
    assert next(p for p in plan.removals if p.path == unused).bytes > 0
    assert plan.foreign == []


def study_folder(tmp_path: Path) -> Path:
    """A project folder with a config that uses one seeded DPC instance; returns its results folder."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"datasets": {"demo": {"layout": "kinetics", "root": "v"}},
                                                          "models": {"a": {"method": "DPC", "seed": 1}}}))
    return tmp_path / "results"


def test_prune_leaves_and_lists_what_dimcollapse_did_not_make(tmp_path: Path, capsys) -> None:
    """The issue's trial: a thesis folder in the store and holiday videos beside the clip caches."""
    results = study_folder(tmp_path)
    unused = write_key(results / "store", identity("SimCLR"))
    thesis = results / "store" / "my_thesis_data"
    thesis.mkdir()
    (thesis / "draft.txt").write_text("chapter 1\n")
    lookalike = results / "store" / ("ab" * 12)  # named like a key, with the store's folders, and a stranger
    for sub in ("data", "keys"):
        (lookalike / sub).mkdir(parents=True)
    (lookalike / "data" / "notes.txt").write_text("mine")
    holiday = results / "clips" / "demo" / "holiday_videos"
    holiday.mkdir(parents=True)
    (holiday / "v.txt").write_text("beach")
    (results / "clips" / "demo" / "plan.cache.json").write_text('{"mine": true}')  # our suffix, not our marker
    cache_files(results / "clips" / "demo", "slow-9")  # a cache of ours that no config uses

    assert store_cmd("prune", results=results) == 0
    out = capsys.readouterr().out
    for path in (thesis, lookalike, holiday, results / "clips" / "demo" / "plan.cache.json"):
        assert path.exists(), path
        assert f"{path}: " in out and "left alone" in out.split(f"{path}: ")[1].splitlines()[0], path
    assert "not made by dimcollapse, left alone" in out and "data/notes.txt" in out
    assert (thesis / "draft.txt").read_text() == "chapter 1\n" and (holiday / "v.txt").exists()
    assert not unused.exists() and not (results / "clips" / "demo" / "slow-9").exists()
    assert not (results / "clips" / "demo" / "slow-9.cache.json").exists()
    assert "removed 4 items" in out
    assert store_cmd("list", "--json", results=results) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {f["path"] for f in listed["foreign"]} >= {str(thesis), str(holiday)}
    assert not (thesis / "data").exists()  # listing creates nothing in a folder it does not own


def test_quarantine_survives_a_plain_prune_and_goes_with_quarantine(tmp_path: Path, capsys) -> None:
    results = study_folder(tmp_path)
    unused = write_key(results / "store", identity("SimCLR"))
    segment = sorted((unused / "data").glob("*.npz"))[0]
    InstanceStore(unused).quarantine(segment, "BadZipFile: test", "its clips are computed again")
    held = unused / "quarantine" / "data" / segment.name
    clips = results / "clips" / "demo"
    cache_files(clips, "slow-9")
    (clips / "quarantine").mkdir()
    (clips / "slow-9").rename(clips / "quarantine" / "slow-9")  # as quarantine_cache moves a damaged cache

    assert store_cmd("prune", results=results) == 0
    out = capsys.readouterr().out
    assert held.exists() and (clips / "quarantine" / "slow-9" / "frames.u8").exists()
    assert not list((unused / "data").iterdir()) and not list((unused / "keys").iterdir())  # the key's data went
    assert "its quarantine/ is kept" in out and "--quarantine" in out
    assert store_cmd("list", results=results) == 0
    assert "Not made by dimcollapse" not in capsys.readouterr().out  # what is left is still the store's
    assert store_cmd("prune", results=results) == 0  # a second plain prune has nothing of that key to remove
    assert held.exists() and "its quarantine/ is kept" not in capsys.readouterr().out

    assert store_cmd("prune", "--quarantine", results=results) == 0
    out = capsys.readouterr().out
    assert not unused.exists() and not (clips / "quarantine" / "slow-9").exists()
    assert "quarantined clip cache" in out


def test_prune_refuses_while_a_snakemake_run_holds_the_results(tmp_path: Path, capsys) -> None:
    """Locks as Snakemake itself writes them (file and database back ends)."""
    from snakemake.persistence.db import DbPersistence
    from snakemake.persistence.file import FilePersistence

    workdir = tmp_path / "study"
    results = workdir / "results"
    key = write_key(results / "store", identity("SimCLR"))  # no config uses it
    (workdir / "config.yaml").write_text(yaml.safe_dump({"datasets": {"d": {"layout": "kinetics", "root": "v"}},
                                                        "models": {"a": {"method": "DPC", "seed": 1}}}))
    for backend in (FilePersistence, DbPersistence):
        run = backend(path=workdir / ".snakemake")
        run._write_locks("output", ["results/metrics.csv"])
        assert locks_holding(results, workdir) and locks_holding(results.resolve(), workdir)
        assert store_cmd("prune", results=results) == 1
        assert "snakemake --unlock" in capsys.readouterr().err and key.exists()
        assert store_cmd("prune", "--dry-run", results=results) == 0  # a dry run removes nothing: allowed
        assert str(key) in capsys.readouterr().out
        run._delete_locks()
        assert not locks_holding(results, workdir)
    other = FilePersistence(path=workdir / ".snakemake")
    other._write_locks("output", ["elsewhere/metrics.csv"])  # a run of another results folder
    assert not locks_holding(results, workdir)
    assert store_cmd("prune", results=results) == 0 and not key.exists()
    assert "removed 1 items" in capsys.readouterr().out


def test_prune_reports_a_bad_config_in_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.yaml").write_text("models: {a: {method: DPC, sede: 1}}\n")
    (tmp_path / "results").mkdir()
    assert store_cmd("prune", results=tmp_path / "results") == 2
    err = capsys.readouterr().err
    assert err.startswith("dimcollapse: error: ") and "sede" in err and "config.yaml" in err


@pytest.mark.parametrize("action", ["list", "verify", "prune"])
def test_a_missing_results_folder_is_an_error_naming_it(action: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        store_cmd(action, results=tmp_path / "reslts")
    assert exit_.value.code == 2
    assert f"{tmp_path / 'reslts'}: no such folder" in capsys.readouterr().err
