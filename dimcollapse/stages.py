"""One function per workflow rule: the glue between Snakemake and the package.

Each rule's script (``scripts/<rule>.py``) only calls the function of the same name
with the ``snakemake`` object. The functions unpack inputs, outputs, params and
threads, set up logging to the rule's log file and call the typed module APIs; they
hold no computation of their own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dimcollapse.atomic import atomic_path, write_json
from dimcollapse.failures import read_failures, write_failures
from dimcollapse.logs import setup_logging

log = logging.getLogger("dimcollapse.stages")

#: Content hashes of video files, shared by every dataset (see dimcollapse.data.content).
HASH_CACHE = "results/manifests/.content-hashes"
#: The clip-level feature store (see dimcollapse.extraction.store).
FEATURE_STORE = "results/store"


def _start(smk: Any) -> None:
    setup_logging(smk.log[0] if smk.log else None)
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def demo_videos(smk: Any) -> None:
    from dimcollapse.data.demo import generate_demo

    _start(smk)
    demo = smk.params.demo
    paths = generate_demo(
        smk.params.root, seed=demo["seed"], videos_per_class=demo["videos_per_class"], split=smk.params.split
    )
    log.info("wrote %d demo videos under %s", len(paths), smk.params.root)
    write_json(smk.output[0], {"root": smk.params.root, "videos": [str(p) for p in paths], **demo})


def manifest(smk: Any) -> None:
    from dimcollapse.data.manifest import build_manifest, write_manifest

    _start(smk)
    frame, failures = build_manifest(
        smk.params.dataset, workers=smk.threads, on_error=smk.config["extraction"]["on_error"],
        hash_cache=HASH_CACHE,
    )
    if len(frame) < 2:  # a spectrum of one row is empty: stop before any clip is decoded or extracted
        examples = "; ".join(f"{f.path}: {f.error}" for f in failures[:3])
        raise RuntimeError(f"dataset {smk.wildcards.dataset!r}: {len(frame)} usable video(s), at least 2 are needed "
                           f"({len(failures)} failed{', e.g. ' + examples if examples else ''})")
    write_manifest(smk.output.manifest, frame)
    write_failures(smk.output.failures, failures)
    log.info("manifest: %d videos, %d left out (see %s)", len(frame), len(failures), smk.output.failures)


def failures(smk: Any) -> None:
    from dimcollapse.extraction.features import aligned_index
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.shards import load_failures

    _start(smk)
    found = []
    for path in smk.input.stages:
        found += load_failures(path) if str(path).endswith(".npz") else read_failures(path)
    manifest = read_manifest(smk.input.manifest)
    index = aligned_index(manifest, found)
    write_failures(smk.output.failures, found)
    with atomic_path(smk.output.index, suffix=".csv") as tmp:
        index.to_csv(tmp, index=False)
    n_failed = len(manifest) - len(index)
    if n_failed:
        log.warning("%d of %d manifest videos failed in a later stage and are left out for every method",
                    n_failed, len(manifest))
    log.info("%d videos kept; failures of every stage in %s", len(index), smk.output.failures)


def spectrum(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.metrics import geometry_metrics, metrics_row, write_metrics_json, write_spectrum_csv
    from dimcollapse.analysis.spectrum import analyze_file

    _start(smk)
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
        max_pairs_rows=g["max_pairs_rows"], seed=g["seed"], device=smk.config["analysis"]["device"],
        **{k: g[k] for k in ("gride_n1", "gride_range_max", "gride_bootstrap", "ph0_max_rows", "ph0_steps",
                             "ph0_subsamples", "ph0_alpha")},
    )
    w = smk.wildcards
    write_metrics_json(smk.output.metrics,
                       metrics_row(spec, dataset=w.dataset, method=w.method, space=w.space, **geometry))
    log.info("N=%d D=%d AUC=%.4f RankMe=%.2f TwoNN=%.2f GRIDE=%.2f PH0=%.2f (%d rows)", spec.n_samples, spec.dim,
             spec.auc, spec.rankme, geometry["twonn"], geometry["gride"], geometry["ph0"], geometry["pairs_rows"])


def metrics(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.metrics import read_metrics_json, write_metrics_csv, write_metrics_markdown

    _start(smk)
    rows = [read_metrics_json(f) for f in smk.input.spectra]
    # LiDAR and probe accuracies, where computed, join their rows as extra columns
    extra = {key: {"lidar": r["lidar"]} for key, r in _json_rows(smk.input.lidar).items()}
    for path in smk.input.probes:
        for r in pd.read_csv(path).to_dict("records"):
            extra.setdefault((r["dataset"], r["method"], r["space"]), {}).update(
                knn_accuracy=r["knn_accuracy"], linear_accuracy=r["linear_accuracy"])
    for row in rows:
        row["label"] = smk.params.labels[row["method"]]
        row.update(extra.get((row["dataset"], row["method"], row["space"]), {}))
    write_metrics_csv(smk.output.table, rows)
    write_metrics_markdown(smk.output.markdown, rows, _probe_tracking(smk.input.correlations))


def _probe_tracking(paths: Any) -> str:
    """The "which measure tracks which probe" section of metrics.md ("" without probes)."""
    import pandas as pd

    from dimcollapse.analysis.metrics import probe_tracking_markdown
    from dimcollapse.analysis.probes import ACCURACIES, CORRELATED_METRICS

    correlations = [r for path in paths for r in pd.read_csv(path).to_dict("records")]
    return probe_tracking_markdown(correlations, CORRELATED_METRICS, ACCURACIES)


def _figure_view(view: dict[str, Any], subject: str | None = None) -> tuple[dict[str, str], dict[str, str], str]:
    """Labels, colours (same per method in every figure) and title of the study's figures.

    A study whose models are all untrained says so in every title; in one that mixes
    weights, the labels mark the untrained ones (:func:`dimcollapse.config.display_labels`).
    """
    from dimcollapse.config import UNTRAINED
    from dimcollapse.analysis.figures import method_colors

    models = view["models"]
    labels = {m: spec["label"] for m, spec in models.items()}
    title = f"{view['title']}: {subject}" if subject else view["title"]
    if models and all(spec["untrained"] for spec in models.values()):
        title = f"{title} — {UNTRAINED}"
    return labels, method_colors(list(labels.values())), title


def _curves_by_label(paths: list[str], labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{label: {space: curves}}`` from ``results/spectra/<dataset>/<method>/<space>.csv`` paths."""
    from pathlib import Path

    from dimcollapse.analysis.metrics import read_spectrum_csv

    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        p = Path(path)
        out.setdefault(labels[p.parent.name], {})[p.stem] = read_spectrum_csv(p)
    return out


def figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure, spectrum_figure

    _start(smk)
    view = smk.params.view
    labels, colors, title = _figure_view(view, smk.wildcards.dataset)
    curves = _curves_by_label(list(smk.input.spectra), labels)
    fig = spectrum_figure(curves, title=title, colors=colors,
                          y_range=view["figures"]["y_range"])
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def id_scale_figure(smk: Any) -> None:
    import json
    from pathlib import Path

    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.id_scale import id_scale_figure as draw

    _start(smk)
    view = smk.params.view
    labels, colors, title = _figure_view(view, f"{smk.wildcards.dataset}, intrinsic dimension across scales")
    curves: dict[str, dict[str, Any]] = {}
    for path in smk.input.metrics:
        row = json.loads(Path(path).read_text())
        curves.setdefault(row["space"], {})[labels[row["method"]]] = row.get("gride_curve")
    fig = draw(curves, n1_column=smk.params.gride_n1, colors=colors, title=title)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])


def overview(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.analysis.figures import metrics_figure, overview_figure, save_figure
    from dimcollapse.analysis.metrics import read_metrics_csv

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
    from pathlib import Path

    from dimcollapse.models.download import fetch_checkpoint
    from dimcollapse.models.hub import SNAPSHOT_RECORD, fetch_snapshot

    _start(smk)
    if Path(smk.output.checkpoint).name == SNAPSHOT_RECORD:  # a transformers folder or Hub snapshot
        snap = fetch_snapshot(smk.params.source, smk.output.checkpoint, smk.output.sidecar)
        log.info("%s: %s (commit %s), %d files, content SHA-256 %s", snap["source"], snap["directory"],
                 snap["commit"], len(snap["files"]), snap["content_sha256"])
        return
    record = fetch_checkpoint(smk.params.source, smk.output.checkpoint, smk.params.sha256)
    log.info("%s: %d bytes, SHA-256 %s (%s)", record["path"], record["size"], record["sha256"],
             "verified" if record["verified"] else "not pinned: add it to the config as sha256")


def clip_cache(smk: Any) -> None:
    from dimcollapse.data.cache_files import cache_dir_of
    from dimcollapse.data.clips import update_clip_cache
    from dimcollapse.config import sampling_protocols
    from dimcollapse.data.manifest import read_manifest

    _start(smk)
    rows = read_manifest(smk.input.manifest)
    # The output path names the sampling key, which covers everything the cache holds.
    protocol = sampling_protocols(smk.config, smk.wildcards.dataset)[smk.wildcards.pkey]
    progress = _progress_logger("decoded")
    # The cache directory outlives reruns (it is not a declared output) so that a rebuild
    # can reuse the frames of unchanged videos; the marker stands for it in the DAG.
    cache = cache_dir_of(smk.output.marker)
    build = update_clip_cache(rows, protocol, cache, workers=smk.threads,
                              on_error=smk.params.on_error, progress=progress)
    write_failures(smk.output.failures, build.failures)
    write_json(smk.output.marker, {"cache": str(cache), "sampling_key": protocol.sampling_key,
                                   "rows": len(rows), **build.summary()})


def _progress_logger(verb: str, every_s: float = 10.0):  # type: ignore[no-untyped-def]
    """A ``progress(done, total)`` callback that logs at most every ``every_s`` seconds."""
    import time

    start = last = time.perf_counter()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every_s or done == total:
            last = now
            rate = done / max(now - start, 1e-9)
            log.info("%s %d/%d clips, %.2f clips/s, ETA %.0f s", verb, done, total, rate,
                     (total - done) / rate if rate > 0 else float("inf"))

    return progress


def _checkpoint_errors_name_the_source(stage: Callable[[Any], None]) -> Callable[[Any], None]:
    """A checkpoint problem found in the pipeline's copy is reported on the user's file it came from."""

    @functools.wraps(stage)
    def run(smk: Any) -> None:
        try:
            stage(smk)
        except Exception as err:
            from dimcollapse.models.checkpoints import CheckpointError
            from dimcollapse.models.download import name_the_source

            checkpoint = smk.input.get("checkpoint")
            if not isinstance(err, CheckpointError) or checkpoint is None:
                raise
            raise CheckpointError(name_the_source(str(err), checkpoint)) from err

    return run


@_checkpoint_errors_name_the_source
def extract(smk: Any) -> None:
    _start(smk)
    w = smk.wildcards
    ex = smk.config["extraction"]
    if ex["device"] != "cpu":  # before torch is imported: CUDA reads CUDA_VISIBLE_DEVICES once
        from dimcollapse.extraction.gpu_slots import acquire_gpu

        acquire_gpu(ex.get("gpu_lock_dir"))
    from dimcollapse.extraction.extract import extract_shard

    extract_shard(
        job=smk.params.job,
        manifest_path=smk.input.manifest,
        shard=int(w.shard),
        n_shards=int(w.nshards),
        output=smk.output[0],
        store_root=FEATURE_STORE,
        device=ex["device"],
        clip_cache=_clip_cache_dir(smk.input.get("clips")),
        checkpoint=smk.input.get("checkpoint"),
        threads=smk.threads,
        batch_size=ex["batch_size"],
        workers=ex["workers"],
        flush_every=ex["flush_every"],
        max_rel_error=ex["max_rel_error"],
    )


def _clip_cache_dir(marker: str | None) -> str | None:
    """The clip cache directory an extraction job reads, from the marker it depends on."""
    if marker is None:
        return None
    from dimcollapse.data.cache_files import cache_dir_of

    return str(cache_dir_of(marker))


def merge_features(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.extraction.features import merge_space, save_npy, sidecar
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.shards import ShardResult, views_key

    _start(smk)
    shards = [ShardResult.load(p) for p in smk.input.shards]
    n_manifest = len(read_manifest(smk.input.manifest))
    index = pd.read_csv(smk.input.index, dtype={"id": str})
    features = merge_space(shards, index, n_manifest, smk.wildcards.space)
    save_npy(smk.output.features, features)
    if getattr(smk.output, "views", None):
        views = merge_space(shards, index, n_manifest, views_key(smk.wildcards.space))
        save_npy(smk.output.views, views.reshape(len(features), -1, features.shape[1]))
    write_json(smk.output.sidecar, sidecar(
        features, shards, smk.params.job, dataset=smk.wildcards.dataset, space=smk.wildcards.space,
        n_manifest=n_manifest, rows_file=smk.input.index,
    ))
    log.info("%s: %d × %d", smk.output.features, *features.shape)


def _trend_rows(smk: Any) -> list[dict[str, Any]]:
    """Metric rows of the rule's inputs, each labelled with its instance's display name."""
    from dimcollapse.analysis.metrics import read_metrics_json

    labels = {m: spec["label"] for m, spec in smk.params.trends["view"]["models"].items()}
    return [{**row, "label": labels[row["method"]]} for row in map(read_metrics_json, smk.input.metrics)]


def similarity(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.similarity import similarity_tables

    _start(smk)
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
                                max_rows=p["max_pairs_rows"], seed=p["seed"], device=smk.config["analysis"]["device"])
    log.info("%d similarity tables in %s", len(written), smk.output[0])


def similarity_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.similarity import similarity_figure as draw

    _start(smk)
    view = smk.params.view
    labels, _, title = _figure_view(view, f"{smk.wildcards.dataset}, similarity between feature spaces")
    save_figure(draw(smk.input[0], labels=labels, title=title), smk.output.png, smk.output.pdf,
                dpi=view["figures"]["dpi"])


def layer_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import save_figure
    from dimcollapse.analysis.trends import layer_figure as draw

    _start(smk)
    trends = smk.params.trends
    labels, colors, title = _figure_view(trends["view"], f"{smk.wildcards.dataset}, metrics against depth")
    depth = {labels[m]: spaces for m, spaces in trends["depth"].items()}
    fig = draw(_trend_rows(smk), depth, title=title, colors=colors)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=trends["view"]["figures"]["dpi"])


def series_figure(smk: Any) -> None:
    from dimcollapse.analysis.figures import method_colors, save_figure
    from dimcollapse.analysis.trends import series_figure as draw

    _start(smk)
    trends = smk.params.trends
    _, _, title = _figure_view(trends["view"], f"{smk.wildcards.dataset}, metrics against training progress")
    series = {name: [(order, m) for order, m in points] for name, points in trends["series"].items()}
    keys = set(trends["series_key"].values())
    fig = draw(_trend_rows(smk), series, order_label=keys.pop() if len(keys) == 1 else "training progress",
               title=title, colors=method_colors(list(series)))
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=trends["view"]["figures"]["dpi"])


