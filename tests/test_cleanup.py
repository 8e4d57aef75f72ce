"""What a killed job leaves behind is cleaned on the next run, and nothing a live job needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dimcollapse.atomic import REMOTE_STALE_S, clean_stray

REPO = Path(__file__).resolve().parents[1]

_WRITER = """
import sys, time
from dimcollapse.atomic import atomic_path
with atomic_path(sys.argv[1], suffix=".npz") as tmp:
    tmp.write_bytes(b"half written")
    print("writing", flush=True)
    time.sleep(600)
"""


def _start_writer(final: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(final)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    return child


def test_temporaries_of_killed_writers_and_empty_partial_folders_are_removed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    killed = _start_writer(results / "features" / "a.npz")
    live = _start_writer(results / "store" / "x" / "keys" / "b.npz")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        (killed_tmp,) = (results / "features").glob("*.tmp")
        (live_tmp,) = (results / "store" / "x" / "keys").glob("*.tmp")
        # Temporaries of another host: kept while recent, removed when stale.
        fresh = results / "store" / ".c.npz@othernode@123@abcd.npz.tmp"
        stale = results / "store" / ".d.npz@othernode@123@abcd.npz.tmp"
        for f in (fresh, stale):
            f.write_bytes(b"x")
        old = time.time() - REMOTE_STALE_S - 60
        os.utime(stale, (old, old))
        # Interrupted directory builds: empty ones go, ones with progress stay; so do the
        # empty folders the old partial store left behind.
        (results / "clips" / "ds" / ".paper.partial").mkdir(parents=True)
        progress = results / "clips" / "ds" / ".dpc.partial"
        progress.mkdir()
        (progress / "progress.jsonl").write_text("{}\n")
        (results / ".partial" / "ds" / "simclr").mkdir(parents=True)
        keep_dir = results / "features" / "ds" / "empty"
        keep_dir.mkdir(parents=True)

        assert clean_stray(results) == (2, 4)
        assert not killed_tmp.exists() and not stale.exists()
        assert live_tmp.exists() and fresh.exists()
        assert not (results / "clips" / "ds" / ".paper.partial").exists() and progress.is_dir()
        assert not (results / ".partial").exists()
        assert keep_dir.is_dir()  # an empty folder that is not a partial build is not ours to remove
    finally:
        live.kill()
        live.wait(30)
