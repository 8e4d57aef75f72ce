"""Stages of ``rules/trends.smk``: metrics against depth and against training progress."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.stages.common import figure_view, start

log = logging.getLogger("dimcollapse.stages")


def _trend_rows(smk: Any) -> list[dict[str, Any]]:
    """Metric rows of the rule's inputs, each labelled with its instance's display name."""
    from dimcollapse.analysis.tables import read_metrics_json

    labels = {m: spec["label"] for m, spec in smk.params.trends["view"]["models"].items()}
    return [{**row, "label": labels[row["method"]]} for row in map(read_metrics_json, smk.input.metrics)]


def layer_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.trends import layer_figure as draw

    start(smk)
    trends = smk.params.trends
    labels, colors, title = figure_view(trends["view"], f"{smk.wildcards.dataset}, metrics against depth")
    depth = {labels[m]: spaces for m, spaces in trends["depth"].items()}
    fig = draw(_trend_rows(smk), depth, title=title, colors=colors)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=trends["view"]["figures"]["dpi"])


def series_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import method_colors, save_figure
    from dimcollapse.analysis.trends import series_figure as draw

    start(smk)
    trends = smk.params.trends
    _, _, title = figure_view(trends["view"], f"{smk.wildcards.dataset}, metrics against training progress")
    series = {name: [(order, m) for order, m in points] for name, points in trends["series"].items()}
    keys = set(trends["series_key"].values())
    fig = draw(_trend_rows(smk), series, order_label=keys.pop() if len(keys) == 1 else "training progress",
               title=title, colors=method_colors(list(series)))
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=trends["view"]["figures"]["dpi"])
