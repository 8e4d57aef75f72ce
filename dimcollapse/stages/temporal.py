"""Stages of ``rules/temporal.smk``: time-resolved arrays, the temporal table of a
dataset and its figure (the frame-order extractions run :func:`dimcollapse.stages.extract.extract`)."""

from __future__ import annotations

import json
import logging
from typing import Any

from dimcollapse.atomic import write_json
from dimcollapse.stages.common import figure_view, start

log = logging.getLogger("dimcollapse.stages")


def merge_time_resolved(smk: Any) -> None:
    """``<space>_time.npy`` (N × T′ × D, rows of the dataset's index) from the instance's shards."""
    import pandas as pd

    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.features import merge_space, save_npy, sidecar
    from dimcollapse.extraction.shards import ShardResult
    from dimcollapse.models.time_axes import time_key

    start(smk)
    space = smk.wildcards.space
    shards = [ShardResult.load(p) for p in smk.input.shards]
    n_manifest = len(read_manifest(smk.input.manifest))
    index = pd.read_csv(smk.input.index, dtype={"id": str})
    flat = merge_space(shards, index, n_manifest, time_key(space))
    width = max(s.features[space].shape[1] for s in shards)  # D of the pooled space (a shard of no rows: 0)
    resolved = flat.reshape(len(flat), -1, width)
    save_npy(smk.output.features, resolved)
    record = sidecar(flat, shards, smk.params.job, dataset=smk.wildcards.dataset, space=time_key(space),
                     n_manifest=n_manifest, rows_file=smk.input.index)
    write_json(smk.output.sidecar, {**record, "d": resolved.shape[2], "timesteps": resolved.shape[1],
                                    "shape": list(resolved.shape)})
    log.info("%s: %d × %d × %d", smk.output.features, *resolved.shape)


def temporal(smk: Any) -> None:
    """``results/temporal/<dataset>.csv``, ``.md`` and ``.spectra.csv`` (see :mod:`dimcollapse.analysis.temporal`)."""
    import numpy as np

    from dimcollapse.analysis.tables import read_metrics_json
    from dimcollapse.analysis.temporal import (
        SPECTRA_COLUMNS,
        TEMPORAL_COLUMNS,
        temporal_rows,
        write_csv,
        write_temporal_markdown,
    )
    from dimcollapse.models.time_axes import time_key

    start(smk)
    ds = smk.wildcards.dataset
    probed = set(map(str, smk.input.probes))

    def probes(method: str, space: str) -> dict[str, Any] | None:
        path = f"results/probes/{ds}/{method}/{space}.json"
        if path not in probed:
            return None
        with open(path) as fh:
            return json.load(fh)

    rows, curves = temporal_rows(
        ds, smk.params.plan, smk.params.labels,
        features=lambda m, s: np.load(f"results/features/{ds}/{m}/{s}.npy", mmap_mode="r"),
        metrics=lambda m, s: read_metrics_json(f"results/spectra/{ds}/{m}/{s}.json"),
        probes=probes,
        time_resolved=lambda m, s: np.load(f"results/features/{ds}/{m}/{time_key(s)}.npy", mmap_mode="r"),
        normalize=smk.params.spectrum["normalize"], alpha_range=tuple(smk.params.spectrum["alpha_req_range"]),
    )
    write_csv(smk.output.table, rows, TEMPORAL_COLUMNS)
    write_csv(smk.output.spectra, curves, SPECTRA_COLUMNS)
    write_temporal_markdown(smk.output.markdown, rows)
    log.info("%d rows (instances × spaces × frame orders) in %s", len(rows), smk.output.table)


def temporal_figure(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.temporal import read_temporal_csv
    from dimcollapse.analysis.temporal_figure import temporal_figure as draw

    start(smk)
    view = smk.params.view
    _, colors, title = figure_view(view, f"{smk.wildcards.dataset}, does the model use time?")
    spectra = pd.read_csv(smk.input.spectra).to_dict("records")
    fig = draw(read_temporal_csv(smk.input.table), spectra, title=title, colors=colors)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])
