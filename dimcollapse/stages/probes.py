"""Stages of ``rules/probes.smk``: probe split, probes, LiDAR, metrics against sample
size, the probe table and its figure."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.atomic import atomic_path, write_json
from dimcollapse.stages.common import figure_view, json_rows, start

log = logging.getLogger("dimcollapse.stages")


def probe_split(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.probes import assign_split
    from dimcollapse.data.datasets import official_split

    start(smk)
    p = smk.params.probes
    index = pd.read_csv(smk.input.index, dtype={"id": str})
    official = official_split(smk.params.dataset)
    roles, name = official if official is not None else (None, "")
    choice = assign_split(list(index["id"]), index["label"].to_numpy(), roles, official_name=name,
                          test_fraction=p["test_fraction"], seed=p["seed"])
    table = pd.DataFrame({"id": index["id"], "label": index["label"], "role": choice.roles})
    with atomic_path(smk.output.split, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(smk.output.description, {"dataset": smk.wildcards.dataset, "official": choice.official,
                                        "description": choice.description})
    log.info("split: %s", choice.description)


def probe(smk: Any) -> None:
    import json

    import numpy as np
    import pandas as pd
    import torch

    from dimcollapse.analysis.probes import run_probes

    start(smk)
    torch.set_num_threads(smk.threads)
    p = smk.params.probes
    split = pd.read_csv(smk.input.split, dtype={"id": str}, keep_default_na=False)
    features = np.load(smk.input.features, mmap_mode="r")
    if features.shape[0] != len(split):
        raise ValueError(f"{smk.input.features}: {features.shape[0]} rows, but {smk.input.split} lists {len(split)}")
    with open(smk.input.description) as fh:
        description = json.load(fh)["description"]
    w = smk.wildcards
    roles = split["role"].to_numpy(dtype=object)
    if not ((roles == "train").any() and (roles == "test").any()):
        # e.g. one video per class: a stratified split keeps every video for training
        n_train, n_test = int((roles == "train").sum()), int((roles == "test").sum())
        reason = f"no probe: the split has {n_train} train and {n_test} test rows"
        log.warning("%s (%s)", reason, description)
        write_json(
            smk.output[0],
            {
                "dataset": w.dataset,
                "method": w.method,
                "space": w.space,
                "split": f"{description}; {reason}",
                "knn_accuracy": None,
                "linear_accuracy": None,
            },
        )
        return
    out = run_probes(
        np.asarray(features),
        split["label"].to_numpy(),
        split["role"].to_numpy(dtype=object),
        k=p["k"],
        temperature=p["temperature"],
        val_fraction=p["val_fraction"],
        seed=p["seed"],
        weight_decays=p["weight_decays"],
        device=p["device"],
        knn=p["knn"],
        linear=p["linear"],
    )
    write_json(smk.output[0], {"dataset": w.dataset, "method": w.method, "space": w.space, "split": description, **out})
    log.info(
        "k-NN %s, linear %s (%d train, %d test, %s)",
        out["knn_accuracy"],
        out["linear_accuracy"],
        out["n_train"],
        out["n_test"],
        out["device"],
    )


def lidar(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.spectral import LIDAR_CONVENTION, LIDAR_EPS
    from dimcollapse.analysis.spectral import lidar as lidar_of

    start(smk)
    views = np.load(smk.input[0], mmap_mode="r")
    value = lidar_of(views, delta=smk.params.delta, source=str(smk.input[0]))
    w = smk.wildcards
    write_json(
        smk.output[0],
        {
            "dataset": w.dataset,
            "method": w.method,
            "space": w.space,
            "lidar": value,
            "n_samples": views.shape[0],
            "views": views.shape[1],
            "dim": views.shape[2],
            "delta": smk.params.delta,
            "eps": LIDAR_EPS,
            "convention": LIDAR_CONVENTION,
        },
    )
    log.info("LiDAR %.3f (N=%d, %d views, D=%d)", value, *views.shape)


def sample_size(smk: Any) -> None:
    import numpy as np
    import pandas as pd

    from dimcollapse.analysis.spectral import SAMPLE_SIZE_COLUMNS, sample_size_curve

    start(smk)
    p = smk.params.sample_size
    features = np.load(smk.input[0], mmap_mode="r")
    rows = sample_size_curve(
        features,
        smallest=p["smallest"],
        repeats=p["repeats"],
        seed=p["seed"],
        normalize=smk.params.normalize,
        alpha_range=tuple(smk.params.alpha_range),
    )
    with atomic_path(smk.output[0], suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=list(SAMPLE_SIZE_COLUMNS)).to_csv(tmp, index=False)
    log.info("%d subsets, N from %d to %d", len(rows), rows[0]["n"], rows[-1]["n"])


def sample_size_figure(smk: Any) -> None:
    from pathlib import Path

    import pandas as pd

    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.probe_figures import sample_size_figure as draw

    start(smk)
    view = smk.params.view
    labels, colors, title = figure_view(view, f"{smk.wildcards.dataset}, metrics against sample size")
    curves: dict[str, dict[str, Any]] = {}
    for path in smk.input:
        p = Path(path)
        curves.setdefault(labels[p.parent.name], {})[p.stem] = pd.read_csv(p).to_dict("records")
    save_figure(draw(curves, title=title, colors=colors), smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def probe_table(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.probes import (
        CORRELATION_COLUMNS,
        PROBE_TABLE_COLUMNS,
        metric_accuracy_correlations,
        probe_table_rows,
    )
    from dimcollapse.analysis.temporal import table_metric_columns

    start(smk)
    rows = probe_table_rows(
        json_rows(smk.input.probes),
        json_rows(smk.input.metrics),
        json_rows(smk.input.lidar),
        table_metric_columns(smk.input.temporal),
        labels=smk.params.labels,
        families=smk.params.families,
    )
    p = smk.params.probes
    corr = metric_accuracy_correlations(rows, n_boot=p["bootstrap"], seed=p["seed"])
    with atomic_path(smk.output.table, suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=list(PROBE_TABLE_COLUMNS)).to_csv(tmp, index=False)
    with atomic_path(smk.output.correlations, suffix=".csv") as tmp:
        pd.DataFrame(corr, columns=list(CORRELATION_COLUMNS)).to_csv(tmp, index=False)
    log.info("%d probe rows, %d correlations", len(rows), len(corr))


def probe_figure(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.probe_figures import probe_figure as draw
    from dimcollapse.analysis.probes import ACCURACIES, CORRELATED_METRICS

    start(smk)
    rows = pd.read_csv(smk.input.table).to_dict("records")
    corr = pd.read_csv(smk.input.correlations).to_dict("records")
    view = smk.params.view
    _, colors, title = figure_view(view, "collapse metrics against probe accuracy")
    fig = draw(rows, corr, metrics=CORRELATED_METRICS, accuracies=ACCURACIES, title=title, colors=colors)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])
