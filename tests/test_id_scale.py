"""Intrinsic dimension across scales: the shared neighbour search against float64
distances, GRIDE (one scale and the curve) and PH₀ against scikit-dimension 0.5, the
minimum spanning tree against scipy, and the PH₀ default setting against the full one."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree as scipy_mst
from scipy.spatial.distance import cdist, pdist, squareform

from dimcollapse.analysis.geometry import geometry_metrics
from dimcollapse.analysis.neighbours import (
    DuplicateRowsWarning,
    gride_curve,
    gride_dimension,
    gride_scales,
    ph0_dimension,
    twonn_dimension,
)
from dimcollapse.analysis.pairwise import nearest_neighbours
from dimcollapse.analysis.spanning_tree import minimum_spanning_tree
from geometry_matrices import isotropic, low_rank, noisy_manifold, power_law

skdim = pytest.importorskip("skdim")
# Many small spanning trees: one torch thread avoids OpenMP's barriers on busy cores
pytestmark = pytest.mark.usefixtures("one_torch_thread")


MATRICES = {"low_rank": low_rank, "isotropic": lambda: isotropic(d=12), "power_law": power_law,
            "noisy_manifold": noisy_manifold}


@functools.cache
def matrix(name: str) -> np.ndarray:
    return MATRICES[name]()


@functools.cache
def skdim_curve(name: str) -> object:
    return skdim.id.GRIDE(multiscale=True, range_max=64).fit(matrix(name))


def sorted_distances(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(full, np.inf)
    return np.sort(full, axis=1), np.argsort(full, axis=1, kind="stable")


# ---------------------------------------------------------------- the shared search
@pytest.mark.parametrize(("ranks", "members", "extra"), [((1, 2, 3), 3, 0), ((1, 2, 4, 8, 16), 5, 2)])
def test_neighbours_at_every_rank_equal_float64_where_float32_cancels(ranks: tuple[int, ...], members: int,
                                                                      extra: int) -> None:
    """Rows far from the origin and close together: float32 Gram distances are noise at
    that scale, so only exact recomputation and the fallback search can give the float64
    order; with no extra candidate the bound fails for many rows, which take the fallback."""
    rng = np.random.default_rng(3)
    x = (1e3 + rng.standard_normal((300, 50)) * 1e-3).astype(np.float32)
    x[:, 0] += rng.uniform(0, 1e3, 300).astype(np.float32)
    out = nearest_neighbours(x, ranks, members=members, chunk_rows=64, device="cpu", extra=extra)
    dist, order = sorted_distances(x)
    for r in out.ranks:
        np.testing.assert_allclose(out.at(r), dist[:, r - 1], rtol=1e-6)
    np.testing.assert_array_equal(out.members, np.sort(order[:, :members], axis=1))
    if extra == 0:
        assert out.rechecked > 0


def test_neighbour_sets_break_ties_by_index_like_a_stable_sort() -> None:
    x = isotropic(n=200, d=6)
    x[[10, 20, 30]] = x[40]  # four identical rows: three ties at distance 0 for each
    out = nearest_neighbours(x, (1, 2, 64), members=10, chunk_rows=48, device="cpu")
    dist, order = sorted_distances(x)
    np.testing.assert_array_equal(out.members, np.sort(order[:, :10], axis=1))
    np.testing.assert_allclose(out.at(64), dist[:, 63], rtol=1e-6)
    assert out.at(1)[40] == 0.0 and out.at(2)[40] == 0.0


def test_the_search_asks_for_enough_rows() -> None:
    with pytest.raises(ValueError, match="65 rows"):
        nearest_neighbours(isotropic(n=40), (64,), device="cpu")
    with pytest.raises(ValueError, match="at least 1"):
        nearest_neighbours(isotropic(n=40), (0, 2), device="cpu")


# ---------------------------------------------------------------- GRIDE
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_gride_curve_equals_scikit_dimension(name: str) -> None:
    ref = skdim_curve(name)
    ours = gride_curve(matrix(name), 64, device="cpu")
    assert list(ours.n1) == list(ref.scales_)
    np.testing.assert_allclose(ours.dimension, ref.dimension_scales_, rtol=1e-3)
    np.testing.assert_allclose(ours.error, ref.error_scales_, rtol=1e-3)
    np.testing.assert_allclose(ours.radius, ref.radius_scales_, rtol=1e-6)


@pytest.mark.parametrize(("n1", "n2"), [(1, None), (4, None), (2, 7)])
def test_gride_at_one_scale_equals_scikit_dimension(n1: int, n2: int | None) -> None:
    x = matrix("power_law")
    ref = skdim.id.GRIDE(n1=n1, n2=n2).fit(x)
    ours = gride_dimension(x, n1, n2, device="cpu")
    assert ours.dimension == pytest.approx(ref.dimension_, rel=1e-3)
    assert ours.error == pytest.approx(ref.error_, rel=1e-3)
    assert (ours.n1, ours.n2, ours.n_rows) == (n1, n2 or 2 * n1, 700)


def test_gride_at_n1_1_is_the_twonn_mle_without_discarding() -> None:
    x = matrix("low_rank")
    ref = twonn_dimension(x, 0.0, "mle", device="cpu").dimension
    assert gride_dimension(x, 1, device="cpu").dimension == pytest.approx(ref, rel=1e-9)


def test_noise_inflates_the_nearest_scale_of_the_noisy_manifold() -> None:
    """The README's example: 7.6 at n1 = 1, 5.3 to 4.9 from n1 = 8 to 32 (5-d manifold)."""
    curve = gride_curve(matrix("noisy_manifold"), 64, device="cpu")
    by_n1 = dict(zip(curve.n1, curve.dimension))
    assert round(by_n1[1], 1) == 7.6
    assert 5.25 <= by_n1[8] <= 5.4 and 4.8 <= by_n1[32] <= 4.95
    assert all(a > b for a, b in zip(curve.dimension, curve.dimension[1:]))


