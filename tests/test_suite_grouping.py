"""The pinned pytest and pytest-xdist keep an ``xdist_group`` on one worker.

``make test`` runs ``-n 2 --dist loadgroup`` so that each slow group (the tiny workflow
study, the Slurm cluster, ...) builds its session fixtures once. A pytest/xdist pair that
disagrees (pytest 9.2 renamed the node-id attribute xdist tags) ignores the groups without a
word: both workers build the same study and the suite takes minutes longer.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

GROUPED_TESTS = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import pytest

    OUT = Path(__file__).parent / "workers"


    @pytest.mark.xdist_group("together")
    @pytest.mark.parametrize("n", range(6))
    def test_grouped(n):
        time.sleep(0.2)  # long enough that an idle second worker would take some of them
        (OUT / f"grouped-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"])


    @pytest.mark.parametrize("n", range(6))
    def test_free(n):
        time.sleep(0.2)
        (OUT / f"free-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"])
    """
)


def test_a_group_runs_on_one_worker_and_the_rest_is_spread(tmp_path: Path) -> None:
    (tmp_path / "test_groups.py").write_text(GROUPED_TESTS)
    (tmp_path / "workers").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider",
         "test_groups.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    workers = {p.name: p.read_text() for p in (tmp_path / "workers").iterdir()}
    assert len(workers) == 12
    grouped = {w for name, w in workers.items() if name.startswith("grouped-")}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}"
    assert set(workers.values()) == {"gw0", "gw1"}, "both workers should have had work"
