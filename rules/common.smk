# Helpers shared by all rule files (resolved config, paths, input functions and
# params). Resolution logic lives in dimcollapse.config so scripts and workflow agree.

import re
import sys
from pathlib import Path

# The package sits beside the Snakefile; make it importable without installation.
sys.path.insert(0, str(Path(workflow.basedir)))

from dimcollapse.config import display, instances, jobs
from dimcollapse.config import temporal as tcfg
from dimcollapse.data.interventions import INTERVENTIONS, ORIGINAL, split_space
from dimcollapse.code_versions import stage_code  # each rule's code param, derived from its imports
from dimcollapse.extraction.numerics import NUMERICS_VERSION
from dimcollapse.provenance import git_commit
from dimcollapse.utils import nvidia_gpu_visible

MODELS = instances.model_instances(config)
DATASETS = instances.study_datasets(config)
STUDY_MODELS = instances.study_models(config)
EXTRACTION = config["extraction"]
N_SHARDS = EXTRACTION["shards"]
# Frame orders per instance (temporal.interventions; rules/temporal.smk).
ORDERS = tcfg.interventions(config, MODELS)
# Every feature space of the study: representation, embedding, layer.<module> spaces, and
# <space>@<order> for the frame-order interventions.
SPACES = sorted({s for m in MODELS.values() for s in m.spaces}
                | {s for m, orders in ORDERS.items() for s in tcfg.intervened_spaces(MODELS[m], orders)})
ENVS = {f: f"../envs/{f}.yaml" for f in ("video", "extract", "analysis")}
# Per-view features (N × views × D) beside the view-averaged ones, when asked for.
VIEWS_OUTPUT = (
    {"views": "results/features/{dataset}/{method}/{space}_views.npy"}
    if EXTRACTION["keep_views"]
    else {}
)


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    method="|".join(map(re.escape, MODELS)),  # expanded instances, e.g. a series' name@200
    space="|".join(map(re.escape, SPACES)),
    shard=r"\d+",
    order="|".join(INTERVENTIONS),
    pkey=r"[A-Za-z0-9_.=-]+",


def protocol(dataset, method):
    """Sampling protocol of a (dataset, model instance) job."""
    return jobs.job_protocol(config, dataset, MODELS[method])


# Clip caches: one per (dataset, sampling key), shared by every model whose protocol
# decodes the same frames (crop and normalisation are applied when reading).
CLIP_CACHES = sorted((ds, key) for ds in DATASETS for key in jobs.sampling_protocols(config, ds))
# A cache set aside as damaged (or deleted) keeps its marker until the run that met it ends;
# drop such markers as a run starts, so the cache is built again (README, "Clip cache").
if workflow.is_main_process and EXTRACTION["clip_cache"]:
    from dimcollapse.data.cache_files import drop_stale_marker  # torch-free: every run starts here

    for ds, key in CLIP_CACHES:
        if reason := drop_stale_marker(f"results/clips/{ds}/{key}"):
            print(f"clip cache results/clips/{ds}/{key} is built again: {reason}", file=sys.stderr)


def spaces_of(method):
    return MODELS[method].spaces


def feature_files(dataset, method):
    return [f"results/features/{dataset}/{method}/{s}.npy" for s in spaces_of(method)]


def spectrum_files(dataset, method, ext="csv"):
    return [f"results/spectra/{dataset}/{method}/{s}.{ext}" for s in spaces_of(method)]


def shard_files(dataset, method, order=ORIGINAL):
    """Shards of one instance; those of a frame-order intervention in a folder of their own."""
    folder = "shards" if order == ORIGINAL else f"shards/{order}"
    return [
        f"results/features/{dataset}/{method}/{folder}/{i}-of-{N_SHARDS}.npz"
        for i in range(N_SHARDS)
    ]


def clip_cache(dataset, method):
    """Marker of the clip cache that a (dataset, model instance) job reads (the cache
    directory is the marker's path without ``.cache.json``)."""
    return f"results/clips/{dataset}/{protocol(dataset, method).sampling_key}.cache.json"


