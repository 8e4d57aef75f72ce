"""The temporal figure of a dataset: does each model use time? (``results/figures/temporal/<dataset>.png``)

One panel per measure of :mod:`dimcollapse.analysis.temporal`, the instances (and their
spaces) side by side on the x axis:

* frame-order interventions: bars per frame order (original in grey where the measure has
  one) for 1 − linear CKA and 1 − mean cosine with the original features, on a log axis
  (an order-blind model sits at the floor, a known zero, and one that uses time orders of
  magnitude above it; values on a linear axis would all look like 1), then RankMe, AUC,
  TwoNN and the probe accuracies of each order's space;
* time-resolved spaces, one bar per instance: the temporal share of variance (0 = temporal
  collapse), the RankMe of the within-clip scatter, the RankMe of all time steps next to
  that of the clip means (hatched), and the log spectrum of the time steps (solid) next to
  that of the clip means (dashed), in the instances' study colours.

Built without pyplot, like every figure of :mod:`dimcollapse.analysis.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dimcollapse.analysis.figures import finite, method_colors, note_figure
from dimcollapse.data.interventions import FRAME_ORDERS, ORIGINAL

#: Bar colours of the frame orders (original grey, so an intervention stands out against it).
ORDER_COLORS = {"original": "0.65", "reversed": "#1f77b4", "shuffled": "#d62728", "frozen": "#2ca02c"}
#: Bars of the time-resolved panels (instances are told apart by their tick labels).
TIME_BAR_COLOR = "0.35"
#: Intervention panels: table column, title, whether the original has a value, scale
#: (negative: plot 1 − value on a log axis).
INTERVENTION_PANELS = (
    ("linear_cka", "1 − linear CKA with the original frames", False, -1.0),
    ("mean_cosine", "1 − mean cosine with the original frames", False, -1.0),
    ("rankme", "RankMe", True, 1.0),
    ("auc_sigma", "AUC (σ-based CEV, paper)", True, 1.0),
    ("twonn", "TwoNN intrinsic dimension", True, 1.0),
    ("knn_accuracy", "k-NN top-1 accuracy (%)", True, 100.0),
    ("linear_accuracy", "Linear probe top-1 accuracy (%)", True, 100.0),
)
#: Floor of the log axes of 1 − CKA and 1 − cosine: float32 features differ by rounding only below it.
DISTANCE_FLOOR = 1e-9
PANELS_PER_ROW = 4
NO_TEMPORAL_NOTE = "no interventions or time-resolved spaces to show (see results/temporal/)"


def _number(value: Any) -> float:
    """A bar's height: the value, or NaN (no bar) where it is missing."""
    return float(value) if finite(value) else float("nan")


def _entry(row: Mapping[str, Any], several_spaces: bool) -> str:
    return f"{row['label']}\n{row['space']}" if several_spaces else str(row["label"])


