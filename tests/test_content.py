"""Content hashes of videos: the manifest's ``content`` column and its (path, size, mtime) cache."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

import dimcollapse.data.content as content
from dimcollapse.data.content import ContentHashCache, file_digest
from dimcollapse.data.demo import TINY, generate_demo
from dimcollapse.data.manifest import build_manifest


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("content")
    generate_demo(root, seed=5, **TINY)
    return root


def _cfg(root: Path) -> dict:
    return {"layout": "kinetics", "root": str(root), "split": "val"}


def test_digest_is_blake2b_of_the_bytes(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(os.urandom(3 * 2**20 + 5))  # several read blocks
    assert file_digest(f) == hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    real = content.file_digest

    def counted(path):
        read.append(str(path))
        return real(path)

    monkeypatch.setattr(content, "file_digest", counted)
    return read


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for i in range(4):
        f = tmp_path / "v" / f"{i}.mp4"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(bytes([i]) * 1000)
        files.append(str(f))
    cache = tmp_path / "cache"
    read = _counting(monkeypatch)
    first = ContentHashCache(cache).digests(files)
    assert sorted(read) == sorted(files)
    read.clear()
    assert ContentHashCache(cache).digests(files) == first and read == []  # a new process: nothing read
    os.utime(files[0])  # touched: read again, same digest
    Path(files[1]).write_bytes(b"edited" * 100)  # new content: new digest
    again = ContentHashCache(cache).digests(files)
    assert sorted(read) == sorted(files[:2])
    assert again[0] == first[0] and again[1] != first[1] and again[2:] == first[2:]


def test_digests_of_other_hashing_code_are_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit of the hashing module may change what a digest means: the cache keys its
    entries by that code's version too, so every file is read again."""
    f = tmp_path / "v.mp4"
    f.write_bytes(b"video" * 100)
    cache = tmp_path / "cache"
    read = _counting(monkeypatch)
    ContentHashCache(cache).digests([str(f)])
    read.clear()
    ContentHashCache(cache).digests([str(f)])
    assert read == []
    monkeypatch.setattr(content, "HASHING_CODE", "edited")
    ContentHashCache(cache).digests([str(f)])
    assert read == [str(f)]


def _hash_in_process(args: tuple[str, list[str]]) -> list[str]:
    cache, files = args
    return ContentHashCache(cache).digests(files)


def test_concurrent_processes_share_the_cache_and_compaction_keeps_entries(tmp_path: Path) -> None:
    files = []
    for i in range(40):
        f = tmp_path / "v" / f"{i}.mp4"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(os.urandom(100))
        files.append(str(f))
    cache = str(tmp_path / "cache")
    jobs = [(cache, files[i : i + 4]) for i in range(0, 40, 2)]  # 20 writers, overlapping files
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_hash_in_process, jobs)
    expected = {f: file_digest(f) for f in files}
    for (_, chunk), got in zip(jobs, results):
        assert got == [expected[f] for f in chunk]
    merged = ContentHashCache(cache)
    assert {p: e[1] for p, e in merged.entries.items()} == expected
    assert not list(Path(cache).glob("*.tmp"))
    for _ in range(content.COMPACT_AT + 1):  # enough new files to trigger a compaction
        Path(files[0]).write_bytes(os.urandom(100))
        merged.digests(files)
    assert len(list(Path(cache).glob("*.json"))) < content.COMPACT_AT
    assert ContentHashCache(cache).entries == merged.entries


def test_manifest_content_follows_bytes_not_names_or_mtimes(videos: Path, tmp_path: Path) -> None:
    frame, _ = build_manifest(_cfg(videos), progress=False, hash_cache=tmp_path / "cache")
    assert frame["content"].tolist() == [file_digest(p) for p in frame["path"]]
    assert frame["content"].is_unique
    copy = tmp_path / "copy"
    shutil.copytree(videos, copy)  # new paths and mtimes, same bytes
    for f in copy.rglob("*.*"):
        os.utime(f, (1, 1))
    moved, _ = build_manifest(_cfg(copy), progress=False, hash_cache=tmp_path / "cache")
    assert moved["content"].tolist() == frame["content"].tolist()
    uncached, _ = build_manifest(_cfg(videos), progress=False)
    assert uncached["content"].tolist() == frame["content"].tolist()
