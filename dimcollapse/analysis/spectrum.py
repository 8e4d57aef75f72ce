"""Singular-value spectrum and dimensional-collapse metrics of a feature matrix.

The paper (following Jing et al. 2022) L2-normalises every feature row, takes the
covariance of the normalised features (centred, divided by N-1), and plots the natural
log of its eigenvalues ("singular values of the covariance") against rank index; its
cumulative explained variance (CEV) uses the singular values σ of the centred data
matrix, CEV_k = Σ_{i<=k} σ_i / Σ σ_i, and its AUC is the mean of that curve.

Everything here is computed from one set of streamed statistics — the count, the mean
and the D×D centred co-moment, accumulated in float64 chunk by chunk and merged with
Chan, Golub & LeVeque's pairwise update — followed by one symmetric eigenvalue
decomposition of the covariance (plus one of the uncentred second moment for RankMe),
both D×D in float64. That gives the paper's numbers without ever holding the N×D matrix
(or an N×D float64 copy, or an SVD of it) in memory, and makes statistics of shards
merge exactly into those of the whole.

Conventions (each one is a field or a documented constant):

* ``cov_eigenvalues`` has D entries, descending. Eigenvalues at or below the eigensolver's
  round-off level ``tau = D * eps64 * lambda_max`` (numpy's ``matrix_rank`` tolerance)
  are set to exactly 0, which also clips the tiny negatives of a PSD matrix.
* ``log_spectrum = log(max(lambda_k, tau))``: zero eigenvalues are mapped to the floor
  ``log_floor = log(tau)`` instead of -inf, so every value is finite and lies below the
  log of every eigenvalue that is distinguishable from zero.
* ``singular_values``, ``cev`` and ``cev_variance`` have ``min(N, D)`` entries, the length
  of sklearn's ``PCA().singular_values_`` that the paper used, so ``auc`` (the mean of
  ``cev``) divides by ``min(N, D)`` exactly as the paper's AUC does when N < D.
* RankMe uses the singular values of the *uncentred* (normalised) matrix, derived from
  the uncentred second moment X^T X = M2 + N * mean mean^T (an exact identity: no second
  accumulator, no second D×D product per chunk), with p_k = σ_k / Σσ + ``RANKME_EPS``.
* When N <= D at most N-1 covariance eigenvalues are non-zero: that cliff is a sampling
  limit, not collapse; ``rank_limited`` and ``warning`` say so.

Rows are normalised in float64 (x / max(||x||, 1e-12), as ``torch.nn.functional.normalize``
does). The paper normalised in float32; the element-wise rounding that adds perturbed
eigenvalues below about 1e-7·lambda_max by more than 1e-6 in log on a steeply decaying
test spectrum, so on spectra that decay that far the paper's own numbers are the less
accurate ones (and no float64 implementation can reproduce them there).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass

import numpy as np

from dimcollapse.analysis.moments import DEFAULT_CHUNK_ROWS, MomentStats, iter_rows, row_source
from dimcollapse.errors import KnownError

DEFAULT_ALPHA_RANGE = (10, 99)
"""α-ReQ fit range: 0-based indices into the descending eigenvalues, both ends included
(ranks k = 11..100), the reference implementation's ``np.arange(10, 100)``."""

RANKME_EPS = 1e-7
"""ε added to each p_k in RankMe (Garrido et al. 2023), keeping log p finite for σ = 0."""

class RankLimitedWarning(UserWarning):
    """N <= D: the covariance has rank at most N-1, whatever the model does."""


class ZeroRowsWarning(UserWarning):
    """Some feature rows are all zeros: usually videos whose forward pass failed."""


class ConstantFeatures(KnownError, ValueError):
    """Every feature row is the same: no spectrum or metric is defined."""


@dataclass(frozen=True, eq=False)
class BootstrapCI:
    """Bootstrap over videos (rows): ``n_boot`` resamples with replacement, seeded.

    ``replicates`` maps a metric name to its ``n_boot`` resampled values, ``bias`` to
    mean(replicates) - estimate, and ``intervals`` to the interval at ``level`` (see
    :func:`bootstrap` for which interval ``method`` gives).
    """

    n_boot: int
    seed: int
    level: float
    method: str
    replicates: dict[str, np.ndarray]
    bias: dict[str, float]
    intervals: dict[str, tuple[float, float]]


BOOTSTRAP_METRICS = ("auc", "rankme", "alpha_req")


