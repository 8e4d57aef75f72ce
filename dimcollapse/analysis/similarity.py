"""How alike are two feature spaces? CKA and mutual k-NN across layers, instances and checkpoints.

Collapse metrics describe one space at a time; these measures compare two spaces on the
same videos:

* linear CKA (Kornblith et al. 2019, :func:`dimcollapse.analysis.similarity_measures.linear_cka`),
  invariant to rotations and scale — but biased upwards with few rows: two independent
  random N × D matrices with N ≪ D score high;
* debiased CKA (:func:`~dimcollapse.analysis.similarity_measures.unbiased_cka`: Song et al.'s
  unbiased HSIC in place of the biased one), near 0 for such a pair;
* mutual k-NN alignment (Huh et al. 2024, :func:`~dimcollapse.analysis.similarity_measures.mutual_knn`):
  the share of each video's k nearest videos (cosine) that the two spaces agree on — local
  neighbourhoods, not global linear structure.

Per dataset (every feature matrix of a dataset has the rows of its aligned index) this
module writes, for each measure (linear CKA at the top level, the others in the folders
``unbiased_cka/`` and ``mutual_knn/``):

* ``layers.<instance>.csv`` — layer × layer (with the representation, shallow to deep)
  for each instance with ``layers:``;
* ``instances.<space>.csv`` — instance × instance for each space that at least two
  instances have;

and ``series.<series>.csv`` — all three between consecutive checkpoints of a series, per
space (one row per step: how much training changed the space), and ``settings.json``
(rows compared, k, the seeded subsample of mutual k-NN above ``max_rows``).

Matrices are CSVs with the names as first column and header; :func:`similarity_figure`
draws them as heatmaps (one column per measure) and the series steps as lines.
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
from dimcollapse.analysis.similarity_measures import MUTUAL_KNN_K, cka_matrices, knn_sets, mutual_knn_from_sets
from dimcollapse.atomic import atomic_path, write_json

Loader = Callable[[str, str], np.ndarray]
"""(instance, space) -> its N × D feature matrix (a memory map is fine)."""

MEASURES = {"cka": "Linear CKA", "unbiased_cka": "Debiased CKA", "mutual_knn": "Mutual k-NN"}
"""Measure -> its name in figures; linear CKA's tables sit at the top of the folder, the
others' in a folder named after the measure."""
SERIES_COLUMNS = ("space", "from", "to", "from_order", "to_order", *MEASURES)


def write_cka_csv(path: str | os.PathLike[str], names: Sequence[str], matrix: np.ndarray) -> None:
    table = pd.DataFrame(matrix, index=pd.Index(list(names), name="name"), columns=list(names))
    with atomic_path(path, suffix=".csv") as tmp:
        table.to_csv(tmp, float_format="%.6f")


