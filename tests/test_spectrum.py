"""Spectrum and collapse metrics: exactness against independent references, random-matrix
theory, low rank, collapse, N <= D, and the streaming statistics."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
import warnings

import numpy as np
import pytest

from dimcollapse.analysis.moments import MomentStats
from dimcollapse.analysis.spectrum import (
    DEFAULT_ALPHA_RANGE,
    RANKME_EPS,
    RankLimitedWarning,
    analyze,
    analyze_file,
    bootstrap,
    spectrum_of,
)

EPS64 = np.finfo(np.float64).eps


def features(n: int, d: int, seed: int = 0, offset: float = 0.3) -> np.ndarray:
    """Float32 features with a decaying spectrum and a common-mode offset (like pooled ReLU features)."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(1.0, 0.02, d)
    return (rng.standard_normal((n, d)) * scales + offset).astype(np.float32)


def reference(x: np.ndarray, normalize: bool = True) -> dict[str, np.ndarray | float]:
    """Plain float64 numpy: normalise, np.cov, eigvalsh, SVDs of the centred and uncentred data."""
    z = x.astype(np.float64)
    if normalize:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(np.cov(z.T))[::-1]
    sigma = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    cev = np.cumsum(sigma) / sigma.sum()
    su = np.linalg.svd(z, compute_uv=False)
    p = su / su.sum() + RANKME_EPS
    return {"lam": lam, "sigma": sigma, "cev": cev, "auc": cev.mean(), "rankme": np.exp(-np.sum(p * np.log(p)))}


def stats_with_eigenvalues(lam: np.ndarray, n: int = 1000) -> MomentStats:
    """Statistics whose covariance is exactly diag(lam), for metrics on a known spectrum."""
    stats = MomentStats(lam.size, normalize=False)
    stats.count = float(n)
    stats.m2 = np.diag(np.asarray(lam, dtype=np.float64) * (n - 1))
    return stats


# -- exactness ---------------------------------------------------------------------------


