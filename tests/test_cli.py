"""The ``dimcollapse`` command: numbers against the library, input formats, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dimcollapse.analysis.spectrum import analyze_file
from dimcollapse.cli import main

REPO = Path(__file__).resolve().parent.parent



pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``analyze`` and ``compare`` compute their geometry where ``auto`` says; these tests check
    numbers against the CPU's, so they pin the CPU (a GPU rounds otherwise)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 24)) * np.linspace(2, 0.05, 24) + 0.3
    path = tmp_path_factory.mktemp("cli") / "feats.npy"
    np.save(path, x.astype(np.float32))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as installed: ``python -m dimcollapse.cli`` runs the script entry point."""
    return subprocess.run([sys.executable, "-m", "dimcollapse.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"dimcollapse": "dimcollapse.cli:main"}


@pytest.mark.parametrize("sub", ["analyze", "compare", "probe", "similarity", "store"])
def test_every_subcommand_has_help(sub: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([sub, "--help"])
    assert exit_info.value.code == 0 and f"usage: dimcollapse {sub}" in capsys.readouterr().out


def test_module_entry_point_runs_main() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and all(sub in proc.stdout for sub in ("analyze", "compare", "probe"))


def test_analyze_numbers_equal_analyze_file(features: Path, tmp_path: Path, capsys) -> None:
    out_json, out_png = tmp_path / "m.json", tmp_path / "m.png"
    assert main(["analyze", str(features), "--json", str(out_json), "--plot", str(out_png)]) == 0
    ref = analyze_file(features)
    got = json.loads(out_json.read_text())
    assert got["auc_sigma"] == ref.auc and got["rankme"] == ref.rankme and got["alpha_req"] == ref.alpha_req
    assert got["n_samples"] == 120 and got["dim"] == 24 and got["normalized"] is True
    printed = capsys.readouterr().out
    assert f"{ref.rankme:.2f}" in printed and f"{ref.auc:.4f}" in printed
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert main(["analyze", str(features), "--no-normalize", "--json", str(out_json)]) == 0
    raw = json.loads(out_json.read_text())
    assert raw["normalized"] is False and raw["rankme"] == analyze_file(features, normalize=False).rankme


def test_named_arrays_in_npz_and_pt(features: Path, tmp_path: Path) -> None:
    x = np.load(features)
    np.savez(tmp_path / "f.npz", feats=x, other=x[:, :3])
    torch.save({"feats": torch.from_numpy(x), "step": 3}, tmp_path / "f.pt")
    torch.save(torch.from_numpy(x).half(), tmp_path / "single.pt")
    ref = analyze_file(features).rankme
    for args in (["f.npz", "--array", "feats"], ["f.pt", "--array", "feats"], ["f.pt"]):
        out = tmp_path / "o.json"
        assert main(["analyze", str(tmp_path / args[0]), *args[1:], "--json", str(out)]) == 0
        assert json.loads(out.read_text())["rankme"] == pytest.approx(ref, rel=1e-12)
    assert main(["analyze", str(tmp_path / "single.pt"), "--json", str(out)]) == 0  # fp16 is widened
    assert json.loads(out.read_text())["rankme"] == pytest.approx(ref, rel=1e-2)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    np.save(tmp_path / "three_d.npy", np.zeros((4, 3, 2), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((4, 3), np.int64))
    nan = np.ones((5, 3), np.float32)
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "one_row.npy", np.ones((1, 3), np.float32))
    np.savez(tmp_path / "two.npz", a=np.ones((3, 3)), b=np.ones((3, 3)))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "text.npy").write_text("0.1,0.2\n0.3,0.4\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object))
    return {
        "three_d.npy": ([], "expected a 2-D matrix"),
        "ints.npy": ([], "floating-point"),
        "nan.npy": ([], "NaN or inf (first: row 3)"),
        "one_row.npy": ([], "at least 2 rows"),
        "two.npz": ([], "choose one with --array"),
        "two.npz ": (["--array", "c"], "no array named 'c'"),
        "junk.npy": ([], "not a NumPy .npy file"),
        "text.npy": ([], "not a NumPy .npy file"),
        "objects.npy": ([], "cannot read"),  # a real .npy of Python objects: numpy's own message
        "absent.npy": ([], "no such file"),
    }


def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path: Path, capsys) -> None:
    for name, (extra, message) in bad_inputs(tmp_path).items():
        path = tmp_path / name.strip()
        assert main(["analyze", str(path), *extra]) == 2, name
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dimcollapse: error: {path}:") and message in lines[0]
        assert captured.out == ""
    # the same through the process: exit status 2, one line on stderr
    proc = run("analyze", str(tmp_path / "nan.npy"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nan.npy: 1 rows contain NaN" in proc.stderr


def test_analyze_of_a_constant_matrix_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "zeros.npy", np.zeros((300, 16), np.float32))
    np.save(tmp_path / "same.npy", np.tile(np.arange(1, 17, dtype=np.float32), (300, 1)))
    np.savez(tmp_path / "same.npz", x=np.tile(np.arange(1, 17, dtype=np.float32), (300, 1)))
    for name, what in (("zeros.npy", "all zeros"), ("same.npy", "identical after L2 normalisation"),
                       ("same.npz", "identical after L2 normalisation")):
        path = tmp_path / name
        assert main(["analyze", str(path)]) == 2, name
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dimcollapse: error: {path}: all 300 feature rows are {what}")
        assert "forward pass failed" in lines[0] and captured.out == ""
    assert main(["compare", str(tmp_path / "zeros.npy"), str(tmp_path / "same.npy"), "--plot", str(tmp_path / "c.png")]) == 2
    assert capsys.readouterr().err.startswith(f"dimcollapse: error: {tmp_path / 'zeros.npy'}: all 300")
    proc = run("analyze", str(tmp_path / "zeros.npy"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "all zeros" in proc.stderr


def test_analyze_counts_all_zero_rows(features: Path, tmp_path: Path, capsys) -> None:
    x = np.load(features)
    x[[5, 17]] = 0.0  # two videos whose forward pass failed
    path, out = tmp_path / "two_zero_rows.npy", tmp_path / "m.json"
    np.save(path, x)
    assert main(["analyze", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"warning ({path}): 2 of 120 feature rows are all zeros" in printed
    assert json.loads(out.read_text())["zero_rows"] == 2
    assert main(["analyze", str(features), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["zero_rows"] == 0 and "all zeros" not in capsys.readouterr().out


def test_compare_prints_each_matrix_and_draws_one_figure(features: Path, tmp_path: Path, capsys) -> None:
    small = tmp_path / "small.npy"
    np.save(small, np.load(features)[:20])
    png = tmp_path / "cmp.png"
    assert main(["compare", str(features), str(small), "--labels", "all", "first 20", "--plot", str(png)]) == 0
    printed = capsys.readouterr().out
    assert f"{analyze_file(features).rankme:.2f}" in printed and f"{analyze_file(small).rankme:.2f}" in printed
    assert "N=20 <= D=24" in printed  # the rank-limit warning of the small matrix
    assert png.stat().st_size > 10_000
    assert main(["compare", str(features), str(small), "--labels", "one", "--plot", str(png)]) == 2


def test_probe_with_split_column_and_seeded_split(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30)
    x = (np.eye(3)[y] * 4 + rng.normal(size=(90, 3))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    roles = np.where(np.arange(90) % 3 == 0, "test", "train")
    pd.DataFrame({"id": range(90), "label": [f"c{k}" for k in y], "role": roles}).to_csv(tmp_path / "l.csv",
                                                                                          index=False)
    out = tmp_path / "p.json"
    assert main(["probe", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "l.csv"), "--split-column", "role",
                 "--device", "cpu", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["n_test"] == 30 and got["n_train"] == 60 and got["knn_accuracy"] > 0.9
    assert "column 'role'" in got["split"]
    assert main(["probe", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "l.csv"), "--device", "cpu",
                 "--test-fraction", "0.5", "--seed", "4", "--no-linear", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["n_test"] == 45 and "seed 4" in got["split"] and got["linear_accuracy"] is None
    pd.DataFrame({"label": y[:10]}).to_csv(tmp_path / "short.csv", index=False)
    assert main(["probe", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "short.csv")]) == 2
    assert "10 label rows for 90 feature rows" in capsys.readouterr().err


def test_analyze_prints_and_writes_the_geometry_metrics(features: Path, tmp_path: Path, capsys) -> None:
    from dimcollapse.analysis.geometry import geometry_metrics

    out_json = tmp_path / "g.json"
    assert main(["analyze", str(features), "--json", str(out_json), "--max-pairs-rows", "100"]) == 0
    got = json.loads(out_json.read_text())
    ref = geometry_metrics(np.load(features), max_pairs_rows=100)
    for key in ("twonn", "twonn_mle", "gride", "ph0", "self_clustering", "uniformity", "pairs_rows"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9), key
    printed = capsys.readouterr().out
    assert f"TwoNN intrinsic dimension        {ref['twonn']:14.2f}" in printed
    assert "Self-clustering" in printed and "Uniformity" in printed and got["pairs_rows"] == 100


def test_similarity_prints_linear_cka_and_names_a_row_mismatch(features: Path, tmp_path: Path, capsys) -> None:
    from dimcollapse.analysis.similarity_measures import linear_cka, mutual_knn, unbiased_cka

    x = np.load(features)
    other = tmp_path / "other.npy"
    np.save(other, (x[:, :10] @ np.random.default_rng(1).normal(size=(10, 6))).astype(np.float32))
    out_json = tmp_path / "cka.json"
    assert main(["similarity", str(features), str(other), "--json", str(out_json)]) == 0
    ref = linear_cka(x, np.load(other))
    got = json.loads(out_json.read_text())
    assert got["linear_cka"] == pytest.approx(ref, rel=1e-12)
    assert got["unbiased_cka"] == pytest.approx(unbiased_cka(x, np.load(other)), rel=1e-12)
    assert got["mutual_knn"] == pytest.approx(mutual_knn(x, np.load(other), 10), abs=1e-12) and got["mutual_knn_k"] == 10
    printed = capsys.readouterr().out
    assert f"linear CKA: {ref:.6f}" in printed and f"debiased CKA: {got['unbiased_cka']:.6f}" in printed
    assert f"mutual 10-NN: {got['mutual_knn']:.6f}" in printed
    short = tmp_path / "short.npy"
    np.save(short, x[:50])
    assert main(["similarity", str(features), str(short)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(features) in err and str(short) in err and "120 rows" in err


def test_a_full_disk_while_writing_json_is_one_line_and_exit_1(
    features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dimcollapse.atomic
    from dimcollapse.disk_full import DiskFull

    out = tmp_path / "out.json"

    def full(path: object, *args: object, **kwargs: object) -> None:
        raise DiskFull(f"{path}: the disk is full (needed 2 kB)")

    monkeypatch.setattr(dimcollapse.atomic, "write_json", full)
    assert main(["analyze", str(features), "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: the disk is full" in err and "Traceback" not in err