def dataset_clip_failures(dataset):
    """Failure tables of every clip cache of the dataset (one per sampling in use)."""
    return [f"results/clips/{ds}/{key}.failures.csv" for ds, key in CLIP_CACHES if ds == dataset]


def gpu_jobs():
    """GPU resource of extraction jobs: 1 when they will run on CUDA.

    `auto` asks for a GPU only when an NVIDIA GPU is visible to this process (checked
    without importing torch); cluster profiles that submit from a GPU-less login node
    set the resource explicitly (profiles/slurm).
    """
    return _gpu_resource(EXTRACTION["device"])


# How an extraction job runs, not what it computes: resources of the job, so that changing
# them reruns nothing (a rerun would take every clip from the feature store and then redo
# every result after it). What decides the numbers is in the job's params.
EXTRACTION_RUN = {
    "device": EXTRACTION["device"],
    "batch_size": EXTRACTION["batch_size"],
    "loader_workers": EXTRACTION["workers"],
    "flush_every": EXTRACTION["flush_every"],
    "gpu_lock_dir": EXTRACTION.get("gpu_lock_dir") or "",
}



def all_targets():
    targets = ["results/metrics.csv", "results/metrics.md", "results/provenance.json"]
    for ds in DATASETS:
        targets += [f"results/figures/{ds}.png", f"results/figures/{ds}.pdf"]
        targets += [f"results/figures/id_scale/{ds}.{ext}" for ext in ("png", "pdf")]
        targets += [f"results/failures/{ds}.csv", f"results/failures/{ds}.notes.csv"]
        for m in STUDY_MODELS:
            targets += feature_files(ds, m) + spectrum_files(ds, m)
    for ds in DATASETS:
        targets += [f"results/figures/{kind}/{ds}.{ext}" for kind in trend_figures() for ext in ("png", "pdf")]
    targets += [f"results/figures/overview.{ext}" for ext in ("png", "pdf")]
    if EXTRACTION["clip_cache"]:  # requested, so that a dropped marker (damaged cache) rebuilds it
        targets += [f"results/clips/{ds}/{key}.cache.json" for ds, key in CLIP_CACHES]
    targets += [f"results/figures/metrics.{ext}" for ext in ("png", "pdf")]
    targets += probe_targets()  # rules/probes.smk
    targets += similarity_targets()  # rules/similarity.smk
    targets += temporal_targets()  # rules/temporal.smk
    return targets


def listing_config(wildcards):
    """The dataset keys that decide which videos are listed (not e.g. protocol overrides)."""
    from dimcollapse.data.datasets import LISTING_KEYS

    cfg = config["datasets"][wildcards.dataset]
    return {k: v for k, v in cfg.items() if k in LISTING_KEYS or k == "demo"}


def demo_input(wildcards):
    """A generated (demo) dataset's manifest waits for the generator."""
    if "demo" in config["datasets"][wildcards.dataset]:
        return f"resources/demo/{wildcards.dataset}.json"
    return []


def dataset_fingerprint(wildcards):
    """Names, sizes and mtimes of a real dataset: the manifest reruns when they change.

    Generated datasets are tracked through the generator's output instead (their
    files do not exist when the DAG is first built).
    """
    cfg = config["datasets"][wildcards.dataset]
    if "demo" in cfg:
        return "generated"
    from dimcollapse.data.manifest import fingerprint

    return fingerprint(cfg)


def stage_failures(wildcards):
    """Every table that can name a failed video of the dataset.

    With the clip cache, decoding happens (once) there; without it, in the extraction
    shards of every model instance.
    """
    ds = wildcards.dataset
    tables = [f"results/manifests/{ds}.failures.csv"]
    if EXTRACTION["clip_cache"]:
        return tables + dataset_clip_failures(ds)
    return tables + [f for m in STUDY_MODELS for f in shard_files(ds, m)]


def checkpoint_source(wildcards):
    return MODELS[wildcards.method].checkpoint


def extract_input(wildcards):
    ds, m = wildcards.dataset, wildcards.method
    inputs = {"manifest": f"results/manifests/{ds}.csv"}
    if EXTRACTION["clip_cache"]:
        inputs["clips"] = clip_cache(ds, m)
    if MODELS[m].checkpoint_path:
        inputs["checkpoint"] = MODELS[m].checkpoint_path
    return inputs


