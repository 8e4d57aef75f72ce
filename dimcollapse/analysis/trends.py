"""Collapse metrics along an axis: network depth (layer-wise spaces) and training progress
(checkpoint series).

Both figures answer "where/when does collapse set in?" with the same three numbers —
AUC of the paper's σ-based CEV, RankMe and α-ReQ — one panel per metric, one line per
model (or series), so a reader compares shapes rather than single values. Like
:mod:`dimcollapse.analysis.figures`, the functions take plain metric rows (the
``results/spectra/.../<space>.json`` dicts) and return a :class:`~matplotlib.figure.Figure`
built without pyplot.

Rank-limited points (N ≤ D, where the spectrum's tail is a sampling cliff rather than
collapse) are drawn hollow, so they are not mistaken for collapse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from dimcollapse.analysis.figures import METRIC_LABELS, method_colors
from dimcollapse.models.registry import space_layer

#: The metrics of both trend figures, in panel order.
TREND_METRICS = ("auc_sigma", "rankme", "alpha_req")
#: Line style per feature space in the series figure (layers share the dotted style).
SPACE_STYLES: dict[str, LineStyleType] = {"representation": "-", "embedding": "--"}
LAYER_STYLE: LineStyleType = ":"


def _value(row: Mapping[str, Any], metric: str) -> float:
    v = row.get(metric)
    return float(v) if v is not None else math.nan


def _panels(n: int, title: str | None, width: float = 4.2) -> tuple[Figure, Sequence[Any]]:
    fig = Figure(figsize=(width * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    if title:
        fig.suptitle(title, fontsize=13)
    return fig, axes


def _plot_line(ax: Any, xs: Sequence[float], rows: Sequence[Mapping[str, Any]], metric: str, *,
               color: str, style: LineStyleType = "-", label: str | None = None) -> None:
    ys = [_value(r, metric) for r in rows]
    ax.plot(xs, ys, linestyle=style, color=color, linewidth=1.6, label=label)
    for x, y, r in zip(xs, ys, rows):
        hollow = bool(r.get("rank_limited"))
        ax.plot([x], [y], marker="o", markersize=5, color=color,
                markerfacecolor="white" if hollow else color, linestyle="none")


def _note_if_empty(ax: Any, metric: str) -> None:
    """Say why a panel is empty instead of leaving blank axes (α-ReQ is undefined when the
    spectrum is shorter than its fit range, e.g. with few videos)."""
    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    if not any(math.isfinite(float(y)) for y in values):
        ax.text(0.5, 0.5, f"{METRIC_LABELS[metric]} undefined for every point\n(see the metrics table's warning)",
                transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.35")
        ax.set_yticks([])


def _legend(fig: Figure, handles: list[Any], labels: list[str], hollow: bool) -> None:
    if hollow:
        handles = handles + [Line2D([], [], marker="o", color="0.3", markerfacecolor="white", linestyle="none")]
        labels = labels + ["N ≤ D (rank-limited)"]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), fontsize=9, frameon=False)


def layer_figure(
    rows: Sequence[Mapping[str, Any]],
    depth_order: Mapping[str, Sequence[str]],
    *,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Metrics against depth: x is the relative depth of a space in its model.

    ``rows`` are metric rows of one dataset with a ``label`` (model display name) and a
    ``space``; ``depth_order`` maps each label to its spaces from shallow to deep (the
    configured layers in network order, then ``representation``, the classifier's input).
    Relative depth ``i / (n − 1)`` lets models of different depth share one axis; with a
    single model the ticks name its spaces instead.
    """
    if not depth_order:
        raise ValueError("layer_figure needs at least one model with layer-wise spaces")
    index = {(str(r["label"]), str(r["space"])): r for r in rows}
    missing = [(m, s) for m, spaces in depth_order.items() for s in spaces if (m, s) not in index]
    if missing:
        raise ValueError(f"layer_figure: no metrics row for {missing[:5]}")
    palette = dict(colors) if colors is not None else method_colors(list(depth_order))
    fig, axes = _panels(len(TREND_METRICS), title)
    hollow = False
    for ax, metric in zip(axes, TREND_METRICS):
        for model, spaces in depth_order.items():
            xs = [i / (len(spaces) - 1) if len(spaces) > 1 else 1.0 for i in range(len(spaces))]
            model_rows = [index[(model, s)] for s in spaces]
            hollow |= any(bool(r.get("rank_limited")) for r in model_rows)
            _plot_line(ax, xs, model_rows, metric, color=palette[model], label=model)
        if len(depth_order) == 1:
            (spaces,) = depth_order.values()
            ticks = [i / (len(spaces) - 1) if len(spaces) > 1 else 1.0 for i in range(len(spaces))]
            ax.set_xticks(ticks, [_short_space(s) for s in spaces], rotation=35, ha="right", fontsize=8)
            ax.set_xlabel("layer (shallow → deep)")
        else:
            ax.set_xlabel("relative depth (representation = 1)")
        ax.set_title(METRIC_LABELS[metric], fontsize=11)
        ax.grid(alpha=0.3)
        _note_if_empty(ax, metric)
    handles = [Line2D([], [], color=palette[m], marker="o") for m in depth_order]
    _legend(fig, handles, list(depth_order), hollow)
    return fig


def series_figure(
    rows: Sequence[Mapping[str, Any]],
    series: Mapping[str, Sequence[tuple[float, str]]],
    *,
    order_label: str = "training progress",
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Metrics against training progress, one line per (series, space).

    ``series`` maps a series name to its ``(order value, model instance)`` points (e.g.
    the epoch parsed from each checkpoint's file name); ``rows`` are metric rows of one
    dataset with ``method`` = model instance and ``space``. Colours follow the series,
    line styles the space (solid representation, dashed embedding, dotted layers).
    """
    if not series:
        raise ValueError("series_figure needs at least one checkpoint series")
    by_method: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(str(r["method"]), []).append(r)
    palette = dict(colors) if colors is not None else method_colors(list(series))
    fig, axes = _panels(len(TREND_METRICS), title)
    handles: list[Any] = []
    labels: list[str] = []
    hollow = False
    spaces = list(dict.fromkeys(str(r["space"]) for pts in series.values() for _, m in pts
                                for r in by_method.get(m, [])))
    for name, points in series.items():
        points = sorted(points)
        absent = [m for _, m in points if m not in by_method]
        if absent:
            raise ValueError(f"series_figure: series {name!r} has no metrics rows for {absent}")
        for space in spaces:
            per_point = [r for _, m in points for r in by_method[m] if r["space"] == space]
            if len(per_point) != len(points):  # a space only some checkpoints have
                continue
            style = SPACE_STYLES.get(space, LAYER_STYLE)
            hollow |= any(bool(r.get("rank_limited")) for r in per_point)
            for ax, metric in zip(axes, TREND_METRICS):
                _plot_line(ax, [x for x, _ in points], per_point, metric, color=palette[name], style=style)
            handles.append(Line2D([], [], color=palette[name], linestyle=style, marker="o"))
            labels.append(f"{name} — {_short_space(space)}")
    for ax, metric in zip(axes, TREND_METRICS):
        ax.set_title(METRIC_LABELS[metric], fontsize=11)
        ax.set_xlabel(order_label)
        ax.grid(alpha=0.3)
        _note_if_empty(ax, metric)
    _legend(fig, handles, labels, hollow)
    return fig


def _short_space(space: str) -> str:
    """``layer.blocks.4.res_blocks.2`` → ``blocks.4.res_blocks.2``; other spaces unchanged."""
    return space_layer(space) or space
