"""The intrinsic dimension of a dataset's feature spaces across neighbourhood scales.

A single nearest-neighbour estimate (TwoNN) is the one most exposed to noise and sample
size (Denti et al. 2022): noise adds directions at the smallest scale, so the dimension is
read as a curve. :func:`id_scale_figure` draws the GRIDE curve of each spectrum's JSON
(``gride_curve``, :class:`dimcollapse.analysis.neighbours.GrideCurve`): the dimension at
neighbour rank n1 = 1, 2, 4, … (ratio of the 2·n1-th to the n1-th neighbour distance), one
panel per space, one line per instance, its bootstrap interval shaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dimcollapse.analysis.figures import note_figure

NO_CURVE_NOTE = "no GRIDE curve: every space has fewer than 3 rows"


def id_scale_figure(
    curves: Mapping[str, Mapping[str, Mapping[str, Any]]], *, n1_column: int | None = None,
    colors: Mapping[str, str] | None = None, title: str | None = None,
) -> Figure:
    """GRIDE dimension against neighbour rank n1, per space (``curves``: space -> instance
    label -> the JSON curve, None where undefined); a dotted line marks the n1 of the
    ``gride`` column."""
    colors = dict(colors or {})
    spaces = [s for s, by_label in curves.items() if any(c for c in by_label.values())]
    if not spaces:
        return note_figure(NO_CURVE_NOTE, title)
    columns = min(len(spaces), 3)
    fig = Figure(figsize=(5.2 * columns, 4.2 * math.ceil(len(spaces) / columns) + 0.6), layout="constrained")
    axes = fig.subplots(math.ceil(len(spaces) / columns), columns, squeeze=False).flatten()
    for ax, space in zip(axes, spaces):
        for label, curve in curves[space].items():
            if not curve:
                continue
            n1 = np.asarray(curve["n1"], dtype=float)
            dim = np.array([np.nan if v is None else v for v in curve["dimension"]], dtype=float)
            line = ax.plot(n1, dim, marker="o", label=label, color=colors.get(label))[0]
            low = np.array([np.nan if v is None else v for v in curve["ci_low"]], dtype=float)
            high = np.array([np.nan if v is None else v for v in curve["ci_high"]], dtype=float)
            if np.isfinite(low).any():
                ax.fill_between(n1, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if n1_column is not None:
            ax.axvline(n1_column, color="0.4", linestyle=":", linewidth=1, label=f"n1 = {n1_column} (gride column)")
        ax.set_xscale("log", base=2)
        ranks = sorted({n for curve in curves[space].values() if curve for n in curve["n1"]})
        ax.set_xticks(ranks, [str(n) for n in ranks])
        ax.minorticks_off()
        ax.set_xlabel("neighbour rank n1 (ratio r(2·n1) / r(n1))", fontsize=9)
        ax.set_ylabel("GRIDE intrinsic dimension", fontsize=9)
        ax.set_title(f"{space} space", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(spaces):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