def test_gride_bootstrap_intervals_are_seeded_and_bracket_the_estimate() -> None:
    x = matrix("isotropic")
    a = gride_curve(x, 16, bootstrap=60, seed=5, device="cpu")
    b = gride_curve(x, 16, bootstrap=60, seed=5, device="cpu")
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    assert np.all(a.ci_low < a.dimension) and np.all(a.dimension < a.ci_high)
    assert np.all(np.isnan(gride_curve(x, 16, device="cpu").ci_low))
    assert a.to_dict()["n2"] == [2, 4, 8, 16] and a.to_dict()["bootstrap_n"] == 60


def test_gride_drops_duplicate_rows_like_scikit_dimension() -> None:
    x = matrix("isotropic").copy()
    x[5] = x[6]
    with pytest.warns(DuplicateRowsWarning, match="2 rows"):
        ours = gride_dimension(x, 1, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skdim.id.GRIDE(n1=1).fit(x).dimension_
    assert ours.dimension == pytest.approx(ref, rel=1e-3) and ours.n_used <= 698


def test_gride_scales_follow_scikit_dimension() -> None:
    assert gride_scales(3000, 64) == [1, 2, 4, 8, 16, 32]
    assert gride_scales(40, 64) == [1, 2, 4, 8, 16]  # n2 = 32 <= 39 rows - 1
    assert gride_scales(3000, 50) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="n1 < n2"):
        gride_dimension(matrix("isotropic"), 3, 2)


# ---------------------------------------------------------------- MST and PH₀
def scipy_tree_length(x: np.ndarray) -> float:
    """scikit-dimension's own route: a sparse upper triangle keeps zero-length edges."""
    d = squareform(pdist(x.astype(np.float64)))
    i, j = np.triu_indices(len(d), 1)
    return float(scipy_mst(csr_matrix((d[i, j], (i, j)), shape=d.shape)).sum())


@pytest.mark.parametrize("cache_bytes", [64 * 2**20, 0])  # one GEMM pass, or blocks recomputed per round
def test_spanning_tree_equals_scipy(cache_bytes: int) -> None:
    x = low_rank(n=500, d=24)
    x[[3, 4]] = x[5]  # duplicates: joined at length 0
    tree = minimum_spanning_tree(x, chunk_rows=77, cache_bytes=cache_bytes, device="cpu")
    assert tree.edges.shape == (499, 2) and tree.rounds <= 9  # Borůvka: components at least halve
    assert np.sum(tree.lengths == 0) == 2
    assert tree.lengths.sum() == pytest.approx(scipy_tree_length(x), rel=1e-7)
    assert len(set(map(tuple, np.sort(tree.edges, axis=1)))) == 499


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_ph0_equals_scikit_dimension_given_the_same_subsamples(name: str) -> None:
    x = matrix(name)[:400]
    ref = skdim.id.PH(n_range_min=150, n_range_max=300, range_type="num", nsteps=4, subsamples=2,
                      random_state=3).fit(x)
    ours = ph0_dimension(x, sizes=(150, 300), steps=4, subsamples=2, seed=3, device="cpu")
    assert ours.dimension == pytest.approx(ref.dimension_, rel=1e-3)
    np.testing.assert_allclose(ours.log_lengths, ref.y_, rtol=1e-6)


