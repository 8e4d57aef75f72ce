"""Figures of the probe study: each collapse metric against probe accuracy (one panel per
metric, Spearman's ρ in each), and metrics against sample size (the N ≤ D cliff)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from dimcollapse.analysis.figures import colors_for, display_name, finite, note_figure, ordered_spaces, space_title

NO_PROBE_NOTE = "no probe accuracy to show (see results/probes.csv)"


PROBE_PANELS_PER_ROW = 5


SPACE_MARKERS = {"representation": "o", "embedding": "^"}


_OTHER_MARKERS = ("s", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def space_markers(spaces: Sequence[str]) -> dict[str, str]:
    """A marker per space: circle for representation, triangle for embedding, then others."""
    ordered = ordered_spaces(set(spaces))
    others = iter(_OTHER_MARKERS * (1 + len(ordered) // len(_OTHER_MARKERS)))
    return {s: SPACE_MARKERS.get(s) or next(others) for s in ordered}


def _rho_text(corr: Mapping[str, Any] | None) -> str:
    if corr is None:
        return "ρ undefined"
    if not finite(corr["spearman_rho"]):
        return f"ρ undefined (n = {corr['n_points']})"
    text = f"ρ = {float(corr['spearman_rho']):+.2f}"
    low, high = corr.get("ci_low"), corr.get("ci_high")
    if low is not None and high is not None and math.isfinite(float(low)):
        text += f" [{float(low):+.2f}, {float(high):+.2f}]"
    return text + f", n = {corr['n_points']}"


def probe_figure(
    rows: Sequence[Mapping[str, Any]],
    correlations: Sequence[Mapping[str, Any]],
    *,
    metrics: Mapping[str, str],
    accuracies: Mapping[str, str],
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Collapse metric (x) against probe accuracy (y): one panel per (dataset, probe) row
    and metric column, one point per instance (colour) and space (marker); each panel's
    title gives Spearman's ρ and its bootstrap interval from ``correlations``.

    Metrics without any value (e.g. LiDAR without multi-view features) get no column.
    """
    if not rows:
        raise ValueError("probe_figure needs at least one probes row")
    shown = [m for m in metrics if any(finite(r.get(m)) for r in rows)]
    names = list(dict.fromkeys(display_name(r) for r in rows))
    palette = colors_for(names, colors)
    if colors is not None:
        names = [m for m in colors if m in names]
    markers = space_markers([str(r["space"]) for r in rows])
    datasets = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    grid = [(ds, acc) for ds in datasets for acc in accuracies if any(finite(r.get(acc)) for r in rows)]
    if not shown or not grid:  # e.g. too few videos per class for a test split
        return note_figure(NO_PROBE_NOTE, title)
    # ρ over all instances; the within- and across-family rows are for the table
    corr = {(str(c["dataset"]), str(c["accuracy"]), str(c["metric"])): c for c in correlations
            if c.get("scope", "all") == "all"}
    # many metrics wrap onto several panel rows per (dataset, probe)
    columns = min(len(shown), PROBE_PANELS_PER_ROW)
    wraps = -(-len(shown) // columns)
    fig = Figure(figsize=(3.3 * columns, 2.9 * len(grid) * wraps + 0.9), layout="constrained")
    axes = fig.subplots(len(grid) * wraps, columns, squeeze=False)
    for i, (dataset, acc) in enumerate(grid):
        for j in range(len(shown), wraps * columns):
            axes[i * wraps + j // columns][j % columns].axis("off")
        for j, metric in enumerate(shown):
            ax = axes[i * wraps + j // columns][j % columns]
            for r in rows:
                if str(r["dataset"]) != dataset or not (finite(r.get(metric)) and finite(r.get(acc))):
                    continue
                ax.scatter(
                    float(r[metric]),
                    100 * float(r[acc]),
                    color=palette[display_name(r)],
                    marker=markers[str(r["space"])],
                    s=45,
                    edgecolor="0.15",
                    linewidth=0.5,
                    zorder=3,
                )
            ax.set_title(_rho_text(corr.get((dataset, acc, metric))), fontsize=9)
            ax.set_xlabel(metrics[metric], fontsize=9)
            if j % columns == 0:
                ax.set_ylabel(f"{dataset}\n{accuracies[acc]} (%)", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    handles: list[Any] = [Line2D([], [], color=palette[m], marker="o", linestyle="", markersize=7) for m in names]
    labels = list(names)
    handles += [Line2D([], [], color="0.4", marker=mk, linestyle="", markersize=7) for mk in markers.values()]
    labels += [space_title(sp) for sp in markers]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


SAMPLE_SIZE_METRICS = {"rankme": "RankMe", "auc_sigma": "AUC (σ-based CEV, paper)"}


def sample_size_figure(
    curves: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    *,
    metrics: Mapping[str, str] = SAMPLE_SIZE_METRICS,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Metrics of random row subsets against their size N, for one dataset.

    ``curves`` maps a method label to ``{space: rows}`` (rows with ``n``, ``repeat``,
    ``dim`` and the metric columns, as :func:`dimcollapse.analysis.spectral.sample_size_curve`
    gives them). Rows are spaces, columns metrics; each method's line joins the mean over
    the repeats at each N, with a band from their minimum to maximum; a dashed line marks
    N = D, left of which the covariance cannot have full rank.
    """
    if not curves:
        raise ValueError("sample_size_figure needs at least one method")
    palette = colors_for(list(curves), colors)
    spaces = ordered_spaces({s for by_space in curves.values() for s in by_space})
    fig = Figure(figsize=(5.2 * len(metrics), 3.2 * len(spaces) + 0.9), layout="constrained")
    axes = fig.subplots(len(spaces), len(metrics), squeeze=False)
    for i, space in enumerate(spaces):
        dims = set()
        for j, (metric, metric_label) in enumerate(metrics.items()):
            ax = axes[i][j]
            for label, by_space in curves.items():
                if space not in by_space:
                    continue
                table = by_space[space]
                ns = sorted({int(r["n"]) for r in table})
                values = [[float(r[metric]) for r in table if int(r["n"]) == n] for n in ns]
                ax.plot(
                    ns,
                    [np.mean(v) for v in values],
                    color=palette[label],
                    marker="o",
                    markersize=3,
                    linewidth=1.8,
                    label=label,
                )
                ax.fill_between(
                    ns, [min(v) for v in values], [max(v) for v in values], color=palette[label], alpha=0.2, linewidth=0
                )
                dims |= {int(r["dim"]) for r in table}
            for d in sorted(dims):
                ax.axvline(d, color="0.4", linestyle="--", linewidth=1)
                ax.text(
                    d,
                    0.02,
                    f" N = D = {d}",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    color="0.3",
                    rotation=90,
                    va="bottom",
                    ha="right",
                )
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlabel("Number of videos N (random subsets)", fontsize=10)
            ax.set_ylabel(metric_label, fontsize=10)
            ax.set_title(space_title(space), fontsize=11)
            ax.grid(alpha=0.3)
    labels = [m for m in (colors or palette) if m in curves]
    handles = [Line2D([], [], color=palette[m], linewidth=2) for m in labels]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
