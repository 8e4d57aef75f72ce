"""Geometry metrics beyond the spectrum: TwoNN against scikit-dimension, self-clustering,
uniformity, alignment and linear CKA against direct float64 formulas."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.special import logsumexp

from dimcollapse.analysis.geometry import alignment, geometry_metrics, self_clustering, uniformity
from dimcollapse.analysis.neighbours import DuplicateRowsWarning, twonn_dimension, twonn_from_ratios, twonn_ratios
from dimcollapse.analysis.similarity_measures import linear_cka, linear_cka_matrix, mutual_knn, unbiased_cka
from dimcollapse.analysis.pairwise import nearest_neighbours, pair_subsample
from geometry_matrices import isotropic, low_rank, power_law

skdim = pytest.importorskip("skdim")


MATRICES = {"low_rank": low_rank, "isotropic": isotropic, "power_law": power_law,
            "isotropic_10d": lambda: isotropic(d=10)}


@pytest.mark.parametrize("method", ["linear", "mle"])
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_twonn_equals_scikit_dimension(name: str, method: str) -> None:
    x = MATRICES[name]()
    ours = twonn_dimension(x, 0.1, method, device="cpu")
    ref = skdim.id.TwoNN(discard_fraction=0.1, method=method).fit(x).dimension_
    assert ours.dimension == pytest.approx(ref, rel=1e-3)
    assert (ours.n_rows, ours.n_used, ours.n_duplicates) == (len(x), len(x), 0)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # the reference's unused fit at f = 0
def test_twonn_discard_fraction_is_passed_through() -> None:
    x = power_law()
    for f in (0.05, 0.3):
        ref = skdim.id.TwoNN(discard_fraction=f).fit(x).dimension_
        assert twonn_dimension(x, f, device="cpu").dimension == pytest.approx(ref, rel=1e-3)
    ref = skdim.id.TwoNN(discard_fraction=0.0, method="mle").fit(x).dimension_
    assert twonn_dimension(x, 0.0, "mle", device="cpu").dimension == pytest.approx(ref, rel=1e-3)
    with pytest.raises(ValueError, match="discard_fraction > 0"):
        twonn_dimension(x, 0.0, "linear", device="cpu")


def test_neighbours_are_exact_where_float32_distances_cancel() -> None:
    """Points far from the origin but close together: float32 Gram distances are noise at
    that scale, so the certificate must send rows to the exact search, and the result
    must still be the float64 nearest neighbours."""
    rng = np.random.default_rng(3)
    x = (1e3 + rng.standard_normal((300, 50)) * 1e-3).astype(np.float32)
    x[:, 0] += rng.uniform(0, 1e3, 300).astype(np.float32)  # spread along one axis: norms ≫ gaps
    out = nearest_neighbours(x, (1, 2), chunk_rows=64, device="cpu", extra=0)
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    full.sort(axis=1)
    np.testing.assert_allclose(out.at(1), full[:, 0], rtol=1e-6)
    np.testing.assert_allclose(out.at(2), full[:, 1], rtol=1e-6)
    assert out.rechecked > 0


def test_chunk_size_changes_nothing() -> None:
    x = isotropic(n=500)
    a = nearest_neighbours(x, (1, 2, 8), members=5, chunk_rows=37, device="cpu")
    b = nearest_neighbours(x, (1, 2, 8), members=5, chunk_rows=4096, device="cpu")
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.members, b.members)


def test_duplicate_rows_are_dropped_with_a_warning_and_counted() -> None:
    x = isotropic(n=400)
    x[10] = x[20]
    x[30] = x[40] = x[50]  # a triplet: r₁ = r₂ = 0
    with pytest.warns(DuplicateRowsWarning, match="5 rows"):
        ratios = twonn_ratios(x, device="cpu")
    assert ratios.n_duplicates == 5 and ratios.mu.size == 395
    out = twonn_from_ratios(ratios, 0.1, "mle")
    assert (out.n_rows, out.n_used, out.n_duplicates) == (400, 395, 5)
    # the reference, fed the exact (r₁, r₂), drops the same rows
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    full.sort(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skdim.id.TwoNN(dist=True, method="mle").fit(full[:, :2]).dimension_
    assert out.dimension == pytest.approx(ref, rel=1e-5)


def test_more_rows_than_the_cap_use_a_seeded_subsample() -> None:
    x = low_rank(n=600)
    out = twonn_dimension(x, max_rows=250, seed=4, device="cpu")
    pick = pair_subsample(600, 250, 4)
    assert out.n_rows == 250 and pick is not None and len(set(pick)) == 250
    assert out.dimension == twonn_dimension(x[pick], device="cpu").dimension
    assert pair_subsample(600, 600, 4) is None


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def self_clustering_direct(x: np.ndarray) -> float:
    z = _unit(x)
    n, d = z.shape
    return (d * np.sum((z @ z.T) ** 2) - n * (n + d - 1)) / (n * (n - 1) * (d - 1))


@pytest.mark.parametrize("shape", [(300, 20), (30, 80)])
def test_self_clustering_equals_the_float64_formula(shape: tuple[int, int]) -> None:
    x = power_law(*shape)
    assert self_clustering(x) == pytest.approx(self_clustering_direct(x), rel=1e-4, abs=1e-8)


def test_self_clustering_is_one_for_one_direction_and_near_zero_for_random_ones() -> None:
    direction = np.random.default_rng(5).standard_normal(16)
    scales = np.linspace(0.5, 3, 200)[:, None]
    assert self_clustering((scales * direction).astype(np.float32)) == pytest.approx(1.0, abs=1e-6)
    assert abs(self_clustering(isotropic(n=2000, d=16))) < 0.01


@pytest.mark.parametrize("t", [2.0, 0.5])
def test_uniformity_equals_the_float64_formula(t: float) -> None:
    x = power_law(n=400, d=30)
    direct = logsumexp(-t * pdist(_unit(x), "sqeuclidean")) - np.log(400 * 399 / 2)
    assert uniformity(x, t, device="cpu") == pytest.approx(direct, rel=1e-4)
    from dimcollapse.analysis.pairwise import log_mean_pair_kernel, normalized_rows, torch_device

    z = normalized_rows(x, torch_device("cpu"))
    assert log_mean_pair_kernel(z, t, chunk_rows=33) == pytest.approx(direct, rel=1e-4)


def test_alignment_equals_the_direct_formula() -> None:
    rng = np.random.default_rng(6)
    views = rng.standard_normal((50, 3, 12))
    z = views / np.linalg.norm(views, axis=2, keepdims=True)
    pairs = [(0, 1), (0, 2), (1, 2)]
    direct = np.mean([np.sum((z[:, v] - z[:, w]) ** 2, axis=1) for v, w in pairs])
    assert alignment(views, chunk_rows=7) == pytest.approx(direct, rel=1e-10)
    assert alignment(np.repeat(views[:, :1], 2, axis=1)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="Q ≥ 2"):
        alignment(views[:, :1])


def cka_direct(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.mark.parametrize("shape", [(400, 20, 12), (25, 60, 90)])  # D × D form and n × n form
def test_linear_cka_equals_the_float64_formula(shape: tuple[int, int, int]) -> None:
    n, dx, dy = shape
    x = power_law(n, dx)
    y = (x[:, :1] * np.ones(dy) + np.random.default_rng(7).standard_normal((n, dy))).astype(np.float32)
    assert linear_cka(x, y, chunk_rows=64) == pytest.approx(cka_direct(x, y), rel=1e-4)


def test_linear_cka_of_a_matrix_with_itself_and_its_invariances() -> None:
    x = power_law(200, 30)
    q, _ = np.linalg.qr(np.random.default_rng(8).standard_normal((30, 30)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-6)
    y = isotropic(200, 10)
    assert linear_cka(x, 7.5 * y) == pytest.approx(linear_cka(x, y), rel=1e-6)
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y), rel=1e-6)
    assert linear_cka(x, y) < 0.5
    with pytest.raises(ValueError, match="same rows"):
        linear_cka(x, y[:100])


def test_cka_matrix_equals_every_pair_and_computes_each_normaliser_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widths 10, 200, 300 at N = 50: some pairs take the D × D form, one the n × n form."""
    import dimcollapse.analysis.similarity_measures as metrics

    rng = np.random.default_rng(9)
    base = rng.standard_normal((50, 4))
    spaces = [(base @ rng.standard_normal((4, d)) + 0.3 * rng.standard_normal((50, d))).astype(np.float32)
              for d in (10, 200, 300, 12)]
    calls = {"cross": 0, "gram": 0}
    cross, gram = metrics._centred_cross, metrics._centred_gram

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(metrics, "_centred_cross", counted("cross", cross))
    monkeypatch.setattr(metrics, "_centred_gram", counted("gram", gram))
    matrix = linear_cka_matrix(spaces, chunk_rows=16)
    # 6 pairs: 5 cross terms in the D × D form and one (200 × 300) from two Grams; each
    # normaliser once: the narrow spaces' in the D × D form, the wide ones' by their Gram
    assert calls == {"cross": 5 + 2, "gram": 2 + 2}  # every pair on its own: 18 products
    monkeypatch.undo()
    assert np.allclose(np.diag(matrix), 1.0) and np.array_equal(matrix, matrix.T)
    for i in range(4):
        for j in range(i + 1, 4):
            assert matrix[i, j] == pytest.approx(cka_direct(spaces[i], spaces[j]), rel=1e-9)
            assert matrix[i, j] == pytest.approx(linear_cka(spaces[i], spaces[j]), rel=1e-12)
    with pytest.raises(ValueError, match="same rows"):
        linear_cka_matrix([spaces[0], spaces[1][:40]])


