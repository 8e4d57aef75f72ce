"""What every stage module shares: logging set-up, the study's labels and colours in
figures, and reading per-space JSON records."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dimcollapse.logs import setup_logging

log = logging.getLogger("dimcollapse.stages")


def start(smk: Any) -> None:
    setup_logging(smk.log[0] if smk.log else None)
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def figure_view(view: dict[str, Any], subject: str | None = None) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels, colours (same per method in every figure) and title of the study's figures.

    A study whose models are all untrained says so in every title; in one that mixes
    weights, the labels mark the untrained ones (:func:`dimcollapse.config.display.display_labels`).
    """
    from dimcollapse.analysis.figures import method_colors
    from dimcollapse.models.registry import UNTRAINED

    models = view["models"]
    labels = {m: spec["label"] for m, spec in models.items()}
    title = f"{view['title']}: {subject}" if subject else view["title"]
    if models and all(spec["untrained"] for spec in models.values()):
        title = f"{title} — {UNTRAINED}"
    return labels, method_colors(list(labels.values())), title


def curves_by_label(paths: list[str], labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{label: {space: curves}}`` from ``results/spectra/<dataset>/<method>/<space>.csv`` paths."""
    from pathlib import Path

    from dimcollapse.analysis.tables import read_spectrum_csv

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        p = Path(path)
        out.setdefault(labels[p.parent.name], {})[p.stem] = read_spectrum_csv(p)
    return out


def json_rows(paths: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    import json

    rows = {}
    for path in paths:
        with open(path) as fh:
            row = json.load(fh)
        rows[(row["dataset"], row["method"], row["space"])] = row
    return rows


def progress_logger(verb: str, every_s: float = 10.0) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that logs at most every ``every_s`` seconds."""
    import time

    start = last = time.perf_counter()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            last = now
            rate = done / max(now - start, 1e-9)
            log.info("%s %d/%d clips, %.2f clips/s, ETA %.0f s", verb, done, total, rate,
                     (total - done) / rate if rate > 0 else float("inf"))

    return progress
