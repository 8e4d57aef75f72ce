"""Stages of ``rules/analysis.smk``: spectrum and metrics per feature matrix, the
metrics table, figures and the provenance record."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.atomic import write_json
from dimcollapse.stages.common import curves_by_label, figure_view, json_rows, start

log = logging.getLogger("dimcollapse.stages")


def spectrum(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.geometry import geometry_metrics
    from dimcollapse.analysis.spectrum import analyze_file
    from dimcollapse.analysis.tables import metrics_row, write_metrics_json, write_spectrum_csv

    start(smk)
    p = smk.params.spectrum
    spec = analyze_file(
        smk.input.features, normalize=p["normalize"], chunk_rows=p["chunk_rows"],
        alpha_range=tuple(p["alpha_req_range"]), n_boot=p["bootstrap"], seed=p["seed"],
    )
    if spec.warning:
        log.warning("%s", spec.warning)
    write_spectrum_csv(smk.output.spectrum, spec)
    g = smk.params.geometry
    views = np.load(smk.input.views, mmap_mode="r") if smk.input.get("views") else None
    geometry = geometry_metrics(
        np.load(smk.input.features, mmap_mode="r"), views=views, normalize=p["normalize"],
        discard_fraction=g["twonn_discard_fraction"], uniformity_t=g["uniformity_t"],
        max_pairs_rows=g["max_pairs_rows"], seed=g["seed"], device=smk.resources.analysis_device,
        **{k: g[k] for k in ("gride_n1", "gride_range_max", "gride_bootstrap", "ph0_max_rows", "ph0_steps",
                             "ph0_subsamples", "ph0_alpha")},
    )
    w = smk.wildcards
    write_metrics_json(smk.output.metrics,
                       metrics_row(spec, dataset=w.dataset, method=w.method, space=w.space, **geometry))
    log.info("N=%d D=%d AUC=%.4f RankMe=%.2f TwoNN=%.2f GRIDE=%.2f PH0=%.2f (%d rows)", spec.n_samples, spec.dim,
             spec.auc, spec.rankme, geometry["twonn"], geometry["gride"], geometry["ph0"], geometry["pairs_rows"])


def metrics(smk: Any) -> None:
    from pathlib import Path

    import pandas as pd

    from dimcollapse.analysis.tables import (
        join_metric_rows,
        read_metrics_json,
        write_metrics_csv,
        write_metrics_markdown,
    )
    from dimcollapse.analysis.temporal import table_metric_columns
    from dimcollapse.extraction.notes import notes_markdown

    start(smk)
    rows = join_metric_rows(
        [read_metrics_json(f) for f in smk.input.spectra], labels=smk.params.labels, lidar=json_rows(smk.input.lidar),
        probes=[r for path in smk.input.probes for r in pd.read_csv(path).to_dict("records")],
        temporal=table_metric_columns(smk.input.temporal),  # frame orders, time steps
    )
    write_metrics_csv(smk.output.table, rows)
    caveats = notes_markdown({Path(p).name.removesuffix(".notes.csv"): p for p in smk.input.notes})
    sections = (caveats, _probe_tracking(smk.input.correlations))
    write_metrics_markdown(smk.output.markdown, rows, "\n".join(part for part in sections if part))


def _probe_tracking(paths: Any) -> str:
    """The "which measure tracks which probe" section of metrics.md ("" without probes)."""
    import pandas as pd

    from dimcollapse.analysis.probes import ACCURACIES, CORRELATED_METRICS
    from dimcollapse.analysis.tables import probe_tracking_markdown

    correlations = [r for path in paths for r in pd.read_csv(path).to_dict("records")]
    return probe_tracking_markdown(correlations, CORRELATED_METRICS, ACCURACIES)


def figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure, spectrum_figure

    start(smk)
    view = smk.params.view
    labels, colors, title = figure_view(view, smk.wildcards.dataset)
    curves = curves_by_label(list(smk.input.spectra), labels)
    fig = spectrum_figure(curves, title=title, colors=colors,
                          y_range=view["figures"]["y_range"])
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def id_scale_figure(smk: Any) -> None:
    import json
    from pathlib import Path

    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.id_scale import id_scale_figure as draw

    start(smk)
    view = smk.params.view
    labels, colors, title = figure_view(view, f"{smk.wildcards.dataset}, intrinsic dimension across scales")
    curves: dict[str, dict[str, Any]] = {}
    for path in smk.input.metrics:
        row = json.loads(Path(path).read_text())
        curves.setdefault(row["space"], {})[labels[row["method"]]] = row.get("gride_curve")
    fig = draw(curves, n1_column=smk.params.gride_n1, colors=colors, title=title)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def overview(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.analysis.figures import metrics_figure, overview_figure, save_figure
    from dimcollapse.analysis.tables import read_metrics_csv
    from dimcollapse.data.interventions import ORIGINAL, split_space

    start(smk)
    view = smk.params.view
    labels, colors, title = figure_view(view)
    by_dataset = {ds: curves_by_label([p for p in smk.input.spectra if Path(p).parts[-3] == ds], labels)
                  for ds in smk.params.datasets}
    fig = overview_figure(by_dataset, normalized_rank=view["figures"]["normalized_rank"], title=title,
                          colors=colors, y_range=view["figures"]["y_range"])
    save_figure(fig, smk.output.overview_png, smk.output.overview_pdf, dpi=view["figures"]["dpi"])
    # the original frames' spaces only, not <space>@<order>
    rows = [r for r in read_metrics_csv(smk.input.metrics) if split_space(r["space"])[1] == ORIGINAL]
    chart = metrics_figure(rows, title=title, colors=colors)
    save_figure(chart, smk.output.metrics_png, smk.output.metrics_pdf, dpi=view["figures"]["dpi"])


def provenance(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.provenance import provenance as record

    start(smk)
    write_json(smk.output[0], record(smk.params.config, Path(smk.scriptdir).parent))