def read_cka_csv(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    table = pd.read_csv(path, index_col=0)
    if list(table.index) != list(table.columns):
        raise ValueError(f"{path}: not a square CKA matrix (row and column names differ)")
    return [str(n) for n in table.index], table.to_numpy(dtype=np.float64)


class _Compared:
    """The spaces of one dataset as the measures need them: the rows as loaded (CKA uses
    them all) and each space's k-NN sets, searched once on the seeded subsample of rows
    that mutual k-NN shares across spaces."""

    def __init__(self, load: Loader, k: int, max_rows: int | None, seed: int, device: str | None) -> None:
        self.load, self.k, self.max_rows, self.seed, self.device = load, k, max_rows, seed, device
        self.sets: dict[tuple[str, str], np.ndarray] = {}
        self.rows: int | None = None
        self.pick: np.ndarray | None = None

    def matrix(self, method: str, space: str) -> np.ndarray:
        x = self.load(method, space)
        if self.rows is None:
            from dimcollapse.analysis.pairwise import pair_subsample

            self.rows = len(x)
            self.pick = pair_subsample(len(x), self.max_rows, self.seed)
            self.k = min(self.k, self.knn_rows - 1)
        return x

    @property
    def knn_rows(self) -> int:
        return len(self.pick) if self.pick is not None else int(self.rows or 0)

    def knn(self, method: str, space: str) -> np.ndarray:
        if (method, space) not in self.sets:
            x = self.matrix(method, space)
            self.sets[(method, space)] = knn_sets(x if self.pick is None else x[self.pick], self.k,
                                                  device=self.device)
        return self.sets[(method, space)]

    def measures(self, members: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """Every measure between every two of ``members`` ((instance, space) pairs)."""
        matrices = [self.matrix(m, s) for m, s in members]
        linear, unbiased = cka_matrices(matrices, debiased=len(matrices[0]) >= 4)
        knn = (mutual_knn_from_sets([self.knn(m, s) for m, s in members]) if self.k >= 1
               else np.full_like(linear, np.nan))  # one row: no neighbours
        return {"cka": linear, "unbiased_cka": unbiased, "mutual_knn": knn}


def _table_path(out: Path, measure: str, name: str) -> Path:
    return (out if measure == "cka" else out / measure) / name


def similarity_tables(
    plan: Mapping[str, Any], load: Loader, out_dir: str | os.PathLike[str], *, knn_k: int = MUTUAL_KNN_K,
    max_rows: int | None = None, seed: int = 0, device: str | None = "cpu",
) -> list[Path]:
    """Write every table of ``plan`` under ``out_dir``; returns the paths written.

    ``plan``: ``layers`` {instance: [spaces shallow to deep]}, ``instances`` {space:
    [instances]}, ``series`` {series: [[order, instance], ...] in training order}.
    Mutual k-NN uses k = min(``knn_k``, rows − 1) and, above ``max_rows`` rows, one seeded
    subsample of that many rows for every space.
    """
    out = Path(out_dir)
    for folder in [out] + [out / m for m in MEASURES if m != "cka"]:
        folder.mkdir(parents=True, exist_ok=True)
    compared = _Compared(load, knn_k, max_rows, seed, device)
    written = []
    tables = [(f"layers.{method}.csv", members, [(method, s) for s in members])
              for method, members in plan["layers"].items()]
    tables += [(f"instances.{space}.csv", members, [(m, space) for m in members])
               for space, members in plan["instances"].items()]
    for name, names, members in tables:
        for measure, matrix in compared.measures(members).items():
            path = _table_path(out, measure, name)
            write_cka_csv(path, names, matrix)
            written.append(path)
    for name, members in plan["series"].items():
        rows = []
        for (order_a, a), (order_b, b) in zip(members, members[1:]):
            for space in plan["series_spaces"][name]:
                pair = compared.measures([(a, space), (b, space)])
                rows.append({"space": space, "from": a, "to": b, "from_order": order_a, "to_order": order_b,
                             **{measure: float(matrix[0, 1]) for measure, matrix in pair.items()}})
        path = out / f"series.{name}.csv"
        with atomic_path(path, suffix=".csv") as tmp:
            pd.DataFrame(rows, columns=list(SERIES_COLUMNS)).to_csv(tmp, index=False, float_format="%.6f")
        written.append(path)
    write_json(out / "settings.json", {"rows": compared.rows, "mutual_knn_k": compared.k,
                                       "mutual_knn_rows": compared.knn_rows, "mutual_knn_seed": seed})
    return written


NO_SIMILARITY_NOTE = "nothing to compare: no layers, no shared space, no checkpoint series"


_STYLE = {"cka": "-", "unbiased_cka": "--", "mutual_knn": ":"}
_RANGE = {"cka": (0.0, 1.0, "viridis"), "unbiased_cka": (-1.0, 1.0, "RdBu_r"), "mutual_knn": (0.0, 1.0, "viridis")}
"""Heatmap colour range and map per measure: debiased CKA can be negative."""


def _measure_names(folder: Path) -> dict[str, str]:
    """Each measure's name in the figure, with mutual k-NN's k from ``settings.json``."""
    names = dict(MEASURES)
    settings = folder / "settings.json"
    if settings.is_file():
        k = pd.read_json(settings, typ="series").get("mutual_knn_k")
        if k is not None and not pd.isna(k):
            names["mutual_knn"] = f"Mutual {int(k)}-NN"
    return names


def _heatmap(ax: Any, path: Path, measure: str, heading: str, labels: Mapping[str, str]) -> Any:
    names, matrix = read_cka_csv(path)
    shown = [labels.get(n, n) for n in names]
    low, high, cmap = _RANGE[measure]
    image = ax.imshow(matrix, vmin=low, vmax=high, cmap=cmap)
    ax.set_xticks(range(len(names)), shown, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), shown, fontsize=8)
    if len(names) <= 10:
        size = 7 if len(names) <= 6 else 5
        for i in range(len(names)):
            for j in range(len(names)):
                light = (matrix[i, j] > 0.6) if cmap == "viridis" else abs(matrix[i, j]) < 0.6
                ax.text(j, i, "–" if np.isnan(matrix[i, j]) else f"{matrix[i, j]:.2f}", ha="center", va="center",
                        fontsize=size, color="black" if light else "white")
    ax.set_title(heading, fontsize=10)
    return image


def similarity_figure(
    tables_dir: str | os.PathLike[str], *, labels: Mapping[str, str] | None = None, title: str | None = None,
) -> Figure:
    """Heatmaps of the matrices under ``tables_dir`` (one row per table: layers, then
    instances; one column per measure) and one panel per series with every measure
    between consecutive checkpoints (colour: space; line style: measure)."""
    labels = dict(labels or {})
    folder = Path(tables_dir)
    tables = sorted(folder.glob("layers.*.csv")) + sorted(folder.glob("instances.*.csv"))
    measures = [m for m in MEASURES if m == "cka" or (folder / m).is_dir()]
    names = _measure_names(folder)
    series = sorted(folder.glob("series.*.csv"))
    columns = len(measures) if tables else min(max(len(series), 1), 3)
    grid_rows = len(tables) + math.ceil(len(series) / columns)
    if grid_rows == 0:
        return note_figure(NO_SIMILARITY_NOTE, title)
    fig = Figure(figsize=(5.0 * columns, 4.6 * grid_rows + 0.6), layout="constrained")
    axes = fig.subplots(grid_rows, columns, squeeze=False)
    for row, path in enumerate(tables):
        kind, subject = path.stem.split(".", 1)
        heading = f"layers of {labels.get(subject, subject)}" if kind == "layers" else f"instances, {subject} space"
        for col, measure in enumerate(measures):
            image = _heatmap(axes[row, col], _table_path(folder, measure, path.name), measure,
                             f"{names[measure]}\n{heading}", labels)
            if row == len(tables) - 1:  # one scale per measure, under its column
                fig.colorbar(image, ax=list(axes[: len(tables), col]), location="bottom", shrink=0.7, aspect=30,
                             label=names[measure])
    flat = list(axes[len(tables):].flatten())
    for ax, path in zip(flat, series):
        table = pd.read_csv(path)
        present = [m for m in MEASURES if m in table]
        for i, (space, part) in enumerate(table.groupby("space", sort=False)):
            for measure in present:
                if measure in part and part[measure].notna().any():
                    ax.plot(part["to_order"], part[measure], marker="o", color=f"C{i % 10}", linestyle=_STYLE[measure],
                            label=f"{names[measure]}, {space}")
        ax.set_ylim(min(0.0, float(np.nanmin(table[present].to_numpy(dtype=float), initial=0.0))) - 0.05, 1.05)
        ax.set_xlabel("checkpoint (measured against the previous one)", fontsize=9)
        ax.set_ylabel("similarity", fontsize=9)
        ax.set_title(f"Series {path.stem.split('.', 1)[1]}: consecutive checkpoints", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in flat[len(series):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    return fig

