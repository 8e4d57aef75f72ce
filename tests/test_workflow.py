"""End to end: the workflow on a tiny study, its outputs, and what reruns when something changes."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import (
    NOTED_VIDEOS,
    REPO,
    add_noted_videos,
    copy_workflow,
    job_stats,
    make_videos,
    planned_jobs,
    snakemake,
    tiny_config,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]

DATASETS = ("real", "gen")
MODELS = {"sup": ("representation",), "simclr": ("representation", "embedding"), "dpc": ("representation",)}


# Session scope: under xdist a worker may run tests of other modules between these, and a
# module-scoped study would then be torn down and run again (minutes).
@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One complete run of the tiny study; tests only read it or dry-run variants of it."""
    workdir = tmp_path_factory.mktemp("study")
    videos = add_noted_videos(make_videos(workdir / "videos"))
    config = tiny_config(workdir, videos)
    cfg_file = write_config(workdir / "config.yaml", config)
    proc = snakemake(workdir, "--configfile", str(cfg_file), "--cores", "2", "--resources", "gpu=1")
    return {"workdir": workdir, "config": config, "configfile": cfg_file, "videos": videos, "log": proc.stderr}


def changed(**jobs: int) -> dict[str, int]:
    """Expected jobs after a config change: the provenance record (config hash) always reruns."""
    return {**jobs, "provenance": 1}


def variant(study: dict, name: str, change) -> Path:
    """A config file with ``change(config)`` applied, next to the study's."""
    config = copy.deepcopy(study["config"])
    change(config)
    return write_config(study["workdir"] / f"{name}.yaml", config)


def analysis_jobs(features: int) -> dict[str, int]:
    """Probe and sample-size jobs after ``features`` feature matrices changed."""
    return {"probe": features, "sample_size": features, "probe_table": 1, "probe_figure": 1, "sample_size_figure": 2,
            "similarity": 2, "similarity_figure": 2}


def test_every_output_exists_and_rows_align(study: dict) -> None:
    w = study["workdir"]
    for ds in DATASETS:
        manifest = pd.read_csv(w / f"results/manifests/{ds}.csv")
        index = pd.read_csv(w / f"results/features/{ds}/index.csv", dtype={"id": str})
        assert len(index) == len(manifest) > 0
        for method, spaces in MODELS.items():
            for space in spaces:
                feats = np.load(w / f"results/features/{ds}/{method}/{space}.npy")
                assert feats.dtype == np.float32 and feats.shape[0] == len(index)
                assert np.isfinite(feats).all()
                assert feats.std(axis=0).max() > 0, "features are constant across videos"
                sidecar = json.loads((w / f"results/features/{ds}/{method}/{space}.json").read_text())
                assert sidecar["n"] == len(index) and sidecar["d"] == feats.shape[1]
                assert sidecar["weights"] == "untrained weights (demo)"
                assert sidecar["protocol"]["crop_size"] == 64
                assert sidecar["versions"]["torch"] == "2.14.1"
                assert sidecar["provenance"] == "results/provenance.json"
                spectrum = pd.read_csv(w / f"results/spectra/{ds}/{method}/{space}.csv")
                assert len(spectrum) == feats.shape[1]
                assert {"eigenvalue", "log_eigenvalue", "cev_sigma", "cev_lambda"} <= set(spectrum.columns)
        for ext in ("png", "pdf"):
            assert (w / f"results/figures/{ds}.{ext}").stat().st_size > 10_000
    dims = {m: np.load(w / f"results/features/real/{m}/representation.npy").shape[1] for m in MODELS}
    assert dims == {"sup": 2048, "simclr": 2048, "dpc": 256}
    assert np.load(w / "results/features/real/simclr/embedding.npy").shape[1] == 128
    metrics = pd.read_csv(w / "results/metrics.csv")
    assert len(metrics) == 2 * 4  # (sup, simclr×2, dpc) per dataset
    assert json.loads((w / "results/provenance.json").read_text())["versions"]["snakemake"] == "9.27.1"