def test_ph0_defaults_follow_scikit_dimension_below_the_row_cap() -> None:
    """Up to max_rows rows the default sizes are scikit-dimension's (half of N to N)."""
    x = matrix("low_rank")[:300]
    ref = skdim.id.PH(nsteps=10, subsamples=5, random_state=0).fit(x)
    ours = ph0_dimension(x, device="cpu")
    assert ours.dimension == pytest.approx(ref.dimension_, rel=1e-3)
    assert ours.setting == "alpha=1 rows=150-300 steps=10 subsamples=5 seed=0"
    assert ph0_dimension(matrix("low_rank"), max_rows=300, device="cpu").setting.startswith("alpha=1 rows=150-300 ")


def test_ph0_at_the_defaults_is_stable_against_the_full_setting() -> None:
    """scikit-dimension's full setting (100 sizes × 10 subsamples) against the defaults
    (10 × 5) on 400 rows of a 4-d linear manifold. At this size the defaults' estimate
    varies by about ±8 % over seeds (about ±3 % at the 1,000–2,000-row subsamples of
    20,000 rows); a default setting that changed the estimate itself would miss."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((400, 4)) @ rng.standard_normal((4, 32))).astype(np.float32)
    full = ph0_dimension(x, steps=100, subsamples=10, device="cpu")
    ours = ph0_dimension(x, device="cpu")
    assert (full.rows_min, full.rows_max) == (ours.rows_min, ours.rows_max) == (200, 400)
    assert ours.dimension == pytest.approx(full.dimension, rel=0.1)
    assert 3.6 < full.dimension < 4.4


def test_ph0_of_identical_rows_is_an_error() -> None:
    with pytest.raises(ValueError, match="identical"):
        ph0_dimension(np.ones((50, 4), dtype=np.float32), device="cpu")
    with pytest.raises(ValueError, match="smallest subsample"):
        ph0_dimension(isotropic(n=10), sizes=(8, 12), device="cpu")


# ---------------------------------------------------------------- in the metrics
def test_geometry_metrics_search_once_for_twonn_and_every_gride_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    import dimcollapse.analysis.pairwise as pairwise

    calls = []
    search = pairwise.nearest_neighbours
    monkeypatch.setattr(pairwise, "nearest_neighbours", lambda x, ranks, **kw: calls.append(set(ranks)) or search(
        x, ranks, **kw))
    x = matrix("low_rank")[:300]
    out = geometry_metrics(x, gride_n1=4, gride_range_max=32, gride_bootstrap=20, ph0_steps=3, ph0_subsamples=2)
    assert calls == [{1, 2, 4, 8, 16, 32}]
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    assert out["gride"] == pytest.approx(gride_dimension(unit, 4, device="cpu").dimension, rel=1e-9)
    assert out["gride_n1"] == 4 and out["gride_curve"]["n1"] == [1, 2, 4, 8, 16]
    assert out["gride_curve"]["dimension"][2] == pytest.approx(out["gride"], rel=1e-12)
    assert out["ph0"] == pytest.approx(ph0_dimension(unit, steps=3, subsamples=2, device="cpu").dimension, rel=1e-6)
    assert out["ph0_setting"] == "alpha=1 rows=150-300 steps=3 subsamples=2 seed=0"


def test_geometry_metrics_leave_what_few_rows_cannot_give_undefined() -> None:
    x = isotropic(n=12, d=5)
    with pytest.warns(UserWarning, match="GRIDE at n1=8 needs more than 16 rows"):
        out = geometry_metrics(x, ph0_steps=3, ph0_subsamples=1)
    assert np.isnan(out["gride"]) and np.isfinite(out["twonn"]) and np.isfinite(out["ph0"])
    assert out["gride_curve"]["n1"] == [1, 2, 4]


def test_id_scale_figure_draws_a_line_and_band_per_instance_and_a_panel_per_space() -> None:
    from matplotlib.collections import PolyCollection

    from dimcollapse.analysis.id_scale import NO_CURVE_NOTE, id_scale_figure

    x = matrix("low_rank")[:200]
    with_band = gride_curve(x, 32, bootstrap=20, device="cpu").to_dict()
    without = gride_curve(x[:, :3], 32, device="cpu").to_dict()
    fig = id_scale_figure({"representation": {"A": with_band, "B": without}, "embedding": {"A": with_band, "B": None}},
                          n1_column=8, colors={"A": "C3"}, title="t")
    axes = [ax for ax in fig.get_axes() if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["representation space", "embedding space"]
    rep = axes[0]
    assert [line.get_label() for line in rep.get_lines()] == ["A", "B", "n1 = 8 (gride column)"]
    assert list(rep.get_lines()[0].get_xdata()) == [1, 2, 4, 8, 16] and rep.get_xscale() == "log"
    assert sum(isinstance(c, PolyCollection) for c in rep.collections) == 1  # only A has intervals
    assert len(axes[1].get_lines()) == 2  # B undefined there: A and the marker
    empty = id_scale_figure({"representation": {"A": None}})
    assert [t.get_text() for t in empty.get_axes()[0].texts] == [NO_CURVE_NOTE]
