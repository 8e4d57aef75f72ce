"""Logging for rule scripts: everything a stage says goes to the rule's log file."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path


def setup_logging(log_file: str | os.PathLike[str] | None, level: int = logging.INFO) -> None:
    """Send log records, warnings and uncaught exceptions to ``log_file`` (and stderr).

    Snakemake shows the log of a failed job (``--show-failed-logs``), so the traceback
    of an error must land there too.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

    def excepthook(kind, value, tb):  # type: ignore[no-untyped-def]
        logging.getLogger("dimcollapse").critical("stage failed", exc_info=(kind, value, tb))

    sys.excepthook = excepthook
