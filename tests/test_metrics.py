"""Spectrum CSVs, the metrics table (CSV, JSON rows, Markdown)."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest

from dimcollapse.analysis.tables import (
    CI_COLUMNS,
    METRIC_COLUMNS,
    SPECTRUM_COLUMNS,
    metrics_markdown,
    metrics_row,
    read_metrics_csv,
    read_metrics_json,
    read_spectrum_csv,
    write_metrics_csv,
    write_metrics_json,
    write_metrics_markdown,
    write_spectrum_csv,
)
from dimcollapse.analysis.spectrum import RankLimitedWarning, analyze


def spectrum_of(n: int, d: int, data_seed: int = 0, **kwargs):
    rng = np.random.default_rng(data_seed)
    x = (rng.standard_normal((n, d)) * np.linspace(1, 0.05, d) + 0.2).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankLimitedWarning)
        return analyze(x, **kwargs)


def test_spectrum_csv_round_trips_exactly(tmp_path):
    spec = spectrum_of(300, 20)
    path = tmp_path / "spectra" / "demo" / "simclr" / "representation.csv"
    write_spectrum_csv(path, spec)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SPECTRUM_COLUMNS
    assert [int(r["index"]) for r in rows] == list(range(20))
    back = read_spectrum_csv(path)
    np.testing.assert_array_equal(back.cov_eigenvalues, spec.cov_eigenvalues)
    np.testing.assert_array_equal(back.log_spectrum, spec.log_spectrum)
    np.testing.assert_array_equal(back.singular_values, spec.singular_values)
    np.testing.assert_array_equal(back.cev, spec.cev)
    np.testing.assert_array_equal(back.cev_variance, spec.cev_variance)
    assert back.auc == spec.auc and back.auc_variance == spec.auc_variance
    assert back.n_samples == 300 and back.dim == 20 and not back.rank_limited


def test_spectrum_csv_leaves_indices_beyond_n_empty(tmp_path):
    spec = spectrum_of(12, 20)
    path = tmp_path / "s.csv"
    write_spectrum_csv(path, spec)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    assert all(r["cev_sigma"] != "" for r in rows[:12])
    assert all(r["cev_sigma"] == r["cev_lambda"] == r["singular_value"] == "" for r in rows[12:])
    assert all(math.isfinite(float(r["log_eigenvalue"])) for r in rows)
    back = read_spectrum_csv(path)
    assert back.cev.shape == (12,) and back.rank_limited and back.auc == spec.auc


def test_spectrum_csv_reader_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("index,eigenvalue\n0,1.0\n")
    with pytest.raises(ValueError, match=f"{path}.*missing columns"):
        read_spectrum_csv(path)
    path.write_text(",".join(SPECTRUM_COLUMNS) + "\n0,1.0,0.0,1.0,x,1.0,5\n")
    with pytest.raises(ValueError, match=f"{path}.*malformed"):
        read_spectrum_csv(path)


def test_metrics_row_holds_every_scalar_metric():
    spec = spectrum_of(200, 16)
    row = metrics_row(spec, dataset="demo", method="simclr", space="embedding", label="SimCLR")
    assert list(row)[: len(METRIC_COLUMNS)] == list(METRIC_COLUMNS)
    assert row["label"] == "SimCLR"
    assert row["auc_sigma"] == spec.auc and row["auc_lambda"] == spec.auc_variance
    assert row["rankme"] == spec.rankme and row["alpha_req"] is spec.alpha_req
    assert (row["dims_90_lambda"], row["dims_95_lambda"], row["dims_99_lambda"]) == (
        spec.dims_90, spec.dims_95, spec.dims_99)
    assert (row["n_samples"], row["dim"], row["rank_limited"]) == (200, 16, False)
    assert not any(c in row for c in CI_COLUMNS)
    with pytest.raises(ValueError, match="overwrite"):
        metrics_row(spec, dataset="demo", method="m", space="s", rankme=1.0)


def test_metrics_row_has_intervals_when_bootstrapped():
    spec = spectrum_of(120, 24, n_boot=5, seed=2)
    row = metrics_row(spec, dataset="d", method="m", space="representation")
    assert (row["auc_sigma_ci_low"], row["auc_sigma_ci_high"]) == spec.bootstrap.intervals["auc"]
    assert (row["rankme_ci_low"], row["rankme_ci_high"]) == spec.bootstrap.intervals["rankme"]
    assert row["bootstrap_n"] == 5 and row["bootstrap_seed"] == 2 and row["ci_level"] == 0.95
    assert row["ci_method"] == "bias-corrected"


def test_metrics_csv_and_json_round_trip(tmp_path):
    plain = metrics_row(spectrum_of(10, 16), dataset="hmdb51", method="moco", space="representation")
    boot = metrics_row(spectrum_of(120, 24, n_boot=4), dataset="demo", method="moco", space="embedding")
    assert plain["rank_limited"] and math.isnan(plain["alpha_req"])
    path = tmp_path / "metrics.csv"
    write_metrics_csv(path, [plain, boot])
    back = read_metrics_csv(path)
    assert [r["dataset"] for r in back] == ["demo", "hmdb51"]  # sorted by dataset, method, space
    assert back[0] == pytest.approx(boot)
    assert back[1]["rankme"] == plain["rankme"] and back[1]["rank_limited"] is True
    assert math.isnan(back[1]["alpha_req"]) and back[1]["auc_sigma_ci_low"] is None
    assert "N=10 <= D=16" in back[1]["warning"]
    jpath = tmp_path / "m.json"
    write_metrics_json(jpath, plain)
    again = read_metrics_json(jpath)
    undefined = ("alpha_req", "alpha_req_r2")  # NaN for D=16 (fewer than 3 points in 10..99)
    assert all(math.isnan(again.pop(k)) for k in undefined)
    assert again == {k: v for k, v in plain.items() if k not in undefined}
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,method\nx,y\n")
    with pytest.raises(ValueError, match=f"{bad}.*missing columns"):
        read_metrics_csv(bad)


def test_metrics_markdown_table(tmp_path):
    rows = [
        metrics_row(spectrum_of(10, 16), dataset="hmdb51", method="moco", space="representation", label="MoCo"),
        metrics_row(spectrum_of(120, 24, n_boot=4), dataset="demo", method="simclr", space="embedding"),
    ]
    text = metrics_markdown(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| Dataset | Method | Space | N | D | AUC (σ, paper)")
    assert lines[1].count("---") == lines[0].count("|") - 1
    body = [line for line in lines[2:] if line.startswith("|")]
    assert len(body) == 2
    assert body[0].startswith("| demo | simclr | embedding | 120 | 24 |")
    assert "[" in body[0]  # bootstrap interval
    assert body[1].startswith("| hmdb51 | MoCo | representation | 10† | 16 |")
    assert "| – |" in body[1]  # α-ReQ undefined for D=16
    assert "† N ≤ D" in text and "95% bootstrap intervals over videos (bias-corrected)" in text
    path = tmp_path / "metrics.md"
    write_metrics_markdown(path, rows)
    assert path.read_text() == text


def test_series_members_are_listed_in_the_order_of_their_value(tmp_path):
    spec = spectrum_of(30, 8)
    names = ["mine@20", "mine@100", "tv", "mine@5", "mine@0.5"]
    rows = [metrics_row(spec, dataset="d", method=m, space="representation", label=f"L {m}") for m in names]
    body = [line for line in metrics_markdown(rows).splitlines()[2:] if line.startswith("| d ")]
    assert [line.split(" | ")[1] for line in body] == ["L mine@0.5", "L mine@5", "L mine@20", "L mine@100", "L tv"]
    write_metrics_csv(tmp_path / "m.csv", rows)
    assert [r["method"] for r in read_metrics_csv(tmp_path / "m.csv")] == [
        "mine@0.5", "mine@5", "mine@20", "mine@100", "tv"]


def test_metric_rows_join_lidar_probes_and_temporal_columns_on_their_space() -> None:
    from dimcollapse.analysis.tables import join_metric_rows

    spectra = [{"dataset": "d", "method": "a", "space": "representation", "rankme": 3.0},
               {"dataset": "d", "method": "b", "space": "embedding", "rankme": 2.0}]
    rows = join_metric_rows(
        spectra, labels={"a": "A", "b": "B"},
        lidar={("d", "a", "representation"): {"lidar": 1.5}},
        probes=[{"dataset": "d", "method": "b", "space": "embedding", "knn_accuracy": 0.5, "linear_accuracy": 0.25}],
        temporal={("d", "a", "representation"): {"temporal_share": 0.1}},
    )
    assert rows == [
        {**spectra[0], "label": "A", "lidar": 1.5, "temporal_share": 0.1},
        {**spectra[1], "label": "B", "knn_accuracy": 0.5, "linear_accuracy": 0.25},
    ]