def test_geometry_metrics_columns_and_subsample_size() -> None:
    x = low_rank(n=300, d=32)
    views = np.stack([x, x + 0.01], axis=1)
    out = geometry_metrics(x, views=views, max_pairs_rows=200, seed=1, ph0_steps=3, ph0_subsamples=1)
    assert set(out) == {"twonn", "twonn_mle", "twonn_duplicates", "gride", "gride_n1", "gride_curve", "ph0",
                        "ph0_setting", "self_clustering", "uniformity", "pairs_rows", "alignment"}
    assert out["pairs_rows"] == 200 and out["twonn_duplicates"] == 0
    pick = pair_subsample(300, 200, 1)
    assert out["uniformity"] == pytest.approx(uniformity(x[pick], device="cpu"), rel=1e-6)
    assert out["twonn"] == pytest.approx(twonn_dimension(_unit(x[pick]).astype(np.float32), device="cpu").dimension,
                                         rel=1e-9)
    assert "alignment" not in geometry_metrics(x, ph0_steps=3, ph0_subsamples=1)


def test_metrics_table_carries_the_geometry_columns(tmp_path) -> None:
    from dimcollapse.analysis.tables import (
        GEOMETRY_NOTE,
        metrics_markdown,
        metrics_row,
        read_metrics_csv,
        write_metrics_csv,
    )
    from dimcollapse.analysis.spectrum import analyze

    x = power_law(300, 20)
    row = metrics_row(analyze(x), dataset="d", method="m", space="representation",
                      **geometry_metrics(x, max_pairs_rows=100, ph0_steps=3, ph0_subsamples=2))
    write_metrics_csv(tmp_path / "m.csv", [row])
    back = read_metrics_csv(tmp_path / "m.csv")[0]
    assert back["twonn"] == row["twonn"] and back["pairs_rows"] == 100 and isinstance(back["pairs_rows"], int)
    assert back["gride"] == row["gride"] and back["ph0"] == row["ph0"] and back["gride_n1"] == 8
    assert back["ph0_setting"] == "alpha=1 rows=50-100 steps=3 subsamples=2 seed=0"
    assert "gride_curve" not in back and isinstance(row["gride_curve"]["dimension"], list)  # the JSON's only
    text = metrics_markdown([row])
    assert "TwoNN ID" in text and "Self-clustering" in text and "Alignment" not in text
    assert "GRIDE ID" in text and "PH₀ ID" in text
    assert GEOMETRY_NOTE in text and "subsample of 100 rows" in text


