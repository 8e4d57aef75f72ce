"""Figures in the paper's style: log spectrum and cumulative explained variance.

Every function takes plain data — a mapping from method label to space to curves
(:class:`dimcollapse.analysis.spectrum.Spectrum` or :class:`dimcollapse.analysis.tables.SpectrumCurves`),
or metrics rows — and returns a :class:`matplotlib.figure.Figure` built without pyplot,
so nothing depends on a GUI backend or global figure state and tests can inspect the
artists. :func:`save_figure` writes PNG and PDF atomically.

Colours: pass the same ``colors`` mapping (from :func:`method_colors` over the study's
methods in config order) to every figure, so a method keeps its colour across datasets
even where some methods are missing. Without it, colours follow the order in which
methods appear in that one figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import matplotlib
import numpy as np
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dimcollapse.atomic import atomic_path

SPACES = ("representation", "embedding")
SPACE_TITLES = {"representation": "Representation Space", "embedding": "Embedding Space", "features": "Features"}
RANK_LABEL = "Singular Value Rank Index"
NORMALIZED_RANK_LABEL = "Normalised Rank Index k/D"
LOG_LABEL = "Log of Singular Values"
CEV_LABEL = "Cumulative Explained Variance"
CEV_LAMBDA_LABEL = "Cumulative Explained Variance (λ-based)"
PAPER_Y_RANGE = (-25.0, 0.0)
RANK_LIMIT_NOTE = "N ≤ D: rank ≤ N−1 (sampling)"
ZERO_NOTE = "zero eigenvalues (floor at {floor}, not to scale)"
METRIC_LABELS = {
    "rankme": "RankMe",
    "auc_sigma": "AUC (σ-based CEV, paper)",
    "auc_lambda": "AUC (λ-based CEV)",
    "alpha_req": "α-ReQ",
    "alpha_req_r2": "α-ReQ fit R²",
    "participation_ratio": "Participation ratio",
    "stable_rank": "Stable rank",
    "nesum": "NESum",
    "dims_90_lambda": "Dims for 90 % variance",
    "dims_95_lambda": "Dims for 95 % variance",
    "dims_99_lambda": "Dims for 99 % variance",
}

YRange = Literal["auto", "paper"] | tuple[float, float]
CevConvention = Literal["sigma", "lambda"]


class Curves(Protocol):
    """What a figure needs of a spectrum (Spectrum and SpectrumCurves both provide it)."""

    n_samples: int
    cov_eigenvalues: np.ndarray
    log_spectrum: np.ndarray
    cev: np.ndarray
    cev_variance: np.ndarray

    @property
    def dim(self) -> int: ...
    @property
    def auc(self) -> float: ...
    @property
    def auc_variance(self) -> float: ...
    @property
    def rank_limited(self) -> bool: ...


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """A fixed colour per method, in the given order: matplotlib's default cycle first
    (the paper's colours: blue, orange, green, red, …), then the light tab20 shades;
    beyond 20 methods colours repeat."""
    dark = [to_hex(c) for c in matplotlib.color_sequences["tab10"]]
    light = [to_hex(c) for c in matplotlib.color_sequences["tab20"][1::2]]
    palette = dark + light
    if len(set(methods)) != len(methods):
        raise ValueError(f"method names must be unique: {list(methods)}")
    return {m: palette[i % len(palette)] for i, m in enumerate(methods)}


def colors_for(labels: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    if colors is None:
        return method_colors(list(dict.fromkeys(labels)))
    missing = [m for m in labels if m not in colors]
    if missing:
        raise ValueError(f"no colour given for methods {missing}; pass method_colors(all methods)")
    return dict(colors)


def ordered_spaces(present: set[str]) -> list[str]:
    return [s for s in SPACES if s in present] + sorted(present - set(SPACES))


def space_title(space: str) -> str:
    return SPACE_TITLES.get(space, f"{space.capitalize()} Space")


def _index_to_x(index: Any, dim: int, normalized_rank: bool) -> Any:
    """0-based rank index as in the paper, or k/D with k = index + 1 (so the last is 1)."""
    return (index + 1) / dim if normalized_rank else index


def _x(n: int, dim: int, normalized_rank: bool) -> np.ndarray:
    return _index_to_x(np.arange(n), dim, normalized_rank)


def _cev_of(curves: Curves, cev: CevConvention) -> tuple[np.ndarray, float]:
    if cev == "sigma":
        return curves.cev, curves.auc
    if cev == "lambda":
        return curves.cev_variance, curves.auc_variance
    raise ValueError(f"cev must be 'sigma' or 'lambda', got {cev!r}")


def _apply_y_range(ax: Any, lows: list[float], highs: list[float], y_range: YRange) -> None:
    if y_range == "paper":
        ax.set_ylim(*PAPER_Y_RANGE)
        ax.set_yticks(np.arange(0, -26, -5))
    elif y_range == "auto":
        lo, hi = min(lows), max(highs)
        pad = 0.05 * max(hi - lo, 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    elif isinstance(y_range, tuple) and len(y_range) == 2:
        ax.set_ylim(*sorted(y_range))
    else:
        raise ValueError(f"y_range must be 'auto', 'paper' or (low, high), got {y_range!r}")


def _shade_rank_limit(ax: Any, curves: Sequence[Curves], normalized_rank: bool) -> None:
    """Grey out indices >= N-1 of rank-limited spectra: those eigenvalues are 0 by sampling."""
    limited = [c for c in curves if c.rank_limited]
    if not limited:
        return
    # index N-1 is the first eigenvalue forced to zero
    start = min(_index_to_x(c.n_samples - 1, c.dim, normalized_rank) for c in limited)
    end = 1.0 if normalized_rank else max(c.dim for c in curves) - 1
    ax.axvspan(start, end, color="0.88", zorder=0, linewidth=0)
    ax.text(0.99, 0.97, RANK_LIMIT_NOTE + " ", transform=ax.transAxes, fontsize=7, va="top", ha="right",
            color="0.35", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def _informative(curves: Curves) -> int:
    """Leading eigenvalues distinguishable from zero (at least 1); the rest sit at the floor."""
    return max(1, int(np.count_nonzero(np.asarray(curves.cov_eigenvalues) > 0)))


FLOOR_Y = 0.035
FLOOR_STEP = 0.02
"""Height (axes fraction) of the first strip that marks zero eigenvalues in log panels,
and the step between the strips of several curves."""


def _log_panel(
    ax: Any, present: Sequence[tuple[str, Curves]], palette: Mapping[str, str], *, normalized_rank: bool,
    y_range: YRange, linewidth: float,
) -> None:
    """Log spectra over their informative range; zero eigenvalues marked, not to scale.

    Eigenvalues at the round-off floor (``log τ``, about −35 in float64) would stretch
    the y axis far below every informative value, and with N ≤ D they fill the indices
    past N−2. Each curve is drawn up to its last non-zero eigenvalue; a strip at the
    bottom of the panel marks, in the curve's colour, the indices where its eigenvalues
    are zero, and the x axis ends shortly after the last informative index of any curve.
    """
    lows, highs, zero_from, x_last = [], [], [], []
    for label, c in present:
        m = _informative(c)
        x = _x(c.dim, c.dim, normalized_rank)
        ax.plot(x[:m], c.log_spectrum[:m], color=palette[label], label=label, linewidth=linewidth)
        lows.append(float(c.log_spectrum[:m].min()))
        highs.append(float(c.log_spectrum[:m].max()))
        x_last.append(float(x[m - 1]))
        if m < c.dim:
            zero_from.append((label, float(x[m]), float(x[-1]), float(c.log_spectrum[m:].max())))
    curves = [c for _, c in present]
    _shade_rank_limit(ax, curves, normalized_rank)
    # one strip per curve with zeros, stacked from the bottom, and the note above them
    strip_y = [FLOOR_Y + FLOOR_STEP * i for i in range(len(zero_from))]
    if y_range == "auto" and zero_from:
        lo, hi = min(lows), max(highs)
        span = max(hi - lo, 1e-3)
        below = strip_y[-1] + 0.09  # axes fraction kept free of data below the lowest value
        top_pad = 0.04
        total = span / (1 - below - top_pad)
        ax.set_ylim(lo - below * total, hi + top_pad * total)
    else:
        _apply_y_range(ax, lows, highs, y_range)
    full_end = max(float(_index_to_x(c.dim - 1, c.dim, normalized_rank)) for c in curves)
    if zero_from and max(x_last) < full_end:
        right = min(full_end, 1.08 * max(x_last) + (0 if normalized_rank else 1))
        ax.set_xlim(-0.02 * right, right)
    if zero_from:
        strip = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.axhline(ax.get_ylim()[0], color="0.5", linewidth=0.6)
        for (label, start, end, _), y in zip(zero_from, strip_y):
            ax.plot([start, end], [y, y], transform=strip, color=palette[label], linewidth=2.5,
                    solid_capstyle="butt", label=f"_zero {label}", clip_on=True)
            ax.plot([start], [y], transform=strip, color=palette[label], marker="|", markersize=8,
                    label=f"_zero start {label}")
        floor = min(f for *_, f in zero_from)
        ax.text(
            0.99,
            strip_y[-1] + 0.025,
            ZERO_NOTE.format(floor=f"{floor:.0f}".replace("-", "−")),
            transform=ax.transAxes,
            fontsize=7,
            ha="right",
            va="bottom",
            color="0.3",
        )


def spectrum_figure(
    spectra: Mapping[str, Mapping[str, Curves]],
    *,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    y_range: YRange = "auto",
    cev: CevConvention = "sigma",
) -> Figure:
    """The paper's figure for one dataset.

    Rows are spaces (representation, then embedding), columns are the log spectrum and
    the CEV with each method's AUC in the legend. ``spectra`` maps a method label to
    ``{space: curves}``; a method without a space is simply absent from that row, and a
    space that no method has gets no row (one row only, like the paper's 1×2 variant).
    ``y_range`` of the log panels: ``"auto"`` shows all the data, ``"paper"`` is the
    paper's fixed 0..−25, or an explicit (low, high).
    """
    if not spectra:
        raise ValueError("spectrum_figure needs at least one method")
    spaces = ordered_spaces({s for by_space in spectra.values() for s in by_space})
    if not spaces:
        raise ValueError("spectrum_figure: no method has any space")
    palette = colors_for(list(spectra), colors)
    fig = Figure(figsize=(12, 3.2 * len(spaces) + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(len(spaces), 2, squeeze=False)
    for row, space in enumerate(spaces):
        ax_log, ax_cev = axes[row]
        present = [(label, by_space[space]) for label, by_space in spectra.items() if space in by_space]
        for label, c in present:
            values, auc = _cev_of(c, cev)
            ax_cev.plot(
                _x(values.size, c.dim, False),
                values,
                color=palette[label],
                label=f"{label} (AUC={auc:.2f})",
                linewidth=2,
            )
        _log_panel(ax_log, present, palette, normalized_rank=False, y_range=y_range, linewidth=2)
        for ax, ylabel in ((ax_log, LOG_LABEL), (ax_cev, CEV_LABEL if cev == "sigma" else CEV_LAMBDA_LABEL)):
            ax.set_title(space_title(space), fontsize=14)
            ax.set_xlabel(RANK_LABEL, fontsize=12)
            ax.set_ylabel(ylabel, fontsize=12)
        # one legend per row, beside the CEV panel: off every curve, and it names the
        # colours of the log panel too
        ax_cev.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def overview_figure(
    spectra_by_dataset: Mapping[str, Mapping[str, Mapping[str, Curves]]],
    *,
    quantity: Literal["log_spectrum", "cev"] = "log_spectrum",
    normalized_rank: bool = False,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    y_range: YRange = "auto",
    cev: CevConvention = "sigma",
) -> Figure:
    """A datasets × spaces grid of one quantity (log spectrum or CEV) for every method.

    With ``normalized_rank`` the x axis is k/D (k = index + 1), so 2048-d representation
    and 128-d embedding spectra share one scale; all panels then span 0..1. One
    legend for the whole figure lists every method.
    """
    if quantity not in ("log_spectrum", "cev"):
        raise ValueError(f"quantity must be 'log_spectrum' or 'cev', got {quantity!r}")
    if not spectra_by_dataset:
        raise ValueError("overview_figure needs at least one dataset")
    labels = list(dict.fromkeys(m for by_method in spectra_by_dataset.values() for m in by_method))
    palette = colors_for(labels, colors)
    if colors is not None:
        labels = [m for m in colors if m in labels]  # legend in the colour map's (config) order
    spaces = ordered_spaces(
        {s for by_method in spectra_by_dataset.values() for by_space in by_method.values() for s in by_space}
    )
    if not spaces:
        raise ValueError("overview_figure: no method has any space")
    datasets = list(spectra_by_dataset)
    fig = Figure(figsize=(6 * len(spaces), 3.2 * len(datasets) + 0.8), layout="constrained")
    axes = fig.subplots(len(datasets), len(spaces), squeeze=False)
    for r, dataset in enumerate(datasets):
        for col, space in enumerate(spaces):
            ax = axes[r][col]
            present = [(m, bs[space]) for m, bs in spectra_by_dataset[dataset].items() if space in bs]
            ax.set_title(f"{dataset} — {space_title(space)}", fontsize=12)
            if not present:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")
                ax.axis("off")
                continue
            if normalized_rank:
                ax.set_xlim(-0.02, 1.02)
            if quantity == "log_spectrum":
                _log_panel(ax, present, palette, normalized_rank=normalized_rank, y_range=y_range, linewidth=1.8)
                ax.set_ylabel(LOG_LABEL, fontsize=10)
            else:
                for label, c in present:
                    values = _cev_of(c, cev)[0]
                    ax.plot(
                        _x(values.size, c.dim, normalized_rank),
                        values,
                        color=palette[label],
                        label=label,
                        linewidth=1.8,
                    )
                ax.set_ylabel(CEV_LABEL if cev == "sigma" else CEV_LAMBDA_LABEL, fontsize=10)
            ax.set_xlabel(NORMALIZED_RANK_LABEL if normalized_rank else RANK_LABEL, fontsize=10)
    handles = [Line2D([], [], color=palette[m], linewidth=2) for m in labels]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def display_name(row: Mapping[str, Any]) -> str:
    return str(row.get("label") or row["method"])


def metrics_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = ("rankme", "auc_sigma"),
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Grouped bars: one panel per (metric, space), datasets on the x axis, one bar per
    method (named by the row's ``label`` when present, else ``method``).

    Bootstrap intervals (``{metric}_ci_low/high`` columns) are drawn as vertical
    segments from low to high; bars of rank-limited rows (N ≤ D) are hatched.
    """
    if not rows:
        raise ValueError("metrics_figure needs at least one metrics row")
    unknown = [m for m in metrics if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRIC_LABELS)}")
    names = list(dict.fromkeys(display_name(r) for r in rows))
    palette = colors_for(names, colors)
    if colors is not None:
        names = [m for m in colors if m in names]
    datasets = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    spaces = ordered_spaces({str(r["space"]) for r in rows})
    index = {(str(r["dataset"]), display_name(r), str(r["space"])): r for r in rows}
    fig = Figure(
        figsize=(max(5.0, 1.6 * len(datasets) + 1.5) * len(spaces), 3.0 * len(metrics) + 0.8), layout="constrained"
    )
    axes = fig.subplots(len(metrics), len(spaces), squeeze=False)
    width = 0.8 / len(names)
    any_limited = False
    for i, metric in enumerate(metrics):
        for j, space in enumerate(spaces):
            ax = axes[i][j]
            for k, name in enumerate(names):
                xs, heights, intervals, hatches = [], [], [], []
                for d, dataset in enumerate(datasets):
                    r = index.get((dataset, name, space))
                    if r is None or r.get(metric) is None or math.isnan(float(r[metric])):
                        continue
                    xs.append(d - 0.4 + (k + 0.5) * width)
                    heights.append(float(r[metric]))
                    low, high = r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high")
                    intervals.append((low, high) if low is not None and high is not None else None)
                    hatches.append("//" if r["rank_limited"] else "")
                    any_limited |= bool(r["rank_limited"])
                if not xs:
                    continue
                bars = ax.bar(xs, heights, width, color=palette[name], label=name, edgecolor="0.2", linewidth=0.5)
                for bar, hatch in zip(bars, hatches):
                    bar.set_hatch(hatch)
                # a percentile interval need not contain the point estimate, so it is drawn
                # as a segment from low to high rather than as ± error bars around the bar
                shown = [(x, iv) for x, iv in zip(xs, intervals) if iv is not None]
                if shown:
                    ax.vlines(
                        [x for x, _ in shown],
                        [iv[0] for _, iv in shown],
                        [iv[1] for _, iv in shown],
                        color="0.1",
                        linewidth=1.2,
                    )
            ax.set_xticks(range(len(datasets)), datasets)
            ax.set_title(f"{METRIC_LABELS[metric]} — {space_title(space)}", fontsize=12)
            ax.set_ylabel(METRIC_LABELS[metric], fontsize=10)
    handles: list[Any] = [Patch(facecolor=palette[m], edgecolor="0.2") for m in names]
    labels = list(names)
    if any_limited:
        handles.append(Patch(facecolor="white", edgecolor="0.2", hatch="//"))
        labels.append("N ≤ D (rank-limited)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=10)
    if title:
        fig.suptitle(title, fontsize=14)
    return fig


def note_figure(note: str, title: str | None = None) -> Figure:
    """A small figure that says in words why there is nothing to draw."""
    fig = Figure(figsize=(6, 2), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, color="0.3")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def finite(value: Any) -> bool:
    """Whether a table cell holds a finite number (not None, NaN, inf or text)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def save_figure(
    fig: Figure,
    png: str | os.PathLike[str],
    pdf: str | os.PathLike[str] | None = None,
    *,
    dpi: int = 300,
) -> None:
    """Write the figure as PNG (at ``dpi``) and optionally PDF, each atomically.

    The PDF's creation date is omitted so the same figure gives the same bytes.
    """
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    if pdf is not None:
        with atomic_path(pdf, suffix=".pdf") as tmp:
            fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})
