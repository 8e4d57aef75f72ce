"""One function per workflow rule: the glue between Snakemake and the package.

Each rule's script (``scripts/<rule>.py``) only calls the function of the same name
with the ``snakemake`` object. The functions unpack inputs, outputs, params and
threads, set up logging to the rule's log file and call the typed module APIs; they
hold no computation of their own.
"""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.atomic import write_json
from dimcollapse.failures import read_failures, write_failures
from dimcollapse.logs import setup_logging

log = logging.getLogger("dimcollapse.stages")


def _start(smk: Any) -> None:
    setup_logging(smk.log[0] if smk.log else None)
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def demo_videos(smk: Any) -> None:
    from dimcollapse.demo import generate_demo

    _start(smk)
    demo = smk.params.demo
    paths = generate_demo(
        smk.params.root, seed=demo["seed"], videos_per_class=demo["videos_per_class"], split=smk.params.split
    )
    log.info("wrote %d demo videos under %s", len(paths), smk.params.root)
    write_json(smk.output[0], {"root": smk.params.root, "videos": [str(p) for p in paths], **demo})


def manifest(smk: Any) -> None:
    from dimcollapse.manifest import build_manifest, write_manifest

    _start(smk)
    frame, failures = build_manifest(
        smk.params.dataset, workers=smk.threads, on_error=smk.config["extraction"]["on_error"]
    )
    write_manifest(smk.output.manifest, frame)
    write_failures(smk.output.failures, failures)
    log.info("manifest: %d videos, %d left out (see %s)", len(frame), len(failures), smk.output.failures)


def failures(smk: Any) -> None:
    from dimcollapse.features import aligned_index
    from dimcollapse.manifest import read_manifest
    from dimcollapse.shards import ShardResult

    _start(smk)
    found = []
    for path in smk.input.stages:
        found += ShardResult.load(path).failures if str(path).endswith(".npz") else read_failures(path)
    manifest = read_manifest(smk.input.manifest)
    index = aligned_index(manifest, found)
    write_failures(smk.output.failures, found)
    index.to_csv(smk.output.index, index=False)
    n_failed = len(manifest) - len(index)
    if n_failed:
        log.warning("%d of %d manifest videos failed in a later stage and are left out for every method",
                    n_failed, len(manifest))
    log.info("%d videos kept; failures of every stage in %s", len(index), smk.output.failures)


def spectrum(smk: Any) -> None:
    from dimcollapse.metrics import metrics_row, write_metrics_json, write_spectrum_csv
    from dimcollapse.spectrum import analyze_file

    _start(smk)
    p = smk.params.spectrum
    spec = analyze_file(
        smk.input[0], normalize=p["normalize"], chunk_rows=p["chunk_rows"],
        alpha_range=tuple(p["alpha_req_range"]), n_boot=p["bootstrap"], seed=p["seed"],
    )
    if spec.warning:
        log.warning("%s", spec.warning)
    write_spectrum_csv(smk.output.spectrum, spec)
    w = smk.wildcards
    write_metrics_json(smk.output.metrics, metrics_row(spec, dataset=w.dataset, method=w.method, space=w.space))
    log.info("N=%d D=%d AUC=%.4f RankMe=%.2f", spec.n_samples, spec.dim, spec.auc, spec.rankme)


def metrics(smk: Any) -> None:
    from dimcollapse.metrics import read_metrics_json, write_metrics_csv, write_metrics_markdown

    _start(smk)
    rows = [read_metrics_json(f) for f in smk.input]
    for row in rows:
        row["label"] = smk.params.labels[row["method"]]
    write_metrics_csv(smk.output.table, rows)
    write_metrics_markdown(smk.output.markdown, rows)


def _figure_view(view: dict[str, Any]) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels, colours (same per method in every figure) and title of the study's figures."""
    from dimcollapse.config import UNTRAINED
    from dimcollapse.figures import method_colors

    models = view["models"]
    labels = {m: spec["label"] for m, spec in models.items()}
    title = view["title"]
    if any(spec["untrained"] for spec in models.values()):
        title = f"{title} — {UNTRAINED}"
    return labels, method_colors(list(labels.values())), title


def _curves_by_label(paths: list[str], labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{label: {space: curves}}`` from ``results/spectra/<dataset>/<method>/<space>.csv`` paths."""
    from pathlib import Path

    from dimcollapse.metrics import read_spectrum_csv

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        p = Path(path)
        out.setdefault(labels[p.parent.name], {})[p.stem] = read_spectrum_csv(p)
    return out


def figure(smk: Any) -> None:
    from dimcollapse.figures import save_figure, spectrum_figure

    _start(smk)
    view = smk.params.view
    labels, colors, title = _figure_view(view)
    curves = _curves_by_label(list(smk.input.spectra), labels)
    fig = spectrum_figure(curves, title=f"{title}: {smk.wildcards.dataset}", colors=colors,
                          y_range=view["figures"]["y_range"])
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def overview(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.figures import metrics_figure, overview_figure, save_figure
    from dimcollapse.metrics import read_metrics_csv

    _start(smk)
    view = smk.params.view
    labels, colors, title = _figure_view(view)
    by_dataset = {ds: _curves_by_label([p for p in smk.input.spectra if Path(p).parts[-3] == ds], labels)
                  for ds in smk.params.datasets}
    fig = overview_figure(by_dataset, normalized_rank=view["figures"]["normalized_rank"], title=title,
                          colors=colors, y_range=view["figures"]["y_range"])
    save_figure(fig, smk.output.overview_png, smk.output.overview_pdf, dpi=view["figures"]["dpi"])
    chart = metrics_figure(read_metrics_csv(smk.input.metrics), title=title, colors=colors)
    save_figure(chart, smk.output.metrics_png, smk.output.metrics_pdf, dpi=view["figures"]["dpi"])


def provenance(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.provenance import provenance as record

    _start(smk)
    write_json(smk.output[0], record(smk.config, Path(smk.scriptdir).parent))


def download_checkpoint(smk: Any) -> None:
    from dimcollapse.download import fetch_checkpoint

    _start(smk)
    record = fetch_checkpoint(smk.params.source, smk.output.checkpoint, smk.params.sha256)
    log.info("%s: %d bytes, SHA-256 %s (%s)", record["path"], record["size"], record["sha256"],
             "verified" if record["verified"] else "not pinned: add it to the config as sha256")