def test_which_measure_tracks_which_probe_is_sorted_by_strength() -> None:
    from dimcollapse.analysis.tables import probe_tracking_markdown

    def corr(metric: str, acc: str, rho: float, scope: str = "all", family: str = "", n: int = 6) -> dict:
        return {"dataset": "ucf", "metric": metric, "accuracy": acc, "scope": scope, "family": family,
                "n_points": n, "spearman_rho": rho, "ci_low": rho - 0.1, "ci_high": min(rho + 0.1, 1.0)}

    rows = [corr("rankme", "knn_accuracy", 0.2), corr("rankme", "linear_accuracy", 0.3),
            corr("twonn", "knn_accuracy", -0.9), corr("twonn", "linear_accuracy", -0.7),
            corr("uniformity", "knn_accuracy", float("nan")), corr("uniformity", "linear_accuracy", float("nan")),
            corr("twonn", "knn_accuracy", 0.1, "within", "slow_r50", 4), corr("twonn", "knn_accuracy", 0.8, "across",
                                                                            n=3)]
    text = probe_tracking_markdown(rows, {"rankme": "RankMe", "twonn": "TwoNN", "uniformity": "Uniformity"},
                                   {"knn_accuracy": "k-NN", "linear_accuracy": "Linear"})
    knn = text.split("**ucf**, k-NN")[1].split("**ucf**, Linear")[0]
    table = [line for line in knn.splitlines() if line.startswith("| ") and "ρ" not in line]
    assert [line.split(" | ")[0] for line in table] == ["| TwoNN", "| RankMe", "| Uniformity"]
    assert "| Measure | ρ all (6 points) | ρ within slow_r50 (4) | ρ across 3 families |" in knn
    assert "| TwoNN | -0.90 [-1.00, -0.80] | 0.10 [0.00, 0.20] | 0.80 [0.70, 0.90] |" in knn
    assert "| RankMe | 0.20 [0.10, 0.30] | – | – |" in knn
    assert "| TwoNN | -0.70 [-0.80, -0.60] |" in text.split("**ucf**, Linear")[1]
    assert probe_tracking_markdown([], {}, {}) == ""


