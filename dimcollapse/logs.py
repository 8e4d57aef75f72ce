"""Logging for rule scripts: everything a stage says goes to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from types import TracebackType

from dimcollapse.errors import KnownError, one_line

#: Set on a log record that only the log file should get (the traceback of a known error).
_FILE_ONLY = "file_only"


def setup_logging(log_file: str | os.PathLike[str] | None, level: int = logging.INFO) -> None:
    """Send log records, warnings and uncaught exceptions to ``log_file`` (and stderr).

    A job stopped by a :class:`~dimcollapse.errors.KnownError` ends with one line on
    stderr, ``dimcollapse: error: <file>: <problem>; <what to do>``, which is what the
    Snakemake output shows of it; its traceback goes to ``log_file`` only, before the
    same line. Any other exception is a bug: its traceback goes to both.
    """
    stderr = logging.StreamHandler(sys.stderr)
    stderr.addFilter(lambda record: not getattr(record, _FILE_ONLY, False))
    handlers: list[logging.Handler] = [stderr]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    log = logging.getLogger("dimcollapse")

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if not isinstance(value, KnownError):
            log.critical("stage failed", exc_info=(kind, value, tb))
            return
        line = one_line(value)
        log.critical("stage failed: %s", line, exc_info=(kind, value, tb), extra={_FILE_ONLY: True})
        log.error("%s", line, extra={_FILE_ONLY: True})
        where = f" (traceback in {log_file})" if log_file else ""
        print(f"dimcollapse: error: {line}{where}", file=sys.stderr, flush=True)

    sys.excepthook = excepthook
