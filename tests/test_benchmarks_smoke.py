"""Benchmarks: extract_bench's ratio logic and its smallest run; gpu_check's CPU paths.

No timing assertions: the figures depend on the machine. What is checked is that the
scripts run, measure the same clips on both paths and compute their ratios right.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

from dimcollapse.data.demo import generate_demo

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """A benchmark script as a module (``benchmarks`` is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load("extract_bench")
gpu = _load("gpu_check")


# ------------------------------------------------------------------ extract_bench logic
def test_ratios_are_computed_from_the_figures() -> None:
    ours = bench.Figures(data=10.0, model=5.0, e2e=4.5)
    cached = bench.Figures(data=20.0, model=5.0, e2e=5.0)
    naive = bench.Figures(data=2.0, model=5.0, e2e=1.5)
    before = bench.Figures(data=4.0, model=5.0, e2e=2.5)
    values = [v for _, v in bench.ratios(ours, cached, naive, before)]
    assert values == pytest.approx([0.9, 1.0, 0.75, 3.0, 5.0 / 1.5, 5.0, 1.0, 2.0, 5.0])
    labels = [label for label, _ in bench.ratios(ours, cached, naive, before)]
    assert "min(data-only, model-only)" in labels[0] and "decoding" in labels[0]
    assert "uint8 data-only from clip cache / float path data-only" in labels[-1]


def test_overlap_is_relative_to_the_slower_stage() -> None:
    assert bench.Figures(data=2.0, model=5.0, e2e=1.6).overlap == pytest.approx(0.8)  # data-bound
    assert bench.Figures(data=50.0, model=2.0, e2e=1.9).overlap == pytest.approx(0.95)  # model-bound
    assert bench.Figures(data=0.0, model=2.0, e2e=0.0).overlap == 0.0


def test_best_of_repeats_is_the_fastest() -> None:
    runs = [bench.Rate(10, 5.0), bench.Rate(10, 2.0), bench.Rate(12, 4.0)]
    assert bench.best(runs) is runs[1]
    assert bench.Rate(3, 0.0).per_s == 0.0


def test_stopwatch_adds_up_waiting_and_passes_batches_through() -> None:
    def slow():
        for i in range(3):
            time.sleep(0.02)
            yield i

    watch = bench._Stopwatch(slow())
    assert list(watch) == [0, 1, 2]
    assert watch.wait >= 0.06  # sleep never returns early


def test_int_lists_are_parsed_and_checked() -> None:
    assert bench._int_list("1,2") == [1, 2]
    with pytest.raises(Exception, match="comma-separated"):
        bench._int_list("1,-2")


def test_manifest_rows_probe_and_repeat_clips(tmp_path: Path) -> None:
    generate_demo(tmp_path, videos_per_class=1, classes=("still", "move_left"), duration_range=(2.2, 2.4),
                  short_seconds=0.8)
    (tmp_path / "val" / "broken.mp4").write_bytes(b"not a video")
    paths = bench.find_videos(tmp_path)
    rows, skipped = bench.manifest_rows(paths, tmp_path, clips_per_video=3)
    assert skipped == ["broken.mp4"]
    assert len(rows) == 6 and rows.path.nunique() == 2
    assert rows.id.tolist()[:3] == [f"{rows.id[0].split('#')[0]}#{j}" for j in range(3)]
    one, _ = bench.manifest_rows(paths, tmp_path, limit=1)
    assert len(one) == 1 and "#" not in one.id[0] and (one.duration > 0).all()


def test_smallest_run_measures_the_same_clips_and_prints_its_ratios_last(capsys: pytest.CaptureFixture[str]) -> None:
    args = bench.parse_args(["--videos-per-class", "1", "--limit", "3", "--crop", "32", "--side", "37",
                             "--batch-size", "2", "--threads", "1", "--workers", "1", "--repeat", "1",
                             "--device", "cpu"])
    result = bench.run(args)
    out = capsys.readouterr().out
    assert result["clips"] == 3
    assert result["threads"] == 1 and result["workers"] == 1 and list(result["sweep"]) == [(1, 1)]
    # ours and the naive script decoded the same clips and ran the same weights
    assert result["agreement"] <= bench.FEATURE_TOLERANCE
    ours, cached, naive, before = result["ours"], result["cached"], result["naive"], result["before"]
    for f in (ours, cached, naive, before):
        assert f.data > 0 and f.model > 0 and f.e2e > 0
    assert cached.model == ours.model == before.model and result["views_per_s"] > 0
    assert result["same_features"]  # the uint8 path's features are the float path's, exactly
    assert result["ratios"] == bench.ratios(ours, cached, naive, before)
    assert result["ratios"][0][1] == pytest.approx(ours.e2e / min(ours.data, ours.model))
    assert result["ratios"][3][1] == pytest.approx(ours.e2e / naive.e2e)
    assert result["ratios"][-1][1] == pytest.approx(cached.data / before.data)
    lines = out.rstrip().splitlines()
    assert lines[-10] == "ratios:"
    for line, (label, value) in zip(lines[-9:], result["ratios"]):
        assert label in line and f"= {value:.2f}" in line
    assert "target >= 0.8" in lines[-9] and "target >= 3" in lines[-1]


# ----------------------------------------------------------------------- gpu_check
def test_gpu_check_lists_every_family_row_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``gpu_check.py --device cpu --quick`` runs CUDA's preparation on the CPU; the rows the
    GPU node crashed on (DPC, V-JEPA 2, TimeSformer, an image encoder) are OK."""
    only = ["DPC R18", "V-JEPA 2 (VJEPA2Model)", "TimeSformer (TimesformerModel)", "DINOv2 (Dinov2Model)"]
    assert gpu.main(["--device", "cpu", "--quick", "--parts", "families", "--only", ",".join(only)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if any(o in line for o in only)]
    assert len(rows) == 2 * len(only)  # printed as it runs, and in the summary
    assert all(line.rstrip().endswith("OK") for line in rows)
    assert "channels-last 3D" in next(r for r in rows if "DPC" in r)
    assert "contiguous" in next(r for r in rows if "TimeSformer" in r)


def test_gpu_check_family_failures_are_rows() -> None:
    bad = gpu.check_family(gpu.Spec("too small", "supervised", {"crop_size": 16}, (3, 8, 16, 16)), torch.device("cpu"))
    assert not bad.ok and "crop_size" in bad.failure
    line = gpu.format_families([bad], torch.device("cpu"))[1]
    assert "too small" in line and "FAILED" in line


def test_gpu_check_throughput_table_reports_failures_and_skips() -> None:
    specs = gpu.families.paper_models(32, 32, 32)
    assert [s.label for s in specs] == ["supervised 8x32", "SimCLR 8x32", "MoCo 8x32", "SwAV 8x32", "BYOL 8x32",
                                        "BYOL 16x4 32", "DPC R34-32", "DPC R18-32"]
    assert specs[5].clip == (3, 16, 32, 32) and specs[6].options == {"arch": "resnet34", "sample_size": 32}
    full = gpu.families.paper_models()
    assert full[0].clip == (3, 8, 224, 224) and full[-1].clip == (5, 3, 5, 128, 128)
    args = gpu.parse_args(["--device", "cpu", "--quick"])
    bad = gpu.check_model(gpu.Spec("too small", "supervised", {"crop_size": 16}, (3, 8, 16, 16)), 2,
                          torch.device("cpu"), args)
    assert "crop_size" in bad.error
    lines = gpu.format_throughput([bad], [specs[-1]], cuda=False)
    assert "FAILED" in lines[1] and "crop_size" in lines[1]
    assert "DPC R18-32" in lines[2] and "skipped" in lines[2]


def test_gpu_check_measures_one_model_on_cpu() -> None:
    args = gpu.parse_args(["--device", "cpu", "--quick"])
    row = gpu.check_model(gpu.families.paper_models(32, 32, 32)[-1], 2, torch.device("cpu"), args)
    assert row.error == ""
    assert set(row.results) == {"fp32", "tf32", "bf16"}
    assert all(m.iters == 2 and m.clips_per_s > 0 for m in row.results.values())
    assert 0 < row.errors["bf16"] < 0.1  # bf16 changes the features, a little
    assert row.errors["tf32"] == 0.0  # no TF32 on CPU
    line = gpu.format_throughput([row], [], cuda=False)[1]
    assert line.split()[:3] == ["DPC", "R18-32", "2"]


def test_gpu_check_projection_from_the_measured_rates() -> None:
    def row(label: str, fp32: float, bf16: float):
        r = gpu.Row(gpu.Spec(label, "x", {}, ()), 16)
        r.results = {p: gpu.Measure(v, 1, 1.0, 0) for p, v in (("fp32", fp32), ("tf32", fp32), ("bf16", bf16))}
        return r

    rows = [row(f"{m} 8x224", 300.0, 1500.0) for m in ("supervised", "SimCLR", "MoCo", "SwAV", "BYOL")]
    rows.append(row("DPC R34-224", 100.0, 400.0))
    e2e = {"views": 1000.0, "cache_build": 250.0}
    lines = gpu.projection(rows, e2e)
    n = gpu.K400_VAL
    build = n / 250 + n / (250 / 3)
    fp32 = 5 * n / 300 + n / 100
    bf16 = 5 * n / 1000 + n / 400  # the data path (1000 clips/s) bounds the Slow R50s at bf16
    assert f"{build / 60:.1f} min, once" in lines[0]
    assert f"fp32: extraction {fp32 / 60:.1f} min" in lines[1] and f"total with the caches {(fp32 + build) / 60:.1f}" in lines[1]
    assert f"bf16: extraction {bf16 / 60:.1f} min" in lines[2]
    assert "not computed" in gpu.projection(rows, None)[0]


def test_gpu_check_fingerprints_place_a_difference_in_the_inputs(tmp_path: Path) -> None:
    clips = tmp_path / "results" / "clips" / "demo" / "slow-abc"
    clips.mkdir(parents=True)
    (tmp_path / "results" / "manifests").mkdir(parents=True)
    (tmp_path / "results" / "manifests" / "demo.csv").write_text("id,content\na,c1\nb,c2\n")
    (tmp_path / "results" / "manifests" / "demo.failures.csv").write_text("id\n")
    (clips / "frames.u8").write_bytes(bytes(range(8)))
    (clips / "meta.json").write_text("{}")
    (clips / "index.json").write_text(json.dumps([{"id": "a", "ok": True, "offset": 0, "shape": [1, 1, 4, 1]},
                                                  {"id": "b", "ok": True, "offset": 4, "shape": [1, 1, 4, 1]}]))
    found = gpu.fingerprints(tmp_path)
    assert set(found) == {"videos/demo", "clips/demo/slow-abc"} and found["videos/demo"] == {"a": "c1", "b": "c2"}
    other = json.loads(json.dumps(found))
    other["clips/demo/slow-abc"]["b"] = "0" * 16
    lines = gpu.compare_fingerprints(found, other)
    assert "clips/demo/slow-abc: 1 of 2 identical" in lines[0] and "differ: b" in lines[0]
    assert "videos/demo: 2 of 2 identical" in lines[1]


def test_the_recorded_fingerprints_cover_the_demo() -> None:
    recorded = json.loads((REPO / "benchmarks" / "demo_fingerprints.json").read_text())
    assert len(recorded["videos/demo"]) == 40
    assert sorted(k.split("/")[2].split("-")[0] for k in recorded if k.startswith("clips/")) == ["dpc", "slow", "slow"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
@pytest.mark.parametrize("quick", [True, False])
def test_gpu_check_demo_configs_are_valid_studies(quick: bool, tmp_path: Path) -> None:
    """The configs part (c) runs (the quick one keeps 4 instances): the workflow accepts them."""
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(gpu.demo_config("cpu", quick)))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                           "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]


def test_gpu_check_script_without_cuda_says_so_and_exits_cleanly() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "not run" in proc.stdout


def test_gpu_check_script_names_a_missing_interpreter() -> None:
    env = {**os.environ, "PYTHON": "/nonexistent/python"}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 1 and "/nonexistent/python" in proc.stderr


@pytest.mark.usefixtures("one_torch_thread")  # many small spanning trees
def test_geometry_bench_paths_agree_on_a_tiny_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every path in-process on 300 × 32 (the script runs each in a subprocess)."""
    geometry = _load("geometry_bench")
    path = tmp_path / "x.npy"
    geometry.write_features(path, 300, 32)
    results = {kind: geometry.worker(kind, str(path), 128, 200, "cpu") for kind in geometry.KINDS}
    geometry.print_report(results, 200)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "path" not in line]
    assert [line.split(" | ")[0] for line in table] == [
        "| float32 Gram blocks of one search", "| twonn_dimension", "| TwoNN + GRIDE curve (n1 = 1 … 32), one search",
        "| ph0_dimension (defaults)", "| ph0_dimension (defaults), first 200 rows", "| scikit-dimension TwoNN",
        "| scikit-dimension GRIDE(multiscale=True, range_max=64)",
        "| scikit-dimension PH, same setting, first 200 rows"]
    assert results["twonn"]["dimension"] == pytest.approx(results["skdim_twonn"]["dimension"], rel=1e-3)
    assert results["twonn_gride"]["curve"] == pytest.approx(results["skdim_gride"]["curve"], rel=1e-3)
    assert results["ph0_small"]["dimension"] == pytest.approx(results["skdim_ph"]["dimension"], rel=1e-3)
    tail = out.split("ratios:")[1]
    assert "(TwoNN + GRIDE curve) / TwoNN" in tail and "scikit-dimension PH / ours, same setting" in tail
    assert "GB net of imports" in tail


