"""Known errors end a job (or a command) with one line; a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dimcollapse.errors import KnownError, one_line
from dimcollapse.failures import VideoError

JOB = """
import sys
from dimcollapse.logs import setup_logging
import logging
setup_logging(sys.argv[1])
logging.getLogger("dimcollapse.stages").info("rule extract, wildcards {}")
{raise_}
"""


def run_job(tmp_path: Path, raise_: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """A rule script's process that logs like a stage and dies of ``raise_``."""
    log = tmp_path / "logs" / "job.log"
    code = JOB.replace("{raise_}", raise_)
    proc = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    return proc, log.read_text()


def test_a_known_error_is_one_line_on_stderr_and_its_traceback_is_in_the_log(tmp_path: Path) -> None:
    proc, log = run_job(tmp_path, "from dimcollapse.failures import VideoError\n"
                                  "raise VideoError('/videos/a.mp4', 'decode', 'no frame decodes')")
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert last == (f"dimcollapse: error: /videos/a.mp4: decode: no frame decodes; {VideoError.advice} "
                    f"(traceback in {tmp_path / 'logs' / 'job.log'})")
    assert "Traceback" not in proc.stderr and "rule extract" in proc.stderr  # the job's log lines still show
    assert "Traceback (most recent call last)" in log and log.rstrip().splitlines()[-1].endswith(
        f"/videos/a.mp4: decode: no frame decodes; {VideoError.advice}")


def test_a_bug_keeps_its_traceback_on_stderr(tmp_path: Path) -> None:
    proc, log = run_job(tmp_path, "raise ZeroDivisionError('a bug')")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "ZeroDivisionError: a bug" in proc.stderr
    assert "ZeroDivisionError: a bug" in log


@pytest.mark.parametrize("message, line", [
    ("a.npy: all 5 rows are identical", "a.npy: all 5 rows are identical"),
    ("config.yaml: two problems:\n  first\n  second\n", "config.yaml: two problems:; first; second"),
])
def test_one_line_joins_lines_and_adds_the_advice_once(message: str, line: str) -> None:
    assert one_line(KnownError(message)) == line

    class Advised(KnownError):
        advice = "do this"

    assert one_line(Advised(message)) == f"{line}; do this"
    assert one_line(Advised(f"{message} then do this")).count("do this") == 1