def test_probes_and_sample_size_outputs(study: dict) -> None:
    w = study["workdir"]
    probes = pd.read_csv(w / "results/probes.csv")
    assert len(probes) == 2 * 4 and set(probes["dataset"]) == set(DATASETS)
    real, gen = probes[probes["dataset"] == "real"], probes[probes["dataset"] == "gen"]
    # 2 usable videos per class in "real": one of each goes to test, seeded and stratified
    split = pd.read_csv(w / "results/probes/real/split.csv", dtype={"id": str})
    index = pd.read_csv(w / "results/features/real/index.csv", dtype={"id": str})
    assert list(split["id"]) == list(index["id"]) and (split.groupby("label")["role"].nunique() == 2).all()
    assert real["split"].str.startswith("seeded stratified split").all()
    assert real["knn_accuracy"].between(0, 1).all() and real["linear_accuracy"].between(0, 1).all()
    assert (real["n_test"] == (split["role"] == "test").sum()).all()
    # one video per class in "gen": no test row, so no accuracy, and the table says why
    assert gen["knn_accuracy"].isna().all() and gen["split"].str.contains("no probe").all()
    assert probes["rankme"].notna().all() and probes["lidar"].isna().all()  # no multi-view instance
    metrics_md = (w / "results/metrics.md").read_text()
    assert "k-NN acc. %" in metrics_md and "Linear acc. %" in metrics_md
    subsets = pd.read_csv(w / "results/sample_size/real/simclr/embedding.csv")
    assert subsets["n"].iloc[-1] == len(index) and set(subsets["dim"]) == {128}
    for fig in ("results/figures/probes.png", "results/figures/sample_size/real.png",
                "results/figures/sample_size/gen.pdf"):
        assert (w / fig).stat().st_size > 10_000