def test_matches_float64_numpy_reference():
    x = features(500, 40)
    spec = analyze(x)
    ref = reference(x)
    assert spec.cov_eigenvalues.shape == (40,)
    np.testing.assert_allclose(spec.cov_eigenvalues, ref["lam"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(spec.log_spectrum, np.log(ref["lam"]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(spec.singular_values, ref["sigma"], rtol=1e-10)
    np.testing.assert_allclose(spec.cev, ref["cev"], rtol=1e-12)
    np.testing.assert_allclose(spec.cev_variance, np.cumsum(ref["lam"]) / ref["lam"].sum(), rtol=1e-12)
    assert spec.auc == pytest.approx(ref["auc"], rel=1e-12)
    assert spec.rankme == pytest.approx(ref["rankme"], rel=1e-9)
    assert spec.n_samples == 500 and spec.dim == 40 and spec.normalized
    assert not spec.rank_limited and spec.warning == ""


def test_alpha_req_matches_an_independent_weighted_fit():
    spec = analyze(features(2000, 160, seed=3))
    lam = spec.cov_eigenvalues
    k = np.arange(11, 101)  # indices 10..99 -> ranks 11..100
    # polyfit's weights multiply residuals, so sqrt(1/k) gives weights 1/k on squared residuals
    slope, intercept = np.polyfit(np.log(k), np.log(lam[10:100]), 1, w=np.sqrt(1.0 / k))
    assert spec.alpha_req == pytest.approx(-slope, rel=1e-9)
    fit = intercept + slope * np.log(k)
    y = np.log(lam[10:100])
    r2 = 1 - np.sum((y - fit) ** 2) / np.sum((y - y.mean()) ** 2)
    assert spec.alpha_req_r2 == pytest.approx(r2, rel=1e-9)
    assert spec.alpha_req_range == DEFAULT_ALPHA_RANGE


@pytest.mark.parametrize("n,d", [(600, 64), (50, 64), (64, 64)])
def test_matches_the_papers_code_path(n, d):
    torch = pytest.importorskip("torch")
    pca_mod = pytest.importorskip("sklearn.decomposition")
    x = features(n, d, seed=1)
    # the paper: torch F.normalize (float32) -> np.cov -> np.linalg.svd -> log; sklearn PCA
    z = torch.nn.functional.normalize(torch.from_numpy(x), dim=1).numpy()
    d_paper = np.linalg.svd(np.cov(np.transpose(z)))[1]
    s = pca_mod.PCA().fit(z).singular_values_
    cev_paper = np.cumsum(s) / s.sum()
    auc_paper = np.cumsum(s).sum() / s.shape[0] / s.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankLimitedWarning)
        spec = analyze(x)
    assert spec.log_spectrum.shape == (d,)
    assert spec.cev.shape == s.shape == (min(n, d),)
    big = d_paper > 1e-10 * d_paper[0]
    np.testing.assert_allclose(spec.log_spectrum[big], np.log(d_paper[big]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(spec.cev, cev_paper, rtol=0, atol=1e-5)
    assert spec.auc == pytest.approx(auc_paper, abs=1e-5)
    assert np.all(np.isfinite(spec.log_spectrum))


# -- random matrix theory ------------------------------------------------------------------


@pytest.mark.parametrize("n,d", [(8000, 400), (4000, 1000)])
def test_marchenko_pastur_edges_and_participation_ratio(n, d):
    gamma = d / n
    x = np.random.default_rng(7).standard_normal((n, d))
    spec = analyze(x, normalize=False)
    lower, upper = (1 - np.sqrt(gamma)) ** 2, (1 + np.sqrt(gamma)) ** 2
    lam = spec.cov_eigenvalues
    assert lam[0] == pytest.approx(upper, abs=0.04)
    assert lam[-1] == pytest.approx(lower, abs=0.04)
    assert np.mean((lam > lower - 0.04) & (lam < upper + 0.04)) == 1.0
    assert spec.participation_ratio == pytest.approx(d / (1 + gamma), rel=0.02)
    assert not spec.normalized


# -- low rank, collapse, N <= D ----------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_exact_low_rank(normalize):
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.standard_normal((30, 7)))[0].T  # 7 orthonormal directions in R^30
    x = (rng.standard_normal((500, 7)) @ basis).astype(np.float64)
    spec = analyze(x, normalize=normalize)
    assert spec.numerical_rank == 7
    assert np.count_nonzero(spec.cov_eigenvalues) == 7
    assert np.all(spec.cov_eigenvalues[7:] == 0.0)
    assert np.all(spec.log_spectrum[7:] == spec.log_floor)
    assert np.all(spec.log_spectrum[:7] > spec.log_floor)
    assert spec.dims_99 == 7
    assert spec.cev[6] == pytest.approx(1.0, abs=1e-7)
    assert spec.alpha_req_range == (10, 6) and np.isnan(spec.alpha_req)  # fewer than 3 non-zero points


def test_collapse_zero_variance_directions_give_floor_not_minus_inf():
    x = features(400, 48, seed=4)
    x[:, 20:] = 0.0  # 28 dimensions carry nothing: complete collapse there
    spec = analyze(x)
    assert spec.numerical_rank == 20
    assert np.all(np.isfinite(spec.log_spectrum))
    tau = spec.cov_eigenvalues[0] * 48 * EPS64
    assert spec.log_floor == pytest.approx(np.log(tau))
    assert np.all(spec.log_spectrum[20:] == spec.log_floor)
    assert spec.cev[19] == pytest.approx(1.0, abs=1e-7)
    assert spec.dims_99 <= 20
    assert spec.rankme < 20.5


def test_n_at_most_d_is_flagged_as_a_sampling_limit():
    x = features(30, 50, seed=5)
    with pytest.warns(RankLimitedWarning, match="N-1=29"):
        spec = analyze(x)
    assert spec.rank_limited
    assert "sampling limit, not dimensional collapse" in spec.warning
    assert spec.numerical_rank == 29
    assert spec.cov_eigenvalues.shape == (50,)
    assert spec.singular_values.shape == spec.cev.shape == (30,)
    with pytest.warns(RankLimitedWarning):
        assert analyze(features(50, 50)).rank_limited
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankLimitedWarning)
        assert not analyze(features(51, 50)).rank_limited


def test_scalar_metrics_on_a_known_spectrum():
    spec = spectrum_of(stats_with_eigenvalues(np.array([5.0, 3.0, 1.0, 1.0])))
    np.testing.assert_allclose(spec.cev_variance, [0.5, 0.8, 0.9, 1.0])
    assert (spec.dims_90, spec.dims_95, spec.dims_99) == (3, 4, 4)
    assert spec.participation_ratio == pytest.approx(100 / 36)
    assert spec.stable_rank == pytest.approx(2.0)
    assert spec.nesum == pytest.approx(2.0)
    assert spec.auc_variance == pytest.approx(np.mean([0.5, 0.8, 0.9, 1.0]))
    sigma = np.sqrt(999 * np.array([5.0, 3.0, 1.0, 1.0]))
    assert spec.auc == pytest.approx(np.mean(np.cumsum(sigma) / sigma.sum()))


def test_alpha_req_recovers_an_exact_power_law_and_clips_to_nonzero():
    k = np.arange(1, 301)
    spec = spectrum_of(stats_with_eigenvalues(k ** -1.5))
    assert spec.alpha_req == pytest.approx(1.5, rel=1e-9)
    assert spec.alpha_req_r2 == pytest.approx(1.0, abs=1e-12)
    lam = np.where(k <= 50, k ** -0.8, 0.0)
    spec = spectrum_of(stats_with_eigenvalues(lam), alpha_range=(5, 200))
    assert spec.alpha_req_range == (5, 49)
    assert spec.alpha_req == pytest.approx(0.8, rel=1e-9)


def test_rankme_of_equal_singular_values_is_the_dimension():
    # uncentred rows ±e_i: all uncentred singular values equal, so RankMe = D up to ε
    d = 16
    x = np.vstack([np.eye(d), -np.eye(d)])
    spec = analyze(x)
    p = 1.0 / d + RANKME_EPS
    assert spec.rankme == pytest.approx(np.exp(-d * p * np.log(p)), rel=1e-12)
    assert spec.rankme == pytest.approx(d, rel=1e-4)


def test_zero_rows_stay_zero_and_identical_rows_raise():
    x = features(100, 10)
    x[5] = 0.0
    with_zero = analyze(x)
    assert np.all(np.isfinite(with_zero.log_spectrum))
    with pytest.raises(ValueError, match="identical"):
        analyze(np.ones((20, 5), dtype=np.float32))


def test_loaded_statistics_extended_by_identical_rows_are_not_called_constant(tmp_path):
    """Statistics read back from a file do not know their rows: a block of one repeated row
    added to them is added in full, not taken for the row every row equals."""
    path = tmp_path / "stats.npz"
    MomentStats.from_array(features(50, 4)).save(path)
    stats = MomentStats.load(path)
    stats.update(np.ones((10, 4)))
    merged = MomentStats.from_array(np.vstack([features(50, 4), np.ones((10, 4))]))
    assert spectrum_of(stats).rankme == pytest.approx(spectrum_of(merged).rankme, rel=1e-9)


def test_bad_inputs_name_the_problem(tmp_path):
    x = features(20, 4)
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match="row"):
        analyze(x)
    with pytest.raises(ValueError, match="floating point"):
        analyze(np.arange(20).reshape(10, 2))
    with pytest.raises(ValueError, match="2-D"):
        analyze(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        analyze(np.ones((1, 5)))
    path = tmp_path / "bad.npy"
    np.save(path, x)
    with pytest.raises(ValueError, match=str(path)):
        analyze_file(path)
    np.save(path, np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError, match=f"{path}.*2-D"):
        analyze_file(path)
    np.save(path, np.asfortranarray(features(10, 3)))
    with pytest.raises(ValueError, match="Fortran"):
        analyze_file(path)
    np.save(path, features(10, 3))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match=f"{path}.*truncated"):
        analyze_file(path)
    path.write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match=str(path)):
        analyze_file(path)


# -- streaming ---------------------------------------------------------------------------


def assert_same_spectrum(a, b, rtol=1e-10):
    big = a.cov_eigenvalues > 1e-10 * a.cov_eigenvalues[0]
    np.testing.assert_allclose(a.cov_eigenvalues[big], b.cov_eigenvalues[big], rtol=rtol)
    np.testing.assert_allclose(a.cev, b.cev, rtol=rtol)
    for key in ("auc", "rankme", "alpha_req", "participation_ratio", "stable_rank"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=rtol)
    for key in ("dims_90", "dims_95", "dims_99", "n_samples", "dim", "numerical_rank"):
        assert getattr(a, key) == getattr(b, key)


def test_chunked_equals_in_memory_and_file(tmp_path):
    x = features(1000, 120, seed=8)
    whole = analyze(x, chunk_rows=10**6)
    assert_same_spectrum(whole, analyze(x, chunk_rows=7))
    for dtype in (np.float32, np.float64, np.float16):
        path = tmp_path / f"f_{np.dtype(dtype).name}.npy"
        np.save(path, x.astype(dtype))
        assert_same_spectrum(analyze(x.astype(dtype)), analyze_file(path, chunk_rows=13))


def test_merged_shard_statistics_equal_the_whole(tmp_path):
    x = features(700, 30, seed=9)
    whole = MomentStats.from_array(x)
    shards = [MomentStats.from_array(part, chunk_rows=50) for part in np.split(x, [1, 250, 600])]
    for i, shard in enumerate(shards):
        shard.save(tmp_path / f"shard{i}.npz")
    loaded = [MomentStats.load(tmp_path / f"shard{i}.npz") for i in range(len(shards))]
    merged = (loaded[0].merge(loaded[1])).merge(loaded[2].merge(loaded[3]))
    assert merged.count == whole.count == 700
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-11, atol=1e-13)
    z = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(merged.covariance, np.cov(z.T), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(merged.second_moment, z.T @ z, rtol=1e-11, atol=1e-13)
    assert_same_spectrum(spectrum_of(merged), spectrum_of(whole))
    assert MomentStats(30).merge(whole).count == 700  # an empty shard merges as identity
    # merging (in-place BLAS updates inside) leaves its inputs untouched
    before = [(s.count, s.mean.copy(), s.m2.copy()) for s in loaded[:2]]
    loaded[0].merge(loaded[1])
    for s, (count, mean, m2) in zip(loaded[:2], before):
        assert s.count == count
        np.testing.assert_array_equal(s.mean, mean)
        np.testing.assert_array_equal(s.m2, m2)


def test_stats_refuse_incompatible_merges_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="cannot merge"):
        MomentStats(4).merge(MomentStats(5))
    with pytest.raises(ValueError, match="cannot merge"):
        MomentStats(4, normalize=True).merge(MomentStats(4, normalize=False))
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros(3))
    with pytest.raises(ValueError, match=f"{bad}.*missing"):
        MomentStats.load(bad)
    bad.write_text("garbage")
    with pytest.raises(ValueError, match=str(bad)):
        MomentStats.load(bad)