# ------------------------------------------------------------- transformers rows and table
table = _load("transformers_models")


def test_the_table_measures_the_published_videomae_base(tmp_path: Path) -> None:
    videomae = next(m for m in table.PUBLISHED if m.hub_id == "MCG-NJU/videomae-base")
    facts = table.measure(videomae, tmp_path)
    assert facts.dim == 768 and 90e6 < facts.parameters < 100e6  # ViT-B encoder + the small decoder
    assert (facts.clip["frames"], facts.clip["side_size"], facts.clip["crop_size"]) == (16, 224, 224)
    line = table.table([facts])[2]
    assert "`VideoMAEForPreTraining` | 768 | 16 × 4, 224 → 224" in line and "94.2 M" in line


def test_gpu_check_times_the_transformers_rows_on_cpu(tmp_path: Path) -> None:
    specs = gpu.transformers_specs(tmp_path, quick=True)
    assert [s.label for s in specs] == ["VideoMAE-B 4x32", "V-JEPA 2 ViT-L 4x32"]
    assert all(s.method == "transformers" and s.clip == (3, 4, 32, 32) for s in specs)
    row = gpu.check_model(specs[1], 2, torch.device("cpu"), gpu.parse_args(["--device", "cpu", "--quick"]))
    assert row.error == "" and all(m.clips_per_s > 0 for m in row.results.values())
    assert set(row.errors) == {"tf32", "bf16"}