def test_figure_is_a_valid_png(study: dict) -> None:
    png = (study["workdir"] / "results/figures/real.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 1600 and height >= 800  # 12-inch-wide figure at 200 dpi


def test_bad_videos_are_reported_and_excluded_for_every_method(study: dict) -> None:
    w = study["workdir"]
    failures = pd.read_csv(w / "results/failures/real.csv")
    assert {"move_left/zero_bytes", "move_up/random_bytes"} <= set(failures["id"])
    assert set(failures.columns) == {"id", "path", "stage", "error"}
    assert failures["error"].str.len().min() > 5
    index = pd.read_csv(w / "results/features/real/index.csv", dtype={"id": str})
    assert not set(failures["id"]) & set(index["id"])
    assert "left out" in study["log"] or "failed" in study["log"]


def test_notes_name_the_short_and_rotated_videos(study: dict) -> None:
    w = study["workdir"]
    notes = pd.read_csv(w / "results/failures/real.notes.csv", dtype=str, keep_default_na=False)
    assert list(notes.columns) == ["id", "path", "note", "detail"]
    noted = {(Path(rel).with_suffix("").as_posix().split("/", 1)[1], kind) for rel, kind in NOTED_VIDEOS.items()}
    assert noted <= set(zip(notes["id"], notes["note"]))
    one_frame = notes[notes["id"] == "still/one_frame"]
    assert len(one_frame) == 2 and one_frame["detail"].str.contains(r"\(0\.03 s, 1 frame\)").all()  # paper's and DPC's sampling
    assert set(notes.loc[notes["note"] == "rotated", "id"]) == {"move_down/rotated"}
    short = set(notes.loc[notes["note"] == "short", "id"])
    assert len(short) > 1  # each class's short demo video too
    index = pd.read_csv(w / "results/features/real/index.csv", dtype={"id": str})
    assert set(notes["id"]) <= set(index["id"])
    section = (w / "results/metrics.md").read_text().split("## Videos used with a caveat")[1]
    assert f"| real | {len(short)} | 1 | `results/failures/real.notes.csv` |" in section
    assert "| gen | " in section


def test_a_job_stopped_by_a_known_error_ends_with_one_line(study: dict, tmp_path: Path) -> None:
    """A constant feature matrix (a broken model) stops its spectrum job with one line, no
    stack; another with two all-zero rows reports them. On a copy of the study."""
    workdir = tmp_path / "study"
    shutil.copytree(study["workdir"], workdir, symlinks=True, ignore=shutil.ignore_patterns("store"))
    constant = workdir / "results/features/real/sup/representation.npy"
    np.save(constant, np.zeros_like(np.load(constant)))
    zeros = workdir / "results/features/gen/dpc/representation.npy"
    x = np.load(zeros)
    x[:2] = 0.0
    np.save(zeros, x)
    targets = ["results/spectra/real/sup/representation.json", "results/spectra/gen/dpc/representation.json"]
    proc = snakemake(workdir, "--configfile", str(study["configfile"]), "--cores", "2", "--keep-going", *targets,
                     check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    line = next(l for l in output.splitlines() if l.startswith("dimcollapse: error: "))
    assert line.startswith(f"dimcollapse: error: {constant.relative_to(workdir)}: all ")
    assert "feature rows are all zeros" in line and "(traceback in logs/spectrum/real/sup/representation.log)" in line
    assert "Traceback" in (workdir / "logs/spectrum/real/sup/representation.log").read_text()
    row = json.loads((workdir / targets[1]).read_text())
    assert row["zero_rows"] == 2 and "2 of 5 feature rows are all zeros" in row["warning"]
    assert "2 of 5 feature rows are all zeros" in output  # the job's log line


def test_demo_dataset_is_generated(study: dict) -> None:
    manifest = pd.read_csv(study["workdir"] / "results/manifests/gen.csv")
    assert len(manifest) == 5 and manifest["label_name"].nunique() == 5


def test_second_run_does_nothing(study: dict) -> None:
    assert planned_jobs(study["workdir"], study["configfile"]) == {}


def test_figure_option_reruns_only_figures(study: dict) -> None:
    cfg = variant(study, "dpi", lambda c: c.setdefault("figures", {}).update(dpi=150))
    assert planned_jobs(study["workdir"], cfg) == changed(figure=2, id_scale_figure=2, overview=1, probe_figure=1,
                                                          sample_size_figure=2, similarity_figure=2)


@pytest.mark.parametrize("method", ["simclr", "sup"])
def test_one_method_extraction_change_reruns_only_its_branch(study: dict, method: str) -> None:
    cfg = variant(study, f"crop-{method}", lambda c: c["models"][method].update(protocol_options={"crop_size": 56}))
    jobs = planned_jobs(study["workdir"], cfg)
    # Cropping is applied when reading the shared clip cache: no decoding, no other model
    # (also when the changed model is the one whose protocol stands for the cache).
    spaces = len(MODELS[method])
    assert jobs == changed(extract=4, notes=2, merge_features=2 * spaces, spectrum=2 * spaces, metrics=1, figure=2,
                           id_scale_figure=2, overview=1, **analysis_jobs(2 * spaces))


def test_checkpoint_change_reruns_only_that_instance(study: dict) -> None:
    cfg = variant(study, "ckpt", lambda c: c["models"]["sup"].update(checkpoint="/weights/SLOW_8x8_R50.pyth"))
    jobs = planned_jobs(study["workdir"], cfg)
    assert jobs == changed(download_checkpoint=1, extract=4, notes=2, merge_features=2, spectrum=2, metrics=1,
                           figure=2, id_scale_figure=2, overview=1, **analysis_jobs(2))


def test_adding_a_method_adds_only_its_jobs(study: dict) -> None:
    cfg = variant(study, "add", lambda c: c["models"].update(moco={"method": "MoCo", "seed": 7}))
    jobs = planned_jobs(study["workdir"], cfg)
    assert jobs == changed(extract=4, notes=2, merge_features=4, spectrum=4, metrics=1, figure=2, id_scale_figure=2,
                           overview=1,
                           **analysis_jobs(4))


def test_adding_an_intervention_plans_only_its_spaces(study: dict) -> None:
    """A frame order is an extraction of its own (its own store key): adding it to an instance
    computes its spaces and the tables that gather rows, nothing of the spaces already there."""
    cfg = variant(study, "order", lambda c: c.update(temporal={"interventions": {"simclr": ["shuffled"]}}))
    jobs = planned_jobs(study["workdir"], cfg)
    # 2 datasets × 2 shards; simclr's representation@shuffled and embedding@shuffled per dataset
    assert jobs == changed(extract_intervened=4, merge_features=4, spectrum=4, probe=4, temporal=2,
                           temporal_figure=2, metrics=1, probe_table=1, probe_figure=1, overview=1)
    # the time axis of a space needs the instance's clips again: its branch reruns, no other
    time = variant(study, "time", lambda c: c["models"]["sup"].update(time_resolved=True))
    jobs = planned_jobs(study["workdir"], time)
    assert jobs == changed(extract=4, merge_features=2, merge_time_resolved=2, temporal=2, temporal_figure=2,
                           spectrum=2, metrics=1, figure=2, id_scale_figure=2, overview=1, notes=2, **analysis_jobs(2))


def test_spectrum_option_reruns_analysis_but_no_extraction(study: dict) -> None:
    cfg = variant(study, "alpha", lambda c: c["spectrum"].update(alpha_req_range=[5, 50]))
    jobs = planned_jobs(study["workdir"], cfg)
    # the subsets against N use the α-ReQ range too; the probes do not depend on it
    assert jobs == changed(spectrum=8, metrics=1, figure=2, id_scale_figure=2, overview=1, sample_size=8,
                           sample_size_figure=2, probe_table=1, probe_figure=1)


def test_geometry_option_reruns_the_spectra_and_their_tables_only(study: dict) -> None:
    cfg = variant(study, "twonn", lambda c: c.setdefault("analysis", {}).update(twonn_discard_fraction=0.2))
    jobs = planned_jobs(study["workdir"], cfg)
    # no extraction, probe, sample-size or similarity job: none of them reads a geometry metric
    assert jobs == changed(spectrum=8, metrics=1, figure=2, id_scale_figure=2, overview=1, probe_table=1,
                           probe_figure=1)
    device = variant(study, "device", lambda c: c.setdefault("analysis", {}).update(device="auto"))
    assert planned_jobs(study["workdir"], device) == changed()


def test_geometry_columns_correlations_and_similarity(study: dict) -> None:
    w = study["workdir"]
    metrics = pd.read_csv(w / "results/metrics.csv")
    for col in ("twonn", "twonn_mle", "self_clustering", "uniformity"):
        assert metrics[col].notna().all(), col
    assert (metrics["pairs_rows"] == metrics["n_samples"]).all() and "alignment" not in metrics  # no views kept
    # 12 and 5 videos: PH₀ and the GRIDE curve's first scales exist; GRIDE at n1 = 8 needs 17 rows
    assert metrics["ph0"].notna().all() and metrics["gride"].isna().all() and (metrics["gride_n1"] == 8).all()
    assert set(metrics["n_samples"]) == {12, 5}
    assert all(setting == f"alpha=1 rows={(n + 1) // 2}-{n} steps=10 subsamples=5 seed=0"
               for n, setting in zip(metrics["n_samples"], metrics["ph0_setting"]))
    row = json.loads((w / "results/spectra/real/simclr/embedding.json").read_text())
    assert {"twonn", "twonn_mle", "twonn_duplicates", "self_clustering", "uniformity", "pairs_rows", "gride", "ph0",
            "gride_curve"} <= set(row)
    assert row["gride_curve"]["n1"] == [1, 2, 4] and row["gride_curve"]["bootstrap_n"] == 100
    corr = pd.read_csv(w / "results/probe_correlations.csv")
    assert {"twonn", "twonn_mle", "ph0", "self_clustering", "uniformity", "rankme"} <= set(corr["metric"])
    assert set(corr["scope"]) <= {"all", "within", "across"} and "all" in set(corr["scope"])
    probes = pd.read_csv(w / "results/probes.csv")
    assert dict(zip(probes["method"], probes["family"])) == {"sup": "slow_r50", "simclr": "slow_r50", "dpc": "dpc"}
    assert "## Which measure tracks which probe" in (w / "results/metrics.md").read_text()
    names = sorted(p.name for p in (w / "results/similarity/real").glob("*.csv"))
    assert names == ["instances.representation.csv"]  # only simclr has an embedding space
    table = pd.read_csv(w / "results/similarity/real/instances.representation.csv", index_col=0)
    assert list(table.index) == list(MODELS) and np.allclose(np.diag(table), 1.0)
    for measure in ("unbiased_cka", "mutual_knn"):
        table = pd.read_csv(w / f"results/similarity/real/{measure}/instances.representation.csv", index_col=0)
        assert list(table.index) == list(MODELS) and np.allclose(np.diag(table), 1.0)
    settings = json.loads((w / "results/similarity/real/settings.json").read_text())
    assert settings["mutual_knn_k"] == 10 and settings["rows"] == 12  # k = min(10, N - 1)
    for ds in DATASETS:
        assert (w / f"results/figures/similarity/{ds}.png").stat().st_size > 10_000
        assert (w / f"results/figures/id_scale/{ds}.png").stat().st_size > 10_000


def test_editing_a_video_reruns_its_dataset(study: dict, tmp_path: Path) -> None:
    w, videos = study["workdir"], study["videos"]
    victim = sorted((videos / "val" / "move_right").iterdir())[0]
    original, stat = victim.read_bytes(), victim.stat()
    try:
        victim.write_bytes(original + b"\0")  # same name, new size and mtime
        jobs = planned_jobs(w, study["configfile"])
    finally:
        victim.write_bytes(original)
        os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs["manifest"] == 1 and jobs["extract"] == 6
    assert jobs["merge_features"] == 4 and jobs["spectrum"] == 4  # only the "real" dataset


def _edited_copy(tmp_path: Path, module: str) -> Path:
    """A copy of the workflow whose ``dimcollapse/<module>`` got one more line."""
    snakefile = copy_workflow(tmp_path)
    path = tmp_path / "dimcollapse" / module
    path.write_text(path.read_text() + "\n# edited\n")
    return snakefile


def test_editing_a_module_reruns_exactly_the_rules_whose_stage_imports_it(study: dict, tmp_path: Path) -> None:
    """analysis/figures.py: every figure rule's stage imports it (directly, or through the
    shared figure_view), no other; their outputs are the DAG's leaves, so nothing else reruns."""
    from dimcollapse.code_versions import stage_modules

    snakefile = _edited_copy(tmp_path, "analysis/figures.py")
    every = planned_jobs(study["workdir"], study["configfile"], "--forceall")
    importers = {r for r in every if r != "extract" and "dimcollapse.analysis.figures" in stage_modules(r)}
    assert {"figure", "overview", "probe_figure", "similarity_figure"} <= importers
    # (and the provenance record: the copy is no git checkout, so its commit param differs)
    assert planned_jobs(study["workdir"], study["configfile"], "--snakefile", str(snakefile)) == changed(
        **{r: every[r] for r in importers})


def test_editing_the_index_code_reruns_the_failures_rule(study: dict, tmp_path: Path) -> None:
    """extraction/features.py builds the aligned index (failures rule) and the merged matrices;
    its edit reruns both (and what reads them), but no extraction, clip cache or manifest."""
    snakefile = _edited_copy(tmp_path, "extraction/features.py")
    jobs = planned_jobs(study["workdir"], study["configfile"], "--snakefile", str(snakefile))
    assert jobs["failures"] == 2 and jobs["merge_features"] > 0
    assert not {"extract", "clip_cache", "manifest", "demo_videos"} & set(jobs)


def test_how_extraction_runs_reruns_nothing(study: dict) -> None:
    """Loader workers, flush interval, lock folder and the analysis device are resources of
    their jobs, not params: changing them reruns nothing."""
    cfg = variant(study, "run", lambda c: (c["extraction"].update(workers=1, flush_every=2),
                                           c.setdefault("analysis", {}).update(device="cpu")))
    assert planned_jobs(study["workdir"], cfg) == changed()


def test_on_error_reruns_the_jobs_that_apply_it(study: dict) -> None:
    """extraction.on_error reaches the manifest and clip-cache jobs through their params."""
    cfg = variant(study, "fail", lambda c: c["extraction"].update(on_error="fail"))
    jobs = planned_jobs(study["workdir"], cfg, "--until", "clip_cache")
    assert jobs == {"manifest": 2, "clip_cache": 4}


def test_lint_is_clean() -> None:
    for cfg in ("config.yaml", "config.demo.yaml"):
        proc = snakemake(REPO, "--configfile", str(REPO / cfg), "--lint", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_builds(study: dict) -> None:
    report = study["workdir"] / "results" / "report.html"
    snakemake(study["workdir"], "--configfile", str(study["configfile"]), "--nolock", "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 50_000 and "RankMe" in html


def test_extraction_reruns_only_for_a_numerics_version_change(study: dict, tmp_path: Path) -> None:
    """A code change that keeps the numbers (here a comment in the models' code) reruns no
    extraction; bumping NUMERICS_VERSION reruns all of it."""
    snakefile = copy_workflow(tmp_path)
    build = tmp_path / "dimcollapse" / "models" / "build.py"
    build.write_text(build.read_text() + "\n# a refactoring that keeps every number\n")

    def dry_run() -> str:
        return snakemake(study["workdir"], "--snakefile", str(snakefile), "--configfile", str(study["configfile"]),
                         "--dry-run", "--nolock", "--cores", "1").stdout

    assert "rule extract" not in dry_run()
    numerics = tmp_path / "dimcollapse" / "extraction" / "numerics.py"
    numerics.write_text(numerics.read_text().replace("NUMERICS_VERSION = ", "NUMERICS_VERSION = 1 + "))
    assert "rule extract" in dry_run()


def test_copied_dataset_and_new_sharding_compute_no_clip(study: dict, tmp_path: Path) -> None:
    """The study's results moved along with a copy of its videos that kept no mtimes, run
    with 3 shards instead of 2: every extraction job of the copied dataset reruns and
    computes 0 clips, its clip caches decode no video again (only the failed rows are
    retried) and keep their bytes, the matrices are byte-identical, and what an earlier
    kill left behind is cleaned. (The generated dataset would only repeat the sharding.)"""
    src = study["workdir"]
    workdir = tmp_path / "study"
    shutil.copytree(src, workdir, symlinks=True, ignore=shutil.ignore_patterns("videos"))
    videos = shutil.copytree(study["videos"], tmp_path / "videos-copy", copy_function=shutil.copy)
    config = copy.deepcopy(study["config"])
    config["datasets"]["real"]["root"] = str(videos)
    config["extraction"]["shards"] = 3
    cfg = write_config(workdir / "moved.yaml", config)
    host = socket.gethostname().split(".")[0]
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the writer of the stray temporary was killed
    stray = workdir / "results" / "features" / "real" / "sup" / f".representation.npy@{host}@{dead.pid}@x.npy.tmp"
    stray.write_bytes(b"half")
    (workdir / "results" / "clips" / "real" / ".killed.partial").mkdir(parents=True)

    markers = sorted((src / "results" / "clips" / "real").glob("*.cache.json"))
    assert markers  # one per sampling in use
    for marker in markers:
        first = json.loads(marker.read_text())
        assert (first["reused"], first["decoded"]) == (0, first["rows"]), marker.name

    features = [f"results/features/real/{method}/{space}.npy" for method, spaces in MODELS.items() for space in spaces]
    # the features only: the analysis after them is the study's (covered by the tests above)
    proc = snakemake(workdir, "--configfile", str(cfg), "--cores", "2", "--resources", "gpu=1", "--", *features)
    jobs = job_stats(proc.stdout + proc.stderr)
    assert jobs["extract"] == len(MODELS) * 3
    assert jobs["clip_cache"] == len(markers)  # the manifest changed (paths): the caches are rebuilt ...
    for marker in markers:
        rebuilt = json.loads((workdir / marker.relative_to(src)).read_text())
        assert rebuilt["decoded"] == rebuilt["failed"], marker.name  # ... decoding no video that worked
        assert rebuilt["reused"] == rebuilt["rows"] - rebuilt["failed"] > 0, marker.name
        cache = marker.name.removesuffix(".cache.json") + "/frames.u8"
        assert (workdir / "results/clips/real" / cache).read_bytes() == (marker.parent / cache).read_bytes()
    n = len(pd.read_csv(workdir / "results/manifests/real.csv"))
    for method, spaces in MODELS.items():
        for space in spaces:
            rel = f"results/features/real/{method}/{space}"
            sidecar = json.loads((workdir / f"{rel}.json").read_text())
            assert (sidecar["clips_computed"], sidecar["clips_reused"]) == (0, n), (method, space)
            assert sidecar["shards"] == 3
            assert (workdir / f"{rel}.npy").read_bytes() == (src / f"{rel}.npy").read_bytes(), rel
    assert not stray.exists() and not (workdir / "results" / "clips" / "real" / ".killed.partial").exists()


def test_store_commands_on_the_study(study: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """The config that made the results uses every key and clip cache; all read back whole."""
    from dimcollapse.cli import main

    results = str(study["workdir"] / "results")
    assert main(["store", "prune", "--dry-run", "--results", results]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert main(["store", "list", "--json", "--results", results]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["store"]) == len(MODELS)  # one key per instance: clips are keyed by content, not dataset
    assert {u["instance"] for k in listed["store"] for u in k["used_by"]} == set(MODELS)
    assert {(c["dataset"], c["state"]) for c in listed["clips"]} == {(ds, "complete") for ds in DATASETS}
    assert len(listed["clips"]) == 2 * len(DATASETS)  # the paper's and DPC's sampling per dataset
    assert main(["store", "verify", "--results", results]) == 0


def test_a_damaged_clip_cache_is_built_again_by_the_next_run(study: dict, tmp_path: Path) -> None:
    """Its marker is dropped as the run starts, so the clip-cache rule runs again (on a copy)."""
    copy_dir = tmp_path / "study"
    shutil.copytree(study["workdir"], copy_dir, symlinks=True)
    frames = next((copy_dir / "results" / "clips" / "real").glob("*/frames.u8"))
    frames.write_bytes(frames.read_bytes()[:100])
    planned = planned_jobs(copy_dir, study["configfile"])
    assert planned["clip_cache"] == 1 and not (frames.parent.parent / f"{frames.parent.name}.cache.json").exists()