def test_frequency_weights_equal_repeated_rows():
    x = features(60, 8, seed=10)
    counts = np.random.default_rng(0).integers(0, 4, size=60)
    weighted = MomentStats(8).update(x, weights=counts, chunk_rows=9)
    repeated = MomentStats.from_array(np.repeat(x, counts, axis=0))
    assert weighted.count == repeated.count
    np.testing.assert_allclose(weighted.mean, repeated.mean, rtol=1e-12)
    np.testing.assert_allclose(weighted.m2, repeated.m2, rtol=1e-10, atol=1e-13)


def test_file_streaming_memory_does_not_grow_with_n(tmp_path):
    peaks = []
    for n in (2_000, 40_000):
        path = tmp_path / f"x{n}.npy"
        np.save(path, features(n, 32, seed=n))
        tracemalloc.start()
        analyze_file(path, chunk_rows=500)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # the 40k-row file is 5 MB; its peak must stay at the 2k-row file's level (chunks + D×D)
    assert peaks[1] < 1.3 * peaks[0] + 100_000
    assert peaks[1] < 1_000_000


# -- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_resamples_videos(tmp_path):
    x = features(80, 24, seed=11)
    a = bootstrap(x, 6, seed=3)
    b = bootstrap(x, 6, seed=3)
    c = bootstrap(x, 6, seed=4)
    for key in ("auc", "rankme", "alpha_req"):
        assert np.all(np.isfinite(a.replicates[key]))
        np.testing.assert_array_equal(a.replicates[key], b.replicates[key])
        assert a.intervals[key] == b.intervals[key]
        low, high = a.intervals[key]
        assert low <= high
    assert not np.array_equal(a.replicates["auc"], c.replicates["auc"])
    # replicate 0 is exactly the spectrum of the resampled matrix
    rng = np.random.default_rng(3)
    counts = np.bincount(rng.integers(0, 80, size=80), minlength=80)
    resampled = analyze(np.repeat(x, counts, axis=0))
    assert a.replicates["auc"][0] == pytest.approx(resampled.auc, rel=1e-10)
    assert a.replicates["rankme"][0] == pytest.approx(resampled.rankme, rel=1e-10)
    # the file path gives the same replicates
    path = tmp_path / "x.npy"
    np.save(path, x)
    from_file = bootstrap(path, 6, seed=3, chunk_rows=7)
    np.testing.assert_allclose(from_file.replicates["auc"], a.replicates["auc"], rtol=1e-10)