# --------------------------------------------------------------------------------------
# Probes, LiDAR and metrics against sample size


def probe_split(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.probes import assign_split
    from dimcollapse.data.datasets import official_split

    _start(smk)
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

    _start(smk)
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
        reason = f"no probe: the split has {int((roles == 'train').sum())} train and {int((roles == 'test').sum())} test rows"
        log.warning("%s (%s)", reason, description)
        write_json(smk.output[0], {"dataset": w.dataset, "method": w.method, "space": w.space,
                                   "split": f"{description}; {reason}", "knn_accuracy": None,
                                   "linear_accuracy": None})
        return
    out = run_probes(np.asarray(features), split["label"].to_numpy(), split["role"].to_numpy(dtype=object),
                     k=p["k"], temperature=p["temperature"], val_fraction=p["val_fraction"], seed=p["seed"],
                     weight_decays=p["weight_decays"], device=p["device"], knn=p["knn"], linear=p["linear"])
    write_json(smk.output[0], {"dataset": w.dataset, "method": w.method, "space": w.space,
                               "split": description, **out})
    log.info("k-NN %s, linear %s (%d train, %d test, %s)", out["knn_accuracy"], out["linear_accuracy"],
             out["n_train"], out["n_test"], out["device"])


def lidar(smk: Any) -> None:
    import numpy as np

    from dimcollapse.analysis.metrics import LIDAR_CONVENTION, LIDAR_EPS, lidar as lidar_of

    _start(smk)
    views = np.load(smk.input[0], mmap_mode="r")
    value = lidar_of(views, delta=smk.params.delta, source=str(smk.input[0]))
    w = smk.wildcards
    write_json(smk.output[0], {"dataset": w.dataset, "method": w.method, "space": w.space, "lidar": value,
                               "n_samples": views.shape[0], "views": views.shape[1], "dim": views.shape[2],
                               "delta": smk.params.delta, "eps": LIDAR_EPS, "convention": LIDAR_CONVENTION})
    log.info("LiDAR %.3f (N=%d, %d views, D=%d)", value, *views.shape)


def sample_size(smk: Any) -> None:
    import numpy as np
    import pandas as pd

    from dimcollapse.analysis.metrics import SAMPLE_SIZE_COLUMNS, sample_size_curve

    _start(smk)
    p = smk.params.sample_size
    features = np.load(smk.input[0], mmap_mode="r")
    rows = sample_size_curve(features, smallest=p["smallest"], repeats=p["repeats"], seed=p["seed"],
                             normalize=smk.params.normalize, alpha_range=tuple(smk.params.alpha_range))
    with atomic_path(smk.output[0], suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=list(SAMPLE_SIZE_COLUMNS)).to_csv(tmp, index=False)
    log.info("%d subsets, N from %d to %d", len(rows), rows[0]["n"], rows[-1]["n"])


def sample_size_figure(smk: Any) -> None:
    from pathlib import Path

    import pandas as pd

    from dimcollapse.analysis.figures import sample_size_figure as draw, save_figure

    _start(smk)
    view = smk.params.view
    labels, colors, title = _figure_view(view, f"{smk.wildcards.dataset}, metrics against sample size")
    curves: dict[str, dict[str, Any]] = {}
    for path in smk.input:
        p = Path(path)
        curves.setdefault(labels[p.parent.name], {})[p.stem] = pd.read_csv(p).to_dict("records")
    save_figure(draw(curves, title=title, colors=colors), smk.output.png, smk.output.pdf,
                dpi=view["figures"]["dpi"])


def _json_rows(paths: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    import json

    rows = {}
    for path in paths:
        with open(path) as fh:
            row = json.load(fh)
        rows[(row["dataset"], row["method"], row["space"])] = row
    return rows


PROBE_TABLE_COLUMNS = (
    "dataset", "method", "label", "family", "space", "n_samples", "dim", "rank_limited", "split", "n_train",
    "n_test", "n_classes", "knn_k", "knn_temperature", "knn_accuracy", "linear_accuracy", "linear_weight_decay",
    "auc_sigma", "auc_lambda", "rankme", "alpha_req", "lidar", "twonn", "twonn_mle", "gride", "ph0",
    "self_clustering", "uniformity", "alignment",
)
CORRELATION_COLUMNS = (
    "dataset", "accuracy", "metric", "scope", "family", "n_points", "spearman_rho", "ci_low", "ci_high", "ci_level",
    "bootstrap_n", "bootstrap_seed",
)


def probe_table(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.probes import metric_accuracy_correlations

    _start(smk)
    spectra, probes, lidars = (_json_rows(smk.input.metrics), _json_rows(smk.input.probes),
                               _json_rows(smk.input.lidar))
    rows = []
    for key, probe_row in probes.items():
        row = {**spectra[key], **probe_row, "label": smk.params.labels[key[1]],
               "family": smk.params.families[key[1]], "lidar": lidars.get(key, {}).get("lidar")}
        rows.append({c: row.get(c) for c in PROBE_TABLE_COLUMNS})
    rows.sort(key=lambda r: (r["dataset"], r["method"], r["space"]))
    p = smk.params.probes
    corr = metric_accuracy_correlations(rows, n_boot=p["bootstrap"], seed=p["seed"])
    with atomic_path(smk.output.table, suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=list(PROBE_TABLE_COLUMNS)).to_csv(tmp, index=False)
    with atomic_path(smk.output.correlations, suffix=".csv") as tmp:
        pd.DataFrame(corr, columns=list(CORRELATION_COLUMNS)).to_csv(tmp, index=False)
    log.info("%d probe rows, %d correlations", len(rows), len(corr))


def probe_figure(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.analysis.figures import probe_figure as draw, save_figure
    from dimcollapse.analysis.probes import ACCURACIES, CORRELATED_METRICS

    _start(smk)
    rows = pd.read_csv(smk.input.table).to_dict("records")
    corr = [c for c in pd.read_csv(smk.input.correlations).to_dict("records") if c["scope"] == "all"]
    view = smk.params.view
    _, colors, title = _figure_view(view, "collapse metrics against probe accuracy")
    fig = draw(rows, corr, metrics=CORRELATED_METRICS, accuracies=ACCURACIES, title=title, colors=colors)
    save_figure(fig, smk.output.png, smk.output.pdf, dpi=view["figures"]["dpi"])