@dataclass(frozen=True, eq=False)
class Spectrum:
    """The spectrum of one feature matrix and every scalar metric derived from it."""

    n_samples: int
    dim: int
    normalized: bool
    cov_eigenvalues: np.ndarray
    """D covariance eigenvalues, descending; round-off-level values set to 0."""
    log_spectrum: np.ndarray
    """log(max(λ, τ)): the paper's plotted curve, zeros at ``log_floor``."""
    log_floor: float
    singular_values: np.ndarray
    """min(N, D) singular values of the centred data matrix, sqrt((N-1)·λ)."""
    cev: np.ndarray
    """Paper convention: cumsum(σ)/Σσ over min(N, D) entries."""
    cev_variance: np.ndarray
    """PCA convention: cumsum(λ)/Σλ over min(N, D) entries."""
    auc: float
    """Mean of ``cev`` (the paper's AUC)."""
    auc_variance: float
    """Mean of ``cev_variance``."""
    uncentred_singular_values: np.ndarray
    """min(N, D) singular values of the uncentred (normalised) matrix, for RankMe."""
    rankme: float
    rankme_eps: float
    alpha_req: float
    """α of λ_k ∝ k^-α, weighted least squares (weights 1/k) of log λ on log k."""
    alpha_req_r2: float
    """Unweighted R² of that fit on log λ over the indices actually used."""
    alpha_req_range: tuple[int, int]
    """0-based inclusive index range actually used (after clipping to non-zero λ)."""
    participation_ratio: float
    stable_rank: float
    nesum: float
    dims_90: int
    dims_95: int
    dims_99: int
    numerical_rank: int
    """Number of eigenvalues above the round-off level τ."""
    rank_limited: bool
    warning: str
    bootstrap: BootstrapCI | None = None
    zero_rows: int = 0
    """Rows that were all zeros (before normalisation); named in ``warning`` when any."""


# --------------------------------------------------------------------------------------
# From statistics to spectrum