def test_similarity_tables_and_their_figure(tmp_path) -> None:
    from dimcollapse.analysis.similarity import (
        SERIES_COLUMNS, read_cka_csv, similarity_figure, similarity_tables,
    )

    rng = np.random.default_rng(9)
    base = rng.standard_normal((60, 8))
    spaces = {("a", "layer.l1"): base @ rng.standard_normal((8, 12)), ("a", "representation"): base,
              ("b", "representation"): rng.standard_normal((60, 8)),
              ("s@1", "representation"): base, ("s@2", "representation"): base * 3.0,
              ("s@3", "representation"): rng.standard_normal((60, 5))}
    plan = {"layers": {"a": ["layer.l1", "representation"]},
            "instances": {"representation": ["a", "b", "s@1"]},
            "series": {"s": [[1, "s@1"], [2, "s@2"], [3, "s@3"]]}, "series_spaces": {"s": ["representation"]}}
    written = similarity_tables(plan, lambda m, s: spaces[(m, s)], tmp_path / "sim", knn_k=5)
    assert sorted(str(p.relative_to(tmp_path / "sim")) for p in written) == [
        "instances.representation.csv", "layers.a.csv", "mutual_knn/instances.representation.csv",
        "mutual_knn/layers.a.csv", "series.s.csv", "unbiased_cka/instances.representation.csv",
        "unbiased_cka/layers.a.csv"]
    names, matrix = read_cka_csv(tmp_path / "sim" / "instances.representation.csv")
    assert names == ["a", "b", "s@1"] and np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    assert matrix[0, 2] == pytest.approx(1.0, abs=1e-6)  # the same matrix under two names
    assert matrix[0, 1] == pytest.approx(linear_cka(spaces[("a", "representation")], spaces[("b", "representation")]),
                                         abs=1e-6)
    import pandas as pd

    _, debiased = read_cka_csv(tmp_path / "sim" / "unbiased_cka" / "instances.representation.csv")
    assert debiased[0, 1] == pytest.approx(unbiased_cka(spaces[("a", "representation")],
                                                         spaces[("b", "representation")]), abs=1e-6)
    _, knn = read_cka_csv(tmp_path / "sim" / "mutual_knn" / "instances.representation.csv")
    assert knn[0, 2] == 1.0 and knn[0, 1] == pytest.approx(
        mutual_knn(spaces[("a", "representation")], spaces[("b", "representation")], 5, device="cpu"), abs=1e-6)
    steps = pd.read_csv(tmp_path / "sim" / "series.s.csv")
    assert tuple(steps.columns) == SERIES_COLUMNS and list(steps["to_order"]) == [2, 3]
    assert steps["cka"].iloc[0] == pytest.approx(1.0, abs=1e-6) and steps["cka"].iloc[1] < 0.9
    assert steps["mutual_knn"].iloc[0] == 1.0 and steps["unbiased_cka"].iloc[1] < steps["cka"].iloc[1]
    assert json.loads((tmp_path / "sim" / "settings.json").read_text()) == {
        "rows": 60, "mutual_knn_k": 5, "mutual_knn_rows": 60, "mutual_knn_seed": 0}
    fig = similarity_figure(tmp_path / "sim", labels={"a": "Model A"}, title="t")
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert "Linear CKA\nlayers of Model A" in titles and "Linear CKA\ninstances, representation space" in titles
    assert "Debiased CKA\nlayers of Model A" in titles and "Mutual 5-NN\ninstances, representation space" in titles
    assert "Series s: consecutive checkpoints" in titles


def test_similarity_figure_without_tables_says_so(tmp_path) -> None:
    from dimcollapse.analysis.similarity import NO_SIMILARITY_NOTE, similarity_figure

    fig = similarity_figure(tmp_path)
    assert [t.get_text() for t in fig.get_axes()[0].texts] == [NO_SIMILARITY_NOTE]


def test_neighbour_searches_on_cuda_use_plain_float32_matmuls_and_restore_the_setting() -> None:
    """The rounding bound of the neighbour search assumes IEEE float32 GEMMs: on CUDA the
    search turns TF32 off for its duration (the flag is set without a GPU, so this runs here)."""
    import torch

    from dimcollapse.analysis.pairwise import _ieee_float32

    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        with _ieee_float32(torch.device("cuda")):
            assert matmul.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"
        with _ieee_float32(torch.device("cpu")):  # the CPU has no TF32 path: nothing changes
            assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = before
