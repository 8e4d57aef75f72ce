"""The feature store on its own: entries, spaces, identity, concurrent writers, SIGKILL, scale."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dimcollapse.extraction.numerics import NUMERICS_VERSION
from dimcollapse.extraction.shards import ShardResult
from dimcollapse.extraction.store import (
    FeatureStore,
    InstanceStore,
    clip_keys,
    identity_key,
    instance_identity,
)
from dimcollapse.failures import Failure

REPO = Path(__file__).resolve().parents[1]


def keys_of(rows: np.ndarray) -> np.ndarray:
    return clip_keys([f"content-{r}" for r in rows], [3.0] * len(rows), [25.0] * len(rows))


def result_of(rows: np.ndarray, spaces: dict[str, int], failed: set[int] = frozenset()) -> ShardResult:
    """Clip ``r`` has features ``r + j/1000`` in column ``j`` (zeros when failed)."""
    ok = np.array([r not in failed for r in rows], bool)
    feats = {s: (rows[:, None] + np.arange(d)[None] / 1000).astype(np.float32) * ok[:, None]
             for s, d in spaces.items()}
    failures = [Failure(f"id{r}", f"/v/{r}.mp4", "decode", f"broken {r}") for r in rows if r in failed]
    return ShardResult(rows.astype(np.int64), ok, feats, failures, short=rows % 3 == 0)


def add(store: InstanceStore, rows: np.ndarray, spaces: dict[str, int], failed: set[int] = frozenset()) -> None:
    store.add(keys_of(rows), result_of(rows, spaces, failed), [f"id{r}" for r in rows])


def read_all(store: InstanceStore, rows: np.ndarray, spaces: tuple[str, ...]) -> ShardResult:
    found, unreadable = store.read(store.lookup(keys_of(rows), spaces), rows,
                                   [f"id{r}" for r in range(10**4)], [f"/v/{r}.mp4" for r in range(10**4)], spaces)
    assert len(unreadable) == 0
    order = np.argsort(found.rows)
    return ShardResult(found.rows[order], found.ok[order], {s: v[order] for s, v in found.features.items()},
                       found.failures, found.short[order])


def test_entries_round_trip_with_failures(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)
    add(store, np.arange(0, 6), {"representation": 4}, failed={2})
    add(store, np.arange(6, 9), {"representation": 4})
    lookup = store.lookup(keys_of(np.arange(12)), ("representation",))
    assert lookup.found.tolist() == [True] * 9 + [False] * 3
    # Queried under other row numbers (another dataset holding the same videos).
    rows = np.arange(100, 112)
    found, _ = store.read(lookup, rows, [f"x{r}" for r in range(200)], [f"/x/{r}" for r in range(200)],
                          ("representation",))
    order = np.argsort(found.rows)
    assert found.rows[order].tolist() == list(range(100, 109))
    assert found.ok[order].tolist() == [r != 2 for r in range(9)]
    assert found.short[order].tolist() == [r % 3 == 0 for r in range(9)]
    expected = result_of(np.arange(9), {"representation": 4}, failed={2}).features["representation"]
    assert np.array_equal(found.features["representation"][order], expected)
    assert found.failures == [Failure("x102", "/x/102", "decode", "broken 2")]


def test_an_entry_without_a_requested_space_counts_as_missing(tmp_path: Path) -> None:
    """Per-layer spaces and per-view arrays are more arrays per clip: asking for one that
    an entry lacks makes the clip missing; its recomputed entry (with every space) wins."""
    store = InstanceStore(tmp_path)
    add(store, np.arange(4), {"representation": 3})
    wanted = ("representation", "layer.blocks.2", "representation_views")
    assert not store.lookup(keys_of(np.arange(4)), wanted).found.any()
    add(store, np.arange(2), {"representation": 3, "layer.blocks.2": 5, "representation_views": 6})
    assert store.lookup(keys_of(np.arange(4)), wanted).found.tolist() == [True, True, False, False]
    assert store.lookup(keys_of(np.arange(4)), ("representation",)).found.all()
    got = read_all(store, np.arange(2), wanted)
    assert got.features["layer.blocks.2"].shape == (2, 5)
    # A stored failure satisfies any spaces: the video does not decode for this sampling.
    add(store, np.array([7]), {"representation": 3}, failed={7})
    assert store.lookup(keys_of(np.array([7])), wanted).found.all()
    failed = read_all(store, np.array([7]), wanted)
    assert failed.rows.tolist() == [7] and not failed.ok.any() and failed.failures[0].error == "broken 7"


def _job(**changes: object) -> dict:
    job = {
        "model": {"name": "a", "method": "DPC", "checkpoint": None, "config": None, "seed": 2},
        "protocol": {"name": "dpc", "crop_size": 64},
        "build_options": {"arch": "resnet18", "seed": 2},
        "precision": "fp32",
        "keep_views": False,
    }
    for key, value in changes.items():
        job[key] = value
    return job


def test_instance_identity_covers_what_changes_numbers_and_nothing_else(tmp_path: Path) -> None:
    ckpt, same, other = tmp_path / "a.pth", tmp_path / "copy" / "a.pth", tmp_path / "b.pth"
    same.parent.mkdir()
    ckpt.write_bytes(b"weights")
    same.write_bytes(b"weights")
    other.write_bytes(b"other weights")
    base = identity_key(instance_identity(_job(), str(ckpt)))
    # Name, checkpoint path and mtime, keep_views and layers read (more spaces, same
    # numbers): same key.
    os.utime(same, (1, 1))
    renamed = _job(model={**_job()["model"], "name": "b", "checkpoint": "/elsewhere/a.pth"}, keep_views=True,
                   build_options={"arch": "resnet18", "seed": 2, "layers": ["backbone.layer1"]})
    assert identity_key(instance_identity(renamed, str(same))) == base
    # Checkpoint content, build options (seed), sampling, precision: new keys.
    changed = [
        instance_identity(_job(), str(other)),
        instance_identity(_job(), None),
        instance_identity(_job(build_options={"arch": "resnet18", "seed": 3}), str(ckpt)),
        instance_identity(_job(protocol={"name": "dpc", "crop_size": 56}), str(ckpt)),
        instance_identity(_job(precision="bf16"), str(ckpt)),
    ]
    keys = {identity_key(i) for i in changed}
    assert len(keys) == len(changed) and base not in keys
    assert instance_identity(_job(), None)["numerics_version"] == NUMERICS_VERSION
    # Instances live in separate directories with a readable description.
    fs = FeatureStore(tmp_path / "store")
    assert fs.instance(changed[0]).dir != fs.instance(changed[1]).dir
    assert (fs.instance(changed[0]).dir / "instance.json").is_file()


def test_unpublished_files_are_invisible(tmp_path: Path) -> None:
    """What a killed writer can leave: a data file whose keys were never published, and
    temporary files. Readers see neither; compaction keeps published entries only."""
    store = InstanceStore(tmp_path)
    add(store, np.arange(3), {"representation": 2})
    (keys_file,) = (tmp_path / "keys").glob("*.npz")
    add(store, np.arange(3, 6), {"representation": 2})
    for f in (tmp_path / "keys").glob("*.npz"):
        if f != keys_file:
            f.unlink()  # as if killed between the data and the keys rename
    (tmp_path / "keys" / ".seg-x.npz@h@1@abc.npz.tmp").write_bytes(b"PK\x03\x04 torn")
    (tmp_path / "data" / ".seg-y.npz@h@1@abc.npz.tmp").write_bytes(b"torn")
    assert store.lookup(keys_of(np.arange(6)), ("representation",)).found.tolist() == [True] * 3 + [False] * 3
    add(store, np.arange(6, 8), {"representation": 2})
    assert store.compact(at_least=2)
    assert len(list((tmp_path / "keys").glob("*.npz"))) == 1
    assert store.lookup(keys_of(np.arange(8)), ("representation",)).found.tolist() == [True] * 3 + [False] * 3 + [True] * 2


def _writer(root: str, worker: int, segments: int) -> None:
    """One of several concurrent jobs: overlapping clips, compacting as it goes."""
    store = InstanceStore(root)
    for i in range(segments):
        start = worker * 50 + i * 10  # each worker overlaps the next one's clips
        add(store, np.arange(start, start + 20), {"representation": 8})
        store.lookup(keys_of(np.arange(start, start + 20)), ("representation",))
        store.compact(at_least=3)


def test_concurrent_writers_and_compactors_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # fork after torch initialised its threads can hang
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = np.arange(0, 3 * 50 + 14 * 10 + 20)
    got = read_all(InstanceStore(tmp_path), rows, ("representation",))
    assert got.rows.tolist() == rows.tolist()
    assert np.array_equal(got.features["representation"], result_of(rows, {"representation": 8}).features["representation"])
    assert not list(tmp_path.rglob("*.tmp"))


_KILLED_WRITER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_store import add, InstanceStore
store = InstanceStore({root!r})
for i in range(10**6):
    add(store, np.arange(i * 500, (i + 1) * 500), {{"representation": 2048}})
    if i % 3 == 2:
        store.compact(at_least=2)
"""


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_sigkill_leaves_no_torn_entry(tmp_path: Path, delay: float) -> None:
    """A writer killed at an arbitrary moment (4 MB segments, compactions): every entry a
    reader sees loads completely and holds the values that were written."""
    code = _KILLED_WRITER.format(tests=str(REPO / "tests"), root=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not list((tmp_path / "keys").glob("*.npz")):
        assert child.poll() is None and time.monotonic() < deadline, "the writer published nothing"
        time.sleep(0.01)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    store = InstanceStore(tmp_path)
    lookup = store.lookup(keys_of(np.arange(10**5)), ("representation",))
    n = int(lookup.found.sum())
    assert n > 0 and n % 500 == 0  # whole segments
    assert lookup.found.tolist() == [True] * n + [False] * (10**5 - n)
    got = read_all(store, np.arange(n), ("representation",))
    assert np.array_equal(got.features["representation"],
                          result_of(np.arange(n), {"representation": 2048}).features["representation"])


def test_a_million_clips_open_fast(tmp_path: Path) -> None:
    """10⁶ entries in 100 segments: a lookup of all of them is correct, and fast once the
    index is compacted (about 0.6 s here; the bound is generous for loaded machines)."""
    n, per = 10**6, 10**4
    rng = np.random.default_rng(0)
    keys = np.frombuffer(rng.bytes(16 * n), dtype="S16")
    store = InstanceStore(tmp_path)
    for s in range(n // per):
        rows = np.arange(s * per, (s + 1) * per)
        store.add(keys[rows], ShardResult(rows, np.ones(per, bool), {"representation": rows[:, None].astype(np.float32)},
                                          []), [""] * per)
    assert len(list((tmp_path / "keys").glob("*.npz"))) == 100
    assert store.compact()
    assert len(list((tmp_path / "keys").glob("*.npz"))) == 1
    query = np.concatenate([keys[rng.permutation(n)], np.frombuffer(rng.bytes(16 * 1000), dtype="S16")])
    t0 = time.perf_counter()
    lookup = InstanceStore(tmp_path).lookup(query, ("representation",))
    elapsed = time.perf_counter() - t0
    assert lookup.found[:n].all() and not lookup.found[n:].any()
    rows = rng.integers(0, n, 20)
    got, _ = store.read(store.lookup(query[rows], ("representation",)), rows, [""] * len(query), [""] * len(query),
                        ("representation",))
    expected = {int(r): int(np.flatnonzero(keys == query[r])[0]) for r in rows}  # the clip's original row
    assert {int(r): int(v) for r, v in zip(got.rows, got.features["representation"][:, 0])} == expected
    assert elapsed < 10, f"opening and searching 10^6 keys took {elapsed:.1f} s"


def truncate(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_a_torn_segment_is_quarantined_named_and_its_clips_missing(tmp_path: Path, caplog) -> None:
    store = InstanceStore(tmp_path)
    add(store, np.arange(0, 4), {"representation": 3})
    add(store, np.arange(4, 8), {"representation": 3})
    segment = sorted((tmp_path / "data").glob("*.npz"))[0]
    torn_rows = np.arange(0, 4) if np.load(tmp_path / "keys" / segment.name)["keys"][0] == keys_of(np.arange(1))[0] \
        else np.arange(4, 8)
    truncate(segment)
    rows = np.arange(8)
    lookup = store.lookup(keys_of(rows), ("representation",))
    assert lookup.found.all()  # the index does not know yet
    found, unreadable = store.read(lookup, rows, [f"id{r}" for r in rows], [f"/v/{r}" for r in rows],
                                   ("representation",))
    assert sorted(unreadable.tolist()) == torn_rows.tolist()
    assert sorted(found.rows.tolist()) == sorted(set(rows.tolist()) - set(torn_rows.tolist()))
    assert not segment.exists() and (tmp_path / "quarantine" / "data" / segment.name).exists()
    assert str(segment) in caplog.text and "quarantine" in caplog.text
    # From now on its clips are missing, and recomputing them makes them found again.
    assert store.lookup(keys_of(rows), ("representation",)).found.tolist() == [r not in torn_rows for r in rows]
    add(store, torn_rows, {"representation": 3})
    assert np.array_equal(read_all(store, rows, ("representation",)).features["representation"],
                          result_of(rows, {"representation": 3}).features["representation"])
    # Compaction drops the quarantined entries for good.
    assert store.compact(at_least=2)
    index = np.load(next((tmp_path / "keys").glob("*.npz")))
    assert len(index["keys"]) == 8 and segment.stem not in set(index["segments"][index["seg"]].astype(str))


def test_a_torn_index_file_or_a_vanished_segment_is_set_aside(tmp_path: Path, caplog) -> None:
    store = InstanceStore(tmp_path)
    add(store, np.arange(0, 4), {"representation": 3})
    add(store, np.arange(4, 8), {"representation": 3})
    first, second = sorted((tmp_path / "keys").glob("*.npz"))
    truncate(first, 0)
    found = store.lookup(keys_of(np.arange(8)), ("representation",)).found
    assert found.sum() == 4
    assert (tmp_path / "quarantine" / "keys" / first.name).exists() and str(first) in caplog.text
    # A segment an index names but that is gone (deleted by hand): a note, then a miss.
    (tmp_path / "data" / second.name).unlink()
    rows = np.arange(8)
    _, unreadable = store.read(store.lookup(keys_of(rows), ("representation",)), rows, [f"id{r}" for r in rows],
                               [f"/v/{r}" for r in rows], ("representation",))
    assert len(unreadable) == 4
    assert (tmp_path / "quarantine" / "data" / f"{second.stem}.missing").exists()
    assert not store.lookup(keys_of(rows), ("representation",)).found.any()


def test_instance_json_records_who_wrote_the_key(tmp_path: Path) -> None:
    identity = instance_identity(_job(), None)
    FeatureStore(tmp_path).instance(identity, {"instance": "a", "checkpoint": None})
    FeatureStore(tmp_path).instance(identity, {"instance": "b", "checkpoint": "ck/b.pth"})
    FeatureStore(tmp_path).instance(identity, {"instance": "a", "checkpoint": None})
    described = json.loads((tmp_path / identity_key(identity) / "instance.json").read_text())
    assert described["used_by"] == [{"instance": "a", "checkpoint": None}, {"instance": "b", "checkpoint": "ck/b.pth"}]
    assert identity_key({k: v for k, v in described.items() if k != "used_by"}) == identity_key(identity)
