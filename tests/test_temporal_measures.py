"""Temporal measures: the temporal share and within-clip RankMe against float64 references, the
intervention measures, the temporal table and its figure, and ``dimcollapse temporal``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dimcollapse.analysis.similarity_measures import linear_cka
from dimcollapse.analysis.spectrum import RANKME_EPS, analyze
from dimcollapse.analysis.temporal import (
    TEMPORAL_COLUMNS,
    intervention_measures,
    mean_cosine,
    metric_columns,
    read_temporal_csv,
    scatter_rankme,
    temporal_markdown,
    temporal_rows,
    temporal_share,
    time_resolved_measures,
    within_clip_scatter,
    write_csv,
)
from dimcollapse.cli import main


def synthetic(n: int = 37, t: int = 6, d: int = 9, seed: int = 0) -> np.ndarray:
    """Clips that differ (a per-clip offset) and move within (a per-step drift plus noise)."""
    rng = np.random.default_rng(seed)
    clips = rng.normal(size=(n, 1, d)) * 3
    drift = rng.normal(size=(n, 1, d)) * np.arange(t)[None, :, None] / t
    return (clips + drift + 0.3 * rng.normal(size=(n, t, d))).astype(np.float32)


def reference_share(x: np.ndarray) -> float:
    """REFERENCE §15, term by term in float64."""
    x = x.astype(np.float64)
    within = ((x - x.mean(axis=1, keepdims=True)) ** 2).sum()
    total = ((x - x.reshape(-1, x.shape[2]).mean(axis=0)) ** 2).sum()
    return within / total


@pytest.mark.parametrize("chunk_clips", [1, 5, 512])
def test_temporal_share_equals_the_float64_reference(chunk_clips: int) -> None:
    x = synthetic()
    share = temporal_share(x, chunk_clips=chunk_clips)
    assert share == pytest.approx(reference_share(x), rel=1e-12)
    assert 0 < share < 1
    assert temporal_share(x[:, ::-1]) == pytest.approx(share, rel=1e-12)  # the order of steps does not matter


def test_temporal_share_is_zero_when_no_clip_changes_over_time() -> None:
    steps = np.repeat(synthetic()[:, :1] * 0.1, 6, axis=1)  # 0.1-multiples: a plain mean would round off 0
    assert temporal_share(steps) == 0.0
    assert temporal_share(steps, chunk_clips=4) == 0.0
    scatter, within = within_clip_scatter(steps)
    assert within == 0.0 and not scatter.any()
    assert math.isnan(scatter_rankme(scatter))  # nothing moves: no direction to count
    assert math.isnan(temporal_share(np.ones((4, 3, 2), np.float32)))  # no variance at all


def test_within_clip_scatter_and_its_rankme_equal_references() -> None:
    x = synthetic(n=20, t=5, d=7)
    deviations = (x.astype(np.float64) - x.mean(axis=1, keepdims=True, dtype=np.float64)).reshape(-1, 7)
    scatter, within = within_clip_scatter(x, chunk_clips=3)
    np.testing.assert_allclose(scatter, deviations.T @ deviations, rtol=1e-10, atol=1e-10)
    assert within == pytest.approx(float((deviations ** 2).sum()), rel=1e-12)
    sigma = np.linalg.svd(deviations, compute_uv=False)
    p = sigma / sigma.sum() + RANKME_EPS
    assert scatter_rankme(scatter) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-8)
    flat = np.zeros_like(x)
    flat[:, :, 0] = x[:, :, 0]  # movement in one direction only
    assert scatter_rankme(within_clip_scatter(flat)[0]) == pytest.approx(1.0, abs=1e-4)


def test_time_resolved_measures_hold_both_spectra() -> None:
    x = synthetic()
    columns, spectra = time_resolved_measures(x)
    assert columns["timesteps"] == 6 and columns["temporal_share"] == pytest.approx(reference_share(x), rel=1e-12)
    steps = analyze(x.reshape(-1, x.shape[2]))
    means = analyze(x.astype(np.float64).mean(axis=1))
    assert columns["timestep_rankme"] == pytest.approx(steps.rankme, rel=1e-10)
    assert columns["clip_mean_rankme"] == pytest.approx(means.rankme, rel=1e-10)
    np.testing.assert_allclose(spectra["clip_means"].cov_eigenvalues, means.cov_eigenvalues, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="N × T′ × D"):
        time_resolved_measures(x[0])


def test_intervention_measures() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8))
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    same = intervention_measures(x, x)
    assert same["linear_cka"] == pytest.approx(1.0) and same["mean_cosine"] == pytest.approx(1.0)
    rotated = intervention_measures(x, 3 * x @ rotation)  # CKA ignores a rotation, cosine does not
    assert rotated["linear_cka"] == pytest.approx(1.0) and rotated["mean_cosine"] < 0.9
    y = rng.normal(size=(50, 8))
    cos = np.mean(np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1))
    assert mean_cosine(x, y, chunk_rows=7) == pytest.approx(cos, rel=1e-12)
    assert intervention_measures(x, y)["linear_cka"] == pytest.approx(linear_cka(x, y))
    with pytest.raises(ValueError, match="rows"):
        intervention_measures(x, y[:10])


def _table(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    x = synthetic()
    rng = np.random.default_rng(5)
    feats = {("net", "representation"): x.mean(axis=1), ("net", "representation@shuffled"): rng.normal(size=(37, 9)),
             ("net", "representation@frozen"): x[:, 3]}
    plan = {"net": {"spaces": ["representation"], "orders": ["shuffled", "frozen"], "time_resolved": ["representation"]}}
    rows, curves = temporal_rows(
        "demo", plan, {"net": "Net"}, features=lambda m, s: feats[(m, s)],
        metrics=lambda m, s: {"n_samples": 37, "dim": 9, "rankme": 5.0 + len(s), "auc_sigma": 0.7, "twonn": 4.0},
        probes=lambda m, s: {"knn_accuracy": 0.5, "linear_accuracy": None},
        time_resolved=lambda m, s: x)
    write_csv(tmp_path / "t.csv", rows, TEMPORAL_COLUMNS)
    return rows, curves


def test_temporal_table_rows_columns_and_markdown(tmp_path: Path) -> None:
    rows, curves = _table(tmp_path)
    assert [r["frame_order"] for r in rows] == ["original", "shuffled", "frozen"]
    original, shuffled, frozen = rows
    assert original["temporal_share"] == pytest.approx(reference_share(synthetic()), rel=1e-12)
    assert original.get("linear_cka") is None and original["rankme"] == 19.0
    assert shuffled["rankme"] == 28.0 and shuffled["knn_accuracy"] == 0.5
    assert frozen["linear_cka"] == pytest.approx(linear_cka(synthetic().mean(axis=1), synthetic()[:, 3]))
    assert {c["vectors"] for c in curves} == {"time_steps", "clip_means"} and len(curves) == 2 * 9
    back = read_temporal_csv(tmp_path / "t.csv")
    assert back[2]["linear_cka"] == pytest.approx(frozen["linear_cka"], rel=1e-15) and back[0]["linear_cka"] is None
    columns = metric_columns(back)[("demo", "net", "representation")]
    assert set(columns) == {"cka_shuffled", "cosine_shuffled", "cka_frozen", "cosine_frozen", "temporal_share",
                            "within_clip_rankme", "timestep_rankme", "timesteps"}
    text = temporal_markdown(rows)
    assert "## Frame-order interventions" in text and "## Time-resolved spaces" in text and "| Net |" in text


def test_temporal_figure_draws_a_panel_per_measure(tmp_path: Path) -> None:
    from dimcollapse.analysis.temporal_figure import temporal_figure

    rows, curves = _table(tmp_path)
    fig = temporal_figure(read_temporal_csv(tmp_path / "t.csv"), curves, title="t", colors={"Net": "#123456"})
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    assert titles[:2] == ["1 − linear CKA with the original frames", "1 − mean cosine with the original frames"]
    assert "k-NN top-1 accuracy (%)" in titles and "Linear probe top-1 accuracy (%)" not in titles  # no value
    assert "Temporal share of variance (0: static)" in titles
    share = next(ax for ax in fig.axes if ax.get_title().startswith("Temporal share"))
    assert share.patches[0].get_height() == pytest.approx(reference_share(synthetic()), rel=1e-6)
    cka = fig.axes[0]
    assert len(cka.patches) == 2 and cka.get_yscale() == "log"  # shuffled and frozen, one instance
    frozen = read_temporal_csv(tmp_path / "t.csv")[2]["linear_cka"]
    assert cka.patches[1].get_y() + cka.patches[1].get_height() == pytest.approx(1 - frozen, rel=1e-6)
    empty = temporal_figure([], title="nothing")
    assert any("no interventions" in t.get_text() for ax in empty.axes for t in ax.texts)


def test_cli_temporal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 6)).astype(np.float32), rng.normal(size=(30, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "t.json"
    assert main(["temporal", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["linear_cka"] == pytest.approx(linear_cka(a, b), rel=1e-12)
    assert result["mean_cosine"] == pytest.approx(mean_cosine(a, b), rel=1e-12)
    assert result["rankme_a"] == pytest.approx(analyze(a).rankme) and result["rankme_b"] == pytest.approx(analyze(b).rankme)
    assert f"linear CKA:  {result['linear_cka']:.6f}" in capsys.readouterr().out
    np.save(tmp_path / "short.npy", b[:20])
    assert main(["temporal", str(tmp_path / "a.npy"), str(tmp_path / "short.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "short.npy" in err and "30 × 6" in err