def frame_order(wildcards):
    """The frame order of a job: its order wildcard, or its space's (representation@shuffled)."""
    if hasattr(wildcards, "order"):
        return wildcards.order
    return split_space(wildcards.space)[1] if hasattr(wildcards, "space") else ORIGINAL


def extraction_params(wildcards):
    """The extract rule's job (see dimcollapse.config.temporal.extraction_job)."""
    ds, m = wildcards.dataset, wildcards.method
    return tcfg.extraction_job(config, MODELS[m], protocol(ds, m), frame_order(wildcards))


SPECTRUM = config["spectrum"]
# Geometry metrics computed with the spectrum; the device changes no number, so it is a
# resource of the job (analysis_device), not a param.
ANALYSIS = config["analysis"]
GEOMETRY = {k: v for k, v in ANALYSIS.items() if k not in ("device", "mutual_knn_k")}
# What the similarity matrices' mutual k-NN needs (rules/similarity.smk)
SIMILARITY = {k: ANALYSIS[k] for k in ("mutual_knn_k", "max_pairs_rows", "seed")}


def spectrum_input(wildcards):
    """The features, and their per-view features where kept (for alignment)."""
    ds, m, s = wildcards.dataset, wildcards.method, wildcards.space
    inputs = {"features": f"results/features/{ds}/{m}/{s}.npy"}
    if multi_view(ds, m):
        inputs["views"] = f"results/features/{ds}/{m}/{s}_views.npy"
    return inputs


FIGURES = config["figures"]


def study_metrics():
    """Metrics rows of the study: every space, the intervened ones too."""
    return [
        f for ds in DATASETS for m in STUDY_MODELS for f in (*spectrum_files(ds, m, "json"), *intervened_files(ds, m, "spectra", "json"))
    ]


# Labels in tables and figures: untrained instances marked where the study mixes weights.
LABELS = display.display_labels({m: MODELS[m] for m in STUDY_MODELS})
# Model family of each instance: the probe correlations' "within / across families"
FAMILIES = {m: MODELS[m].model_family for m in STUDY_MODELS}


def figure_params():
    return {
        "figures": FIGURES,
        "title": config["title"],
        "models": {
            m: {"label": LABELS[m], "untrained": MODELS[m].untrained}
            for m in STUDY_MODELS
        },
    }


# Trend figures: metrics against depth (instances with layers) and against training
# progress (checkpoint series); each exists only when the study has such instances.
LAYERED = [m for m in STUDY_MODELS if MODELS[m].layers]
SERIES = {
    name: members
    for name, members in instances.model_series({m: MODELS[m] for m in STUDY_MODELS}).items()
}


def similarity_plan():
    """What the similarity rule compares (see dimcollapse.analysis.similarity)."""
    shared = {}
    for m in STUDY_MODELS:
        for s in spaces_of(m):
            shared.setdefault(s, []).append(m)
    series = {name: members for name, members in SERIES.items() if len(members) > 1}
    return {
        "layers": {m: display.depth_order(MODELS[m]) for m in LAYERED},
        "instances": {s: ms for s, ms in sorted(shared.items()) if len(ms) > 1},
        "series": {name: [[MODELS[m].series_order, m] for m in members] for name, members in series.items()},
        "series_spaces": {name: list(spaces_of(members[0])) for name, members in series.items()},
    }


def similarity_targets():
    plan = similarity_plan()
    if not (plan["layers"] or plan["instances"] or plan["series"]):
        return []
    return [f"results/figures/similarity/{ds}.{ext}" for ds in DATASETS for ext in ("png", "pdf")]


def trend_figures():
    return (["layers"] if LAYERED else []) + (["series"] if SERIES else [])


def trend_params():
    return {
        "view": figure_params(),
        "depth": {m: display.depth_order(MODELS[m]) for m in LAYERED},
        "series": {
            name: [[MODELS[m].series_order, m] for m in members] for name, members in SERIES.items()
        },
        "series_key": {name: MODELS[members[0]].series_key for name, members in SERIES.items()},
    }