def _entries(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    """(method, space) pairs in table order and their tick labels (the space only where an
    instance has several)."""
    keys = list(dict.fromkeys((str(r["method"]), str(r["space"])) for r in rows))
    per_method: dict[str, int] = {}
    for method, _ in keys:
        per_method[method] = per_method.get(method, 0) + 1
    label = {(str(r["method"]), str(r["space"])): _entry(r, per_method[str(r["method"])] > 1) for r in rows}
    return keys, label


def _intervention_panel(ax: Any, rows: Sequence[Mapping[str, Any]], column: str, title: str, with_original: bool,
                        scale: float) -> None:
    orders = [o for o in FRAME_ORDERS if (with_original or o != ORIGINAL)
              and any(r["frame_order"] == o and finite(r.get(column)) for r in rows)]
    keys, names = _entries([r for r in rows if r["frame_order"] != ORIGINAL])
    value = {(str(r["method"]), str(r["space"]), r["frame_order"]): r.get(column) for r in rows}
    width = 0.8 / max(len(orders), 1)
    distance = scale < 0
    for k, order in enumerate(orders):
        xs = [i - 0.4 + (k + 0.5) * width for i in range(len(keys))]
        hs = np.array([_number(value.get((m, s, order))) for m, s in keys])
        if distance:  # 1 − value from the floor up, on a log axis
            ax.bar(xs, np.maximum(1.0 - hs, DISTANCE_FLOOR) - DISTANCE_FLOOR / 2, bottom=DISTANCE_FLOOR / 2,
                   width=width, color=ORDER_COLORS[order], edgecolor="0.2", linewidth=0.4)
        else:
            ax.bar(xs, scale * hs, width=width, color=ORDER_COLORS[order], edgecolor="0.2", linewidth=0.4)
    if distance:
        ax.set_yscale("log")
        ax.set_ylim(DISTANCE_FLOOR / 2, 2.0)
        ax.axhline(DISTANCE_FLOOR, color="0.3", linestyle=":", linewidth=0.8)
        ax.set_ylabel(f"log scale; ≤ {DISTANCE_FLOOR:g}: unchanged", fontsize=8)
    ax.set_xticks(range(len(keys)), [names[k] for k in keys], fontsize=8)
    ax.set_title(title, fontsize=10)


def _time_panels(axes: list[Any], rows: Sequence[Mapping[str, Any]], spectra: Sequence[Mapping[str, Any]],
                 palette: Mapping[str, str]) -> None:
    """Temporal share, within-clip RankMe, RankMe of time steps and clip means, and their spectra."""
    resolved = [r for r in rows if r["frame_order"] == ORIGINAL and finite(r.get("temporal_share"))]
    keys, names = _entries(resolved)
    colours = TIME_BAR_COLOR
    share, within, ranks, curves = axes
    share.bar(range(len(keys)), [float(r["temporal_share"]) for r in resolved], color=colours, edgecolor="0.2",
              linewidth=0.4)
    share.set_ylim(0, 1.05)
    share.set_title("Temporal share of variance (0: static)", fontsize=10)
    within.bar(range(len(keys)), [_number(r.get("within_clip_rankme")) for r in resolved], color=colours,
               edgecolor="0.2", linewidth=0.4)
    within.set_title("RankMe within clips (directions of change)", fontsize=10)
    for k, (column, hatch) in enumerate((("timestep_rankme", ""), ("clip_mean_rankme", "//"))):
        xs = [i - 0.2 + 0.4 * k for i in range(len(keys))]
        ranks.bar(xs, [float(r[column]) for r in resolved], width=0.4, color=colours, hatch=hatch, edgecolor="0.2",
                  linewidth=0.4)
    ranks.set_title("RankMe: time steps (N·T′), clip means (N, hatched)", fontsize=10)
    for ax in (share, within, ranks, curves):
        ax.set_xticks(range(len(keys)), [names[k] for k in keys], fontsize=8) if ax is not curves else None
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for r in resolved:
        for vectors, style in (("time_steps", "-"), ("clip_means", "--")):
            lam = np.array([c["eigenvalue"] for c in spectra if c["method"] == r["method"] and c["space"] == r["space"]
                            and c["vectors"] == vectors], dtype=np.float64)
            lam = lam[lam > 0]
            if lam.size:
                curves.plot(np.arange(1, lam.size + 1), np.log(lam), style, color=palette[str(r["label"])],
                            linewidth=1.2)
    curves.legend([Line2D([], [], color=palette[str(r["label"])]) for r in resolved]
                  + [Line2D([], [], color="0.3", linestyle=s) for s in ("-", "--")],
                  [names[k].replace("\n", " ") for k in keys] + ["time steps", "clip means"], fontsize=7)
    curves.set_xscale("log")
    curves.set_xlabel("Singular value rank index", fontsize=8)
    curves.set_ylabel("Log eigenvalue", fontsize=8)
    curves.set_title("Spectrum: time steps (solid), clip means (dashed)", fontsize=10)


def temporal_figure(
    rows: Sequence[Mapping[str, Any]],
    spectra: Sequence[Mapping[str, Any]] = (),
    *,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """The figure of one dataset's temporal table (``rows``, :data:`~dimcollapse.analysis.temporal.TEMPORAL_COLUMNS`)
    and spectra file (``spectra``). ``colors``: the study's instance colours, by label."""
    intervened = [r for r in rows if r["frame_order"] != ORIGINAL]
    panels = [p for p in INTERVENTION_PANELS if intervened and any(finite(r.get(p[0])) for r in intervened)]
    time_rows = [r for r in rows if r["frame_order"] == ORIGINAL and finite(r.get("temporal_share"))]
    n = len(panels) + (4 if time_rows else 0)
    if n == 0:
        return note_figure(NO_TEMPORAL_NOTE, title)
    columns = min(n, PANELS_PER_ROW)
    grid = -(-n // columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * grid + 1.0), layout="constrained")
    axes = [ax for line in fig.subplots(grid, columns, squeeze=False) for ax in line]
    for ax in axes[n:]:
        ax.axis("off")
    for ax, (column, panel_title, with_original, scale) in zip(axes, panels):
        _intervention_panel(ax, rows, column, panel_title, with_original, scale)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    handles: list[Any] = []
    labels: list[str] = []
    if panels:
        shown = [o for o in FRAME_ORDERS if any(r["frame_order"] == o for r in rows)]
        handles += [Patch(facecolor=ORDER_COLORS[o], edgecolor="0.2") for o in shown]
        labels += [f"{o} frames" for o in shown]
    if time_rows:
        names = list(dict.fromkeys(str(r["label"]) for r in time_rows))
        _time_panels(axes[len(panels):n], rows, spectra, {**method_colors(names), **(colors or {})})
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


__all__ = ["ORDER_COLORS", "temporal_figure"]
