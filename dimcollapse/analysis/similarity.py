"""How alike are two feature spaces? Linear CKA across layers, instances and checkpoints.

Collapse metrics describe one space at a time; linear CKA (Kornblith et al. 2019, see
:func:`dimcollapse.analysis.metrics.linear_cka`) compares two spaces on the same videos,
invariantly to rotations and scale. Per dataset (every feature matrix of a dataset has
the rows of its aligned index) this module writes:

* ``layers.<instance>.csv`` — layer × layer (with the representation, shallow to deep)
  for each instance with ``layers:``;
* ``instances.<space>.csv`` — instance × instance for each space that at least two
  instances have;
* ``series.<series>.csv`` — CKA between consecutive checkpoints of a series, per space
  (one row per step: how much training changed the space).

Matrices are CSVs with the names as first column and header; :func:`similarity_figure`
draws them as heatmaps (and the series steps as lines).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dimcollapse.analysis.figures import note_figure
from dimcollapse.analysis.metrics import linear_cka, linear_cka_matrix
from dimcollapse.atomic import atomic_path

Loader = Callable[[str, str], np.ndarray]
"""(instance, space) -> its N × D feature matrix (a memory map is fine)."""

SERIES_COLUMNS = ("space", "from", "to", "from_order", "to_order", "cka")


def write_cka_csv(path: str | os.PathLike[str], names: Sequence[str], matrix: np.ndarray) -> None:
    table = pd.DataFrame(matrix, index=pd.Index(list(names), name="name"), columns=list(names))
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, float_format="%.6f")


def read_cka_csv(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    table = pd.read_csv(path, index_col=0)
    if list(table.index) != list(table.columns):
        raise ValueError(f"{path}: not a square CKA matrix (row and column names differ)")
    return [str(n) for n in table.index], table.to_numpy(dtype=np.float64)


def similarity_tables(plan: Mapping[str, Any], load: Loader, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every table of ``plan`` under ``out_dir``; returns the paths written.

    ``plan``: ``layers`` {instance: [spaces shallow to deep]}, ``instances`` {space:
    [instances]}, ``series`` {series: [[order, instance], ...] in training order}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for method, spaces in plan["layers"].items():
        path = out / f"layers.{method}.csv"
        write_cka_csv(path, spaces, linear_cka_matrix([load(method, s) for s in spaces]))
        written.append(path)
    for space, methods in plan["instances"].items():
        path = out / f"instances.{space}.csv"
        write_cka_csv(path, methods, linear_cka_matrix([load(m, space) for m in methods]))
        written.append(path)
    for name, members in plan["series"].items():
        rows = []
        for (order_a, a), (order_b, b) in zip(members, members[1:]):
            for space in plan["series_spaces"][name]:
                rows.append({"space": space, "from": a, "to": b, "from_order": order_a, "to_order": order_b,
                             "cka": linear_cka(load(a, space), load(b, space))})
        path = out / f"series.{name}.csv"
        with atomic_path(path, suffix=".csv") as tmp:
            pd.DataFrame(rows, columns=list(SERIES_COLUMNS)).to_csv(tmp, index=False, float_format="%.6f")
        written.append(path)
    return written


NO_SIMILARITY_NOTE = "nothing to compare: no layers, no shared space, no checkpoint series"


def similarity_figure(
    tables_dir: str | os.PathLike[str], *, labels: Mapping[str, str] | None = None, title: str | None = None,
) -> Figure:
    """Heatmaps of the CKA matrices under ``tables_dir`` (layers, then instances) and one
    panel of CKA between consecutive checkpoints per series (one line per space)."""
    labels = dict(labels or {})
    folder = Path(tables_dir)
    heatmaps = sorted(folder.glob("layers.*.csv")) + sorted(folder.glob("instances.*.csv"))
    series = sorted(folder.glob("series.*.csv"))
    panels = len(heatmaps) + len(series)
    if panels == 0:
        return note_figure(NO_SIMILARITY_NOTE, title)
    columns = min(panels, 3)
    fig = Figure(figsize=(5.0 * columns, 4.6 * math.ceil(panels / columns) + 0.6), layout="constrained")
    axes = fig.subplots(math.ceil(panels / columns), columns, squeeze=False).flatten()
    image = None
    for ax, path in zip(axes, heatmaps):
        names, matrix = read_cka_csv(path)
        kind, subject = path.stem.split(".", 1)
        shown = [labels.get(n, n) for n in names]
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(names)), shown, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), shown, fontsize=8)
        if len(names) <= 10:
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if matrix[i, j] > 0.6 else "white")
        heading = (f"layers of {labels.get(subject, subject)}" if kind == "layers"
                   else f"instances, {subject} space")
        ax.set_title(f"Linear CKA: {heading}", fontsize=10)
    for ax, path in zip(axes[len(heatmaps):], series):
        table = pd.read_csv(path)
        for space, part in table.groupby("space", sort=False):
            ax.plot(part["to_order"], part["cka"], marker="o", label=str(space))
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("checkpoint (CKA with the previous one)", fontsize=9)
        ax.set_ylabel("linear CKA", fontsize=9)
        ax.set_title(f"Series {path.stem.split('.', 1)[1]}: consecutive checkpoints", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[panels:]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(heatmaps)]), shrink=0.8, label="linear CKA")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