def test_analyze_attaches_bias_corrected_bootstrap_intervals():
    x = features(100, 10, seed=12)
    spec = analyze(x, n_boot=20, seed=1, ci_level=0.9)
    ci = spec.bootstrap
    assert ci is not None and ci.n_boot == 20 and ci.level == 0.9 and ci.method == "bias-corrected"
    vals = ci.replicates["auc"]
    assert ci.bias["auc"] == pytest.approx(vals.mean() - spec.auc, rel=1e-12)
    low, high = ci.intervals["auc"]
    assert (low, high) == pytest.approx((np.quantile(vals, 0.05) - ci.bias["auc"], np.quantile(vals, 0.95) - ci.bias["auc"]))
    assert low < spec.auc < high
    # resampling with replacement repeats videos, and fewer distinct videos raise the AUC
    assert ci.bias["auc"] > 0
    plain = analyze(x, n_boot=20, seed=1, ci_level=0.9, ci_method="percentile").bootstrap
    np.testing.assert_array_equal(plain.replicates["auc"], vals)
    assert plain.intervals["auc"] == (np.quantile(vals, 0.05), np.quantile(vals, 0.95))
    assert analyze(x).bootstrap is None
    with pytest.raises(ValueError, match="method"):
        bootstrap(x, 5, method="bca")