# Probes, LiDAR and metrics against sample size (rules/probes.smk).
PROBES = config["probes"]
SAMPLE_SIZE = config["sample_size"]


def multi_view(dataset, method):
    """LiDAR needs several views per video: kept views of a multi-view protocol."""
    return EXTRACTION["keep_views"] and protocol(dataset, method).views > 1


def probe_files(dataset=None):
    if not PROBES["enabled"]:
        return []
    return [
        f"results/probes/{ds}/{m}/{s}.json"
        for ds in DATASETS
        if dataset in (None, ds)
        for m in STUDY_MODELS
        for s in (*spaces_of(m), *intervened_spaces(m))
    ]


def lidar_files():
    return [
        f"results/lidar/{ds}/{m}/{s}.json"
        for ds in DATASETS
        for m in STUDY_MODELS
        if multi_view(ds, m)
        for s in spaces_of(m)
    ]


def sample_size_files(dataset):
    return [f"results/sample_size/{dataset}/{m}/{s}.csv" for m in STUDY_MODELS for s in spaces_of(m)]


def probe_table_files():
    return ["results/probes.csv"] if PROBES["enabled"] else []


def probe_correlation_files():
    return ["results/probe_correlations.csv"] if PROBES["enabled"] else []


def probe_targets():
    targets = probe_table_files() + lidar_files()
    if PROBES["enabled"]:
        targets += ["results/probe_correlations.csv"]
        targets += [f"results/figures/probes.{ext}" for ext in ("png", "pdf")]
    if SAMPLE_SIZE["enabled"]:
        targets += [f"results/figures/sample_size/{ds}.{ext}" for ds in DATASETS for ext in ("png", "pdf")]
    return targets


def _gpu_resource(device):
    """1 when a job will run on CUDA, as for extraction (`auto`: when a GPU is visible)."""
    if device == "auto":
        return int(nvidia_gpu_visible())
    return int(device == "cuda")


def probe_gpu():
    """GPU resource of probe jobs."""
    return _gpu_resource(PROBES["device"])


def analysis_gpu():
    """GPU resource of the jobs that run on `analysis.device`: spectrum (its neighbour
    searches and Gram blocks) and similarity (its mutual k-NN search)."""
    return _gpu_resource(ANALYSIS["device"])


# Does the model use time? Frame-order interventions and time-resolved spaces (rules/temporal.smk).
TEMPORAL_PLAN = tcfg.temporal_plan(config, MODELS, STUDY_MODELS)


def intervened_spaces(method):
    """The <space>@<order> spaces of an instance (none without interventions)."""
    return tcfg.intervened_spaces(MODELS[method], ORDERS.get(method, ()))


def intervened_files(dataset, method, kind, ext):
    """Files of an instance's intervened spaces under results/<kind>/ (features, spectra, probes)."""
    return [f"results/{kind}/{dataset}/{method}/{s}.{ext}" for s in intervened_spaces(method)]


def temporal_tables():
    return [f"results/temporal/{ds}.csv" for ds in DATASETS] if TEMPORAL_PLAN else []


def temporal_targets():
    figures = [f"results/figures/temporal/{ds}.{ext}" for ds in DATASETS for ext in ("png", "pdf")]
    return temporal_tables() + figures if TEMPORAL_PLAN else []


def temporal_input(wildcards):
    """What the temporal table of a dataset reads: the features of every space with an
    intervention and its twins, their metrics and probes, and the time-resolved arrays."""
    ds = wildcards.dataset
    inputs = {"features": [], "metrics": [], "probes": [], "time": []}
    for m, entry in TEMPORAL_PLAN.items():
        spaces = (entry["spaces"] if entry["orders"] else list(entry["time_resolved"])) + list(intervened_spaces(m))
        inputs["features"] += [f"results/features/{ds}/{m}/{s}.npy" for s in spaces]
        inputs["metrics"] += [f"results/spectra/{ds}/{m}/{s}.json" for s in spaces]
        if PROBES["enabled"]:
            inputs["probes"] += [f"results/probes/{ds}/{m}/{s}.json" for s in spaces]
        inputs["time"] += [f"results/features/{ds}/{m}/{s}_time.npy" for s in entry["time_resolved"]]
    return inputs
