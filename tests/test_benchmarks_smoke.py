"""Benchmarks: extract_bench's ratio logic and its smallest run; gpu_check's CPU paths.

No timing assertions: the figures depend on the machine. What is checked is that the
scripts run, measure the same clips on both paths and compute their ratios right.
"""

from __future__ import annotations

import importlib.util
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
    values = [v for _, v in bench.ratios(ours, cached, naive)]
    assert values == pytest.approx([0.9, 1.0, 0.75, 3.0, 5.0 / 1.5, 5.0, 1.0])
    labels = [label for label, _ in bench.ratios(ours, cached, naive)]
    assert "min(data-only, model-only)" in labels[0] and "decoding" in labels[0]


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
    ours, cached, naive = result["ours"], result["cached"], result["naive"]
    for f in (ours, cached, naive):
        assert f.data > 0 and f.model > 0 and f.e2e > 0
    assert cached.model == ours.model
    assert result["ratios"] == bench.ratios(ours, cached, naive)
    assert result["ratios"][0][1] == pytest.approx(ours.e2e / min(ours.data, ours.model))
    assert result["ratios"][3][1] == pytest.approx(ours.e2e / naive.e2e)
    lines = out.rstrip().splitlines()
    assert lines[-8] == "ratios:"
    for line, (label, value) in zip(lines[-7:], result["ratios"]):
        assert label in line and f"= {value:.2f}" in line
    assert "target >= 0.8" in lines[-7]


# ----------------------------------------------------------------------- gpu_check
def test_gpu_check_table_reports_failures_and_skips() -> None:
    specs = gpu.study_models(32, 32, 32)
    assert [s.label for s in specs] == ["supervised 8x32", "SimCLR 8x32", "MoCo 8x32", "SwAV 8x32", "BYOL 8x32",
                                        "BYOL 16x4 32", "DPC R34-32", "DPC R18-32"]
    assert specs[5].clip == (3, 16, 32, 32) and specs[6].options == {"arch": "resnet34", "sample_size": 32}
    full = gpu.study_models()
    assert full[0].clip == (3, 8, 224, 224) and full[-1].clip == (5, 3, 5, 128, 128)
    args = gpu.parse_args(["--device", "cpu", "--quick"])
    bad = gpu.check_model(gpu.Spec("too small", "supervised", {"crop_size": 16}, (3, 8, 16, 16)), 2,
                          torch.device("cpu"), args)
    assert "crop_size" in bad.error
    lines = gpu.format_table([bad], [specs[-1]], cuda=False)
    assert "FAILED" in lines[1] and "crop_size" in lines[1]
    assert "DPC R18-32" in lines[2] and "skipped" in lines[2]


def test_gpu_check_measures_one_model_on_cpu() -> None:
    args = gpu.parse_args(["--device", "cpu", "--quick"])
    row = gpu.check_model(gpu.study_models(32, 32, 32)[-1], 2, torch.device("cpu"), args)
    assert row.error == ""
    assert set(row.results) == {"fp32", "bf16"}
    assert all(m.iters == 2 and m.clips_per_s > 0 for m in row.results.values())
    assert 0 < row.bf16_error < 0.1  # bf16 changes the features, a little
    assert row.tf32_error == 0.0  # no TF32 on CPU
    line = gpu.format_table([row], [], cuda=False)[1]
    assert line.split()[:3] == ["DPC", "R18-32", "2"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
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