# -- degenerate input --------------------------------------------------------------------


def test_a_constant_file_fails_in_the_streaming_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No D×D product and no eigendecomposition: one read of the file, then the error naming it."""
    import dimcollapse.analysis.spectrum as spectrum

    path = tmp_path / "zeros.npy"
    np.save(path, np.zeros((1000, 64), np.float32))

    def no_eigendecomposition(*args: object) -> None:
        raise AssertionError("a constant matrix needs no eigendecomposition")

    monkeypatch.setattr(spectrum, "eigenvalues_desc", no_eigendecomposition)
    with pytest.raises(spectrum.ConstantFeatures, match=f"^{path}: all 1000 feature rows are all zeros"):
        analyze_file(path, chunk_rows=64)
    stats = MomentStats.from_file(path, chunk_rows=64)
    assert stats.zero_rows == 1000 and not stats.varied and not stats.m2.any()


def test_rows_that_differ_only_in_a_later_chunk_give_the_usual_spectrum() -> None:
    x = np.tile(features(1, 12), (300, 1))
    x[250:] = features(50, 12, seed=3)
    whole = analyze(x, chunk_rows=300)
    chunked = analyze(x, chunk_rows=32)  # the first seven chunks are all the same row
    np.testing.assert_allclose(chunked.cov_eigenvalues, whole.cov_eigenvalues, rtol=1e-9, atol=1e-15)
    assert chunked.rankme == pytest.approx(whole.rankme, rel=1e-9)
    merged = MomentStats.from_array(x[:100]).merge(MomentStats.from_array(x[100:]))
    np.testing.assert_allclose(merged.m2, MomentStats.from_array(x).m2, rtol=1e-9, atol=1e-12)
    same = np.tile(features(1, 12), (20, 1))
    assert not MomentStats.from_array(same[:10]).merge(MomentStats.from_array(same[10:])).varied
    assert MomentStats.from_array(same).merge(MomentStats.from_array(-same)).varied


def test_all_zero_rows_are_counted_and_named_in_the_warning(tmp_path: Path) -> None:
    x = features(200, 8)
    x[[3, 50, 199]] = 0.0
    with pytest.warns(UserWarning, match="3 of 200 feature rows are all zeros"):
        spec = analyze(x, chunk_rows=16)
    assert spec.zero_rows == 3 and "forward pass failed" in spec.warning
    stats = MomentStats.from_array(x)
    stats.save(tmp_path / "s.npz")
    assert MomentStats.load(tmp_path / "s.npz").zero_rows == 3
    assert analyze(features(200, 8)).zero_rows == 0
