"""Spectral measures beyond one matrix's spectrum: :func:`lidar` (a metric of several views
per video, Thilak et al. 2024) and :func:`sample_size_curve` (RankMe and AUC of random row
subsets, which separates the N ≤ D cliff from collapse)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dimcollapse.analysis.moments import NORM_EPS, MomentStats
from dimcollapse.analysis.spectrum import analyze, rankme_of

LIDAR_DELTA = 1e-3
LIDAR_EPS = 1e-7
LIDAR_CONVENTION = "Thilak et al. 2024: Sigma_b/(N-1), Sigma_w/(N(Q-1)) + delta*I, p = lambda/sum + eps"


def lidar(
    views: np.ndarray, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS, *, chunk_rows: int = 1024,
    source: str = "views",
) -> float:
    """LiDAR (Thilak et al., 2024) of ``views``, an N × Q × D array (Q ≥ 2 views per sample).

    Normalisations, in float64:

    * Σ_b = covariance of the N view-means m_n = mean_q x_nq, centred, divided by N − 1;
    * Σ_w = Σ_n Σ_q (x_nq − m_n)(x_nq − m_n)^T / (N (Q − 1)) + δ I;
    * Σ_lidar = Σ_w^{-1/2} Σ_b Σ_w^{-1/2} (inverse square root by symmetric eigh);
    * λ = its eigenvalues clipped at 0, p = λ / Σλ + ε, LiDAR = exp(−Σ p log p).

    Features are used as given (no row normalisation). Rows are streamed in chunks of
    ``chunk_rows`` samples, so a memory-mapped array is never loaded whole.
    """
    if views.ndim != 3:
        raise ValueError(f"{source}: LiDAR needs an N × Q × D array of views, got shape {views.shape}")
    n, q, d = views.shape
    if n < 2 or q < 2:
        raise ValueError(f"{source}: LiDAR needs at least 2 samples and 2 views each, got N={n}, Q={q}")
    if delta <= 0:
        raise ValueError(f"LiDAR delta must be > 0, got {delta}")
    between = MomentStats(d, normalize=False)
    within = np.zeros((d, d))
    for start in range(0, n, chunk_rows):
        block = np.asarray(views[start : start + chunk_rows], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError(f"{source}: non-finite value (NaN or inf) in samples {start}..{start + len(block) - 1}")
        means = block.mean(axis=1)
        between.update(means, source=source)
        dev = (block - means[:, None, :]).reshape(-1, d)
        within += dev.T @ dev
    sigma_w = within / (n * (q - 1)) + delta * np.eye(d)
    w_val, w_vec = np.linalg.eigh(sigma_w)
    inv_sqrt = (w_vec / np.sqrt(w_val)) @ w_vec.T
    sigma = inv_sqrt @ between.covariance @ inv_sqrt
    lam = np.clip(np.linalg.eigvalsh((sigma + sigma.T) / 2), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return 1.0
    p = lam / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))


SAMPLE_SIZE_COLUMNS = ("n", "repeat", "dim", "rankme", "auc_sigma", "auc_lambda", "rank_limited")


def sample_sizes(n_rows: int, smallest: int) -> list[int]:
    """smallest, 2·smallest, 4·smallest, … below ``n_rows``, then ``n_rows`` itself."""
    if smallest < 2:
        raise ValueError(f"the smallest subset needs at least 2 rows, got {smallest}")
    sizes = []
    n = smallest
    while n < n_rows:
        sizes.append(n)
        n *= 2
    return sizes + [n_rows]


def sample_size_curve(
    features: np.ndarray, *, smallest: int = 256, repeats: int = 3, seed: int = 0, normalize: bool = True,
    alpha_range: tuple[int, int] = (10, 99),
) -> list[dict[str, Any]]:
    """RankMe and AUCs of seeded random row subsets of sizes :func:`sample_sizes`.

    ``repeats`` subsets (without replacement) per size below N, drawn from one
    ``numpy.random.default_rng(seed)`` stream in size order; all rows once. ``features``
    may be a memory map: only the chosen rows are read. Subsets with no more rows than
    dimensions go through :func:`_gram_metrics` (same numbers, n × n instead of D × D).
    """
    n_rows, dim = features.shape
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for n in sample_sizes(n_rows, smallest):
        for rep in range(repeats if n < n_rows else 1):
            pick = np.sort(rng.choice(n_rows, size=n, replace=False)) if n < n_rows else slice(None)
            subset = np.asarray(features[pick])
            if n <= dim:
                rankme, auc_sigma, auc_lambda = _gram_metrics(subset, normalize)
            else:
                spec = analyze(subset, normalize, alpha_range=alpha_range)
                rankme, auc_sigma, auc_lambda = spec.rankme, spec.auc, spec.auc_variance
            rows.append({"n": n, "repeat": rep, "dim": dim, "rankme": rankme, "auc_sigma": auc_sigma,
                         "auc_lambda": auc_lambda, "rank_limited": n <= dim})
    return rows


def _gram_metrics(rows: np.ndarray, normalize: bool) -> tuple[float, float, float]:
    """RankMe, AUC (σ) and AUC (λ) of no more rows than dimensions, from n × n Gram matrices.

    The non-zero eigenvalues of XᵀX (D × D) are those of XXᵀ (n × n), so a subset of n ≤ D
    rows costs O(n²D) instead of the O(D³) eigendecomposition of :func:`analyze`; the
    round-off threshold and every formula are :func:`analyze`'s (its tests pin the match).
    """
    x = np.array(rows, dtype=np.float64)
    n, d = x.shape
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1), NORM_EPS)[:, None]
    eps = np.finfo(np.float64).eps

    def eigenvalues(m: np.ndarray) -> np.ndarray:
        lam = np.linalg.eigvalsh(m)[::-1].copy()
        lam[lam <= lam[0] * d * eps] = 0.0  # analyze's τ = D·eps·λ_max
        return lam

    centred = x - x.mean(axis=0)
    lam = eigenvalues(centred @ centred.T) / (n - 1)
    sigma = np.sqrt((n - 1) * lam)
    auc_sigma = float((np.cumsum(sigma) / sigma.sum()).mean())
    auc_lambda = float((np.cumsum(lam) / lam.sum()).mean())
    return rankme_of(eigenvalues(x @ x.T)), auc_sigma, auc_lambda