def eigenvalues_desc(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Eigenvalues of a symmetric PSD matrix, descending, with round-off set to 0.

    Returns the eigenvalues and the tolerance τ = D·eps·λ_max below which they were
    considered zero (numpy's ``matrix_rank`` rule).
    """
    lam = np.linalg.eigvalsh(matrix)[::-1].copy()
    tau = lam[0] * matrix.shape[0] * np.finfo(np.float64).eps
    lam[lam <= tau] = 0.0
    return lam, float(tau)


def rankme_of(eigenvalues: np.ndarray, eps: float = RANKME_EPS) -> float:
    """RankMe from a second-moment matrix's eigenvalues λ (descending, round-off already 0):
    exp of the entropy of p_k = σ_k / Σσ + ε with σ_k = √λ_k (Garrido et al. 2023)."""
    sigma = np.sqrt(eigenvalues)
    p = sigma / sigma.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def _alpha_req(lam: np.ndarray, alpha_range: tuple[int, int]) -> tuple[float, float, tuple[int, int]]:
    """Weighted least squares of log λ_k on log k (weights 1/k), k = index + 1.

    The inclusive index range is clipped to the non-zero eigenvalues; fewer than three
    points leave α and R² undefined (NaN). R² is the unweighted coefficient of
    determination of log λ over the points used.
    """
    lo, hi = int(alpha_range[0]), int(alpha_range[1])
    if lo < 0 or hi < lo:
        raise ValueError(f"alpha_range must be 0 <= start <= stop, got {alpha_range}")
    hi = min(hi, int(np.count_nonzero(lam)) - 1)
    if hi - lo + 1 < 3:
        return float("nan"), float("nan"), (lo, hi)
    idx = np.arange(lo, hi + 1)
    k = idx + 1.0
    y = np.log(lam[idx])
    design = np.column_stack([-np.log(k), np.ones_like(k)])
    w = 1.0 / k
    coef = np.linalg.solve(design.T @ (design * w[:, None]), design.T @ (w * y))
    resid = y - design @ coef
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else float("nan")
    return float(coef[0]), r2, (lo, hi)


def _dims_for(cev_variance: np.ndarray, fraction: float) -> int:
    """Smallest k with Σ_{i<k} λ_i / Σ λ >= fraction (a 1e-12 slack absorbs round-off)."""
    return int(np.searchsorted(cev_variance, fraction - 1e-12, side="left")) + 1


def rank_limit_message(n_samples: int, dim: int) -> str:
    return (
        f"N={n_samples} <= D={dim}: the covariance has at most N-1={n_samples - 1} non-zero "
        f"eigenvalues, so the spectrum drops to zero after index {n_samples - 2} whatever the "
        "model does; that cliff is a sampling limit, not dimensional collapse. Use more "
        "samples than dimensions to measure collapse."
    )


def constant_message(n_samples: int, *, all_zero: bool, normalized: bool, exactly: bool = True) -> str:
    """Why a matrix whose rows are all the same has no spectrum, and what usually causes it."""
    if all_zero:
        what = "all zeros"
    else:
        what = "identical" if exactly else "identical up to round-off"
        what += " after L2 normalisation" if normalized else ""
    return (
        f"all {n_samples} feature rows are {what} (zero covariance): the spectrum and every metric are "
        "undefined; a model that gives every video the same features is broken, or its forward pass failed "
        "(see the extraction's log)"
    )


def zero_rows_message(zero_rows: int, n_samples: int) -> str:
    return (
        f"{zero_rows} of {n_samples} feature rows are all zeros, usually videos whose forward pass failed; "
        "they count in every metric as identical points"
    )


def spectrum_of(
    stats: MomentStats,
    *,
    alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
    rankme_eps: float = RANKME_EPS,
    warn: bool = True,
) -> Spectrum:
    """Eigendecompose the statistics' covariance once and derive every curve and metric
    (see the module doc)."""
    n_float, d = stats.count, stats.dim
    if n_float < 2:
        raise ValueError(f"a spectrum needs at least 2 feature rows, have {n_float:g}")
    n = int(round(n_float))
    if stats.same_row is not None and not stats.varied:  # seen in the streaming pass: no eigendecomposition
        raise ConstantFeatures(constant_message(n, all_zero=stats.zero_rows >= n_float, normalized=stats.normalize))
    lam, tau = eigenvalues_desc(stats.covariance)
    # the rows' own scale: mean squared norm; a covariance at round-off level of it is zero
    scale = (np.trace(stats.m2) + n_float * float(stats.mean @ stats.mean)) / n_float
    if lam[0] <= d * np.finfo(np.float64).eps * scale:
        raise ConstantFeatures(constant_message(n, all_zero=False, normalized=stats.normalize, exactly=False))
    m = min(n, d)
    log_floor = float(np.log(tau))
    log_spectrum = np.log(np.maximum(lam, tau))
    sigma = np.sqrt((n_float - 1.0) * lam[:m])
    cev = np.cumsum(sigma) / sigma.sum()
    total = lam.sum()
    cev_variance = np.cumsum(lam[:m]) / total

    mu, _ = eigenvalues_desc(stats.second_moment)
    sigma_u = np.sqrt(mu[:m])
    rankme = rankme_of(mu[:m], rankme_eps)

    alpha, r2, used = _alpha_req(lam, alpha_range)
    rank_limited = n <= d
    message = rank_limit_message(n, d) if rank_limited else ""
    if rank_limited and warn:
        warnings.warn(message, RankLimitedWarning, stacklevel=2)
    if stats.zero_rows:
        zeros = zero_rows_message(stats.zero_rows, n)
        message = f"{message} {zeros}" if message else zeros
        if warn:
            warnings.warn(zeros, ZeroRowsWarning, stacklevel=2)
    return Spectrum(
        n_samples=n,
        dim=d,
        normalized=stats.normalize,
        cov_eigenvalues=lam,
        log_spectrum=log_spectrum,
        log_floor=log_floor,
        singular_values=sigma,
        cev=cev,
        cev_variance=cev_variance,
        auc=float(cev.mean()),
        auc_variance=float(cev_variance.mean()),
        uncentred_singular_values=sigma_u,
        rankme=rankme,
        rankme_eps=float(rankme_eps),
        alpha_req=alpha,
        alpha_req_r2=r2,
        alpha_req_range=used,
        participation_ratio=float(total**2 / np.sum(lam**2)),
        stable_rank=float(total / lam[0]),
        nesum=float(np.sum(lam / lam[0])),
        dims_90=_dims_for(cev_variance, 0.90),
        dims_95=_dims_for(cev_variance, 0.95),
        dims_99=_dims_for(cev_variance, 0.99),
        numerical_rank=int(np.count_nonzero(lam)),
        rank_limited=rank_limited,
        warning=message,
        zero_rows=stats.zero_rows,
    )


# --------------------------------------------------------------------------------------
# Bootstrap over videos


BOOTSTRAP_METHODS = ("bias-corrected", "percentile")


def bootstrap(
    source: np.ndarray | str | os.PathLike[str],
    n_boot: int,
    seed: int = 0,
    *,
    normalize: bool = True,
    level: float = 0.95,
    method: str = "bias-corrected",
    estimate: Spectrum | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
    rankme_eps: float = RANKME_EPS,
) -> BootstrapCI:
    """Bootstrap confidence intervals over videos for ``auc``, ``rankme`` and ``alpha_req``.

    Each resample draws N videos (rows) with replacement from a seeded
    ``numpy.random.default_rng(seed)``; its multinomial counts enter the streamed
    statistics as frequency weights, so a resample is never materialised: memory stays
    O(D² + N) and each resample costs one pass over the rows (one weighted D×D product
    per chunk, skipping rows drawn zero times) plus two D×D eigendecompositions — about
    the cost of one ``analyze_file`` call, B times over. The same seed gives the same
    intervals.

    Why "bias-corrected" is the default: a resample repeats about 37 % of the videos, so
    it has fewer distinct samples, and spectrum metrics depend systematically on the
    number of samples (fewer samples: higher AUC, lower RankMe). The replicates are
    therefore shifted against the estimate, often so far that the plain percentile
    interval excludes it. ``"bias-corrected"`` subtracts the bootstrap bias estimate
    (mean of the replicates minus ``estimate``) from the percentile interval, keeping
    the bootstrap's spread around the estimate; ``"percentile"`` gives the plain
    percentiles. Either way the spread is a good estimate of the sampling spread only
    when N is well above D (checked here at N/D = 12: within ~25 % of the spread over
    fresh samples; at N/D = 2.3 it was 4-5 times too wide), so with few videos per
    dimension the intervals are conservative.

    ``estimate`` is the full-data spectrum (computed here when not given).
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    n, d, name = row_source(source)
    if estimate is None:
        stats = MomentStats(d, normalize)
        for start, block in iter_rows(source, chunk_rows):
            stats.add_block(block, None, f"{name} rows {start}..{start + block.shape[0] - 1}")
        estimate = spectrum_of(stats, alpha_range=alpha_range, rankme_eps=rankme_eps, warn=False)
    rng = np.random.default_rng(seed)
    values = {key: np.empty(n_boot) for key in BOOTSTRAP_METRICS}
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        stats = MomentStats(d, normalize)
        for start, block in iter_rows(source, chunk_rows):
            w = counts[start : start + block.shape[0]]
            stats.add_block(block, w, f"{name} rows {start}..{start + block.shape[0] - 1}")
        spec = spectrum_of(stats, alpha_range=alpha_range, rankme_eps=rankme_eps, warn=False)
        for key in BOOTSTRAP_METRICS:
            values[key][b] = getattr(spec, key)
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    bias, intervals = {}, {}
    for key, vals in values.items():
        bias[key] = float(vals.mean() - getattr(estimate, key))
        shift = bias[key] if method == "bias-corrected" else 0.0
        low, high = np.quantile(vals, q)
        intervals[key] = (float(low - shift), float(high - shift))
    return BootstrapCI(
        n_boot=int(n_boot),
        seed=int(seed),
        level=float(level),
        method=method,
        replicates=values,
        bias=bias,
        intervals=intervals,
    )


# --------------------------------------------------------------------------------------
# Entry points


def analyze(
    features: np.ndarray,
    normalize: bool = True,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
    rankme_eps: float = RANKME_EPS,
    n_boot: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
    ci_method: str = "bias-corrected",
) -> Spectrum:
    """Spectrum and metrics of an in-memory N × D feature matrix (rows = videos).

    The matrix is processed in row chunks exactly as :func:`analyze_file` does, so the
    two agree; ``n_boot > 0`` adds bootstrap confidence intervals (see :func:`bootstrap`).
    """
    stats = MomentStats.from_array(features, normalize, chunk_rows=chunk_rows)
    return _finish(stats, features, normalize, chunk_rows, alpha_range, rankme_eps, n_boot, seed, ci_level, ci_method)


def analyze_file(
    path: str | os.PathLike[str],
    normalize: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
    rankme_eps: float = RANKME_EPS,
    n_boot: int = 0,
    seed: int = 0,
    ci_level: float = 0.95,
    ci_method: str = "bias-corrected",
) -> Spectrum:
    """Spectrum and metrics of a ``.npy`` feature file, streamed in ``chunk_rows`` rows.

    Memory is O(chunk_rows·D + D²), independent of N.
    """
    stats = MomentStats.from_file(path, normalize, chunk_rows=chunk_rows)
    try:
        return _finish(stats, path, normalize, chunk_rows, alpha_range, rankme_eps, n_boot, seed, ci_level, ci_method)
    except ConstantFeatures as err:
        raise ConstantFeatures(f"{path}: {err}") from None


def _finish(
    stats: MomentStats,
    source: np.ndarray | str | os.PathLike[str],
    normalize: bool,
    chunk_rows: int,
    alpha_range: tuple[int, int],
    rankme_eps: float,
    n_boot: int,
    seed: int,
    ci_level: float,
    ci_method: str,
) -> Spectrum:
    """The spectrum of ``stats``, with bootstrap intervals over ``source``'s rows when asked."""
    spec = spectrum_of(stats, alpha_range=alpha_range, rankme_eps=rankme_eps)
    if n_boot:
        ci = bootstrap(
            source, n_boot, seed, normalize=normalize, level=ci_level, method=ci_method, estimate=spec,
            chunk_rows=chunk_rows, alpha_range=alpha_range, rankme_eps=rankme_eps,
        )
        spec = dataclasses.replace(spec, bootstrap=ci)
    return spec
