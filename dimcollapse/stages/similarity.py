"""Stages of ``rules/similarity.smk``: similarity tables of a dataset and their heatmaps."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.stages.common import figure_view, start

log = logging.getLogger("dimcollapse.stages")


def similarity(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.similarity import similarity_tables

    start(smk)
    dataset = smk.wildcards.dataset
    n_rows: dict[str, int] = {}

    def load(method: str, space: str) -> np.ndarray:
        path = f"results/features/{dataset}/{method}/{space}.npy"
        x = np.load(path, mmap_mode="r")
        n_rows[path] = x.shape[0]
        if len(set(n_rows.values())) > 1:  # every space of a dataset has the rows of its aligned index
            raise ValueError(f"{path}: {x.shape[0]} rows, but {next(iter(n_rows))} has {next(iter(n_rows.values()))}")
        return x

    p = smk.params.similarity
    written = similarity_tables(smk.params.plan, load, smk.output[0], knn_k=p["mutual_knn_k"],
                                max_rows=p["max_pairs_rows"], seed=p["seed"], device=smk.resources.analysis_device)
    log.info("%d similarity tables in %s", len(written), smk.output[0])


def similarity_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.similarity import similarity_figure as draw

    start(smk)
    view = smk.params.view
    labels, _, title = figure_view(view, f"{smk.wildcards.dataset}, similarity between feature spaces")
    save_figure(draw(smk.input[0], labels=labels, title=title), smk.output.png, smk.output.pdf,
                dpi=view["figures"]["dpi"])
