"""Intrinsic dimension from nearest neighbours and spanning trees: TwoNN (Facco et al. 2017),
GRIDE across neighbourhood scales (Denti et al. 2022) and PH₀ (Schweinhart 2020).

Every estimator here equals scikit-dimension 0.5's (tests); TwoNN and the whole GRIDE curve
come from one chunked neighbour search (:func:`dimcollapse.analysis.pairwise.nearest_neighbours`,
:func:`neighbour_dimensions`), PH₀ from minimum spanning trees of random subsamples
(:mod:`dimcollapse.analysis.spanning_tree`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the kernels import torch, which the workflow's start must not
    from dimcollapse.analysis.pairwise import NearestNeighbours

TWONN_METHODS = ("linear", "mle")


class DuplicateRowsWarning(UserWarning):
    """Rows with an identical twin have r₁ = 0 and no TwoNN ratio: they are left out."""


@dataclass(frozen=True)
class TwoNNRatios:
    """μ = r₂/r₁ of every row with r₁ > 0, and how many rows had r₁ = 0 (duplicates)."""

    mu: np.ndarray
    n_rows: int
    n_duplicates: int
    rechecked: int


@dataclass(frozen=True)
class TwoNNDimension:
    """A TwoNN estimate with the counts that qualify it."""

    dimension: float
    method: str
    discard_fraction: float
    n_rows: int
    """Rows searched (after any subsample)."""
    n_used: int
    """Rows with a ratio (``n_rows − n_duplicates``), the N of the estimate."""
    n_duplicates: int

    def __float__(self) -> float:
        return self.dimension


def twonn_ratios(x: np.ndarray, *, device: str | None = "auto", chunk_rows: int | None = None) -> TwoNNRatios:
    """The TwoNN ratios μᵢ = r₂/r₁ of the rows of ``x`` (Euclidean, the point itself excluded).

    Rows with r₁ = 0 are dropped with a :class:`DuplicateRowsWarning`; their count is kept.
    """
    from dimcollapse.analysis.pairwise import DEFAULT_CHUNK_ROWS, nearest_neighbours

    return _twonn_ratios(nearest_neighbours(x, (1, 2), device=device, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS))


def _twonn_ratios(nn: NearestNeighbours) -> TwoNNRatios:
    r1, r2 = nn.at(1), nn.at(2)
    keep = r1 > 0
    n_dup = int((~keep).sum())
    if n_dup:
        warnings.warn(f"TwoNN: dropping {n_dup} rows with zero distance to their nearest neighbour "
                      "(duplicate rows)", DuplicateRowsWarning, stacklevel=3)
    return TwoNNRatios(mu=r2[keep] / r1[keep], n_rows=int(r1.size), n_duplicates=n_dup, rechecked=nn.rechecked)


def twonn_from_ratios(ratios: TwoNNRatios, discard_fraction: float = 0.1, method: str = "linear") -> TwoNNDimension:
    """Facco et al. (2017) from the ratios, with scikit-dimension 0.5's conventions.

    Keep the k = ⌊n(1 − f)⌋ smallest μ of the n rows that have one, F = i/n;
    ``linear``: slope through the origin of −log(1 − F) on log μ (Σxy / Σx²);
    ``mle``: (k − 1) / (Σ_{i≤k} log μ₍ᵢ₎ + (n − k) log μ₍ₖ₎), the censored maximum likelihood.
    """
    if method not in TWONN_METHODS:
        raise ValueError(f"TwoNN method must be one of {TWONN_METHODS}, got {method!r}")
    if not 0.0 <= discard_fraction < 1.0:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    n = ratios.mu.size
    k = int(n * (1 - discard_fraction))
    if method == "linear" and k == n:
        raise ValueError("the linear TwoNN fit needs discard_fraction > 0 (−log(1 − F) is infinite at F = 1)")
    if k < 2:
        raise ValueError(f"TwoNN needs at least 2 ratios after discarding, have {k} of {n} rows")
    log_mu = np.log(np.sort(ratios.mu)[:k])
    if method == "mle":
        dim = (k - 1) / (log_mu.sum() + (n - k) * log_mu[-1])
    else:
        y = -np.log(1 - np.arange(1, k + 1) / n)
        dim = float(log_mu @ y) / float(log_mu @ log_mu)
    return TwoNNDimension(dimension=float(dim), method=method, discard_fraction=float(discard_fraction),
                          n_rows=ratios.n_rows, n_used=int(n), n_duplicates=ratios.n_duplicates)


def twonn_dimension(
    x: np.ndarray, discard_fraction: float = 0.1, method: str = "linear", *, device: str | None = "auto",
    max_rows: int | None = None, seed: int = 0,
) -> TwoNNDimension:
    """TwoNN intrinsic dimension of the rows of ``x`` (Facco et al. 2017; scikit-dimension's
    ``TwoNN(discard_fraction, method=method)``), by a chunked top-2 neighbour search.

    With more than ``max_rows`` rows a seeded subsample of ``max_rows`` is used
    (``n_rows`` of the result says how many).
    """
    from dimcollapse.analysis.pairwise import pair_subsample

    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return twonn_from_ratios(twonn_ratios(rows, device=device), discard_fraction, method)


# -- intrinsic dimension across neighbourhood scales (GRIDE) and subsample sizes (PH₀)

GRIDE_RANGE_MAX = 64
"""Largest neighbour rank n2 of the GRIDE curve (scikit-dimension's default)."""


@dataclass(frozen=True)
class GrideDimension:
    """A GRIDE estimate at neighbour ranks (n1, n2), with its standard error."""

    dimension: float
    error: float
    """1 / √(observed Fisher information), as scikit-dimension reports it."""
    n1: int
    n2: int
    n_rows: int
    n_used: int
    """Ratios in the likelihood (rows with tied or zero distances and outliers left out)."""

    def __float__(self) -> float:
        return self.dimension


def _gride_fit(log_mu: np.ndarray, n1: int, n2: int) -> tuple[float, float, int]:
    """The GRIDE maximum-likelihood dimension of the finite, positive log-ratios
    log(r_{n2}/r_{n1}) (Denti et al. 2022), with scikit-dimension 0.5's (DADApy's)
    conventions: ratios above q50 + 20(q95 − q50) are left out, the likelihood has
    (N − 1) log d, the root is bracketed by doubling and found by Brent's method."""
    from scipy.optimize import brentq

    mu = np.exp(log_mu)
    q95, q50 = np.percentile(mu, [95, 50])
    log_mu = log_mu[mu < 20 * (q95 - q50) + q50]
    n = log_mu.size
    if n < 2:
        raise ValueError(f"GRIDE (n1={n1}, n2={n2}) needs at least 2 neighbour ratios, {n} left")
    total, tail = float(log_mu.sum()), n2 - n1 - 1

    def score(d: float) -> float:  # d log L / dd; decreasing, from +inf to −n1·Σ log μ: one root
        return (n - 1) / d + tail * float(np.sum(log_mu / -np.expm1(-d * log_mu))) - (n2 - 1) * total

    hi = 1.0
    while score(hi) > 0:
        hi *= 2
    d = float(brentq(score, 1e-8, hi, xtol=1e-12, rtol=1e-12))
    info = n / d**2 + tail * float(np.sum((log_mu / (2 * np.sinh(d * log_mu / 2))) ** 2))
    return d, 1 / math.sqrt(info), n


def _log_ratios(nn: NearestNeighbours, n1: int, n2: int) -> np.ndarray:
    """log(r_{n2}/r_{n1}) per row, NaN where undefined (r_{n1} = 0: duplicates; r_{n1} =
    r_{n2}: ties), with a :class:`DuplicateRowsWarning` naming how many."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mu = np.log(nn.at(n2) / nn.at(n1))
    bad = ~(np.isfinite(log_mu) & (log_mu > 0))
    if bad.any():
        warnings.warn(f"GRIDE (n1={n1}, n2={n2}): dropping {int(bad.sum())} rows with zero or tied neighbour "
                      "distances (duplicate rows)", DuplicateRowsWarning, stacklevel=3)
        log_mu[bad] = np.nan
    return log_mu


def _gride_at(nn: NearestNeighbours, n1: int, n2: int) -> GrideDimension:
    log_mu = _log_ratios(nn, n1, n2)
    d, err, used = _gride_fit(log_mu[~np.isnan(log_mu)], n1, n2)
    return GrideDimension(dimension=d, error=err, n1=n1, n2=n2, n_rows=len(log_mu), n_used=used)


def _gride_ranks(n1: int, n2: int | None) -> tuple[int, int]:
    n2 = 2 * n1 if n2 is None else n2
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (n1, n2)) or not 1 <= n1 < n2:
        raise ValueError(f"GRIDE needs integers 1 <= n1 < n2, got n1={n1!r}, n2={n2!r}")
    return int(n1), int(n2)


def gride_dimension(
    x: np.ndarray, n1: int = 1, n2: int | None = None, *, device: str | None = "auto", max_rows: int | None = None,
    seed: int = 0,
) -> GrideDimension:
    """GRIDE intrinsic dimension from μ = r_{n2}/r_{n1} (n2 = 2·n1 by default), equal to
    scikit-dimension 0.5's ``GRIDE(n1, n2)``; n1 = 1 is the TwoNN MLE. Larger n1 reads the
    dimension at a larger neighbourhood scale, past noise that inflates the nearest one.

    With more than ``max_rows`` rows a seeded subsample of ``max_rows`` is used.
    """
    from dimcollapse.analysis.pairwise import nearest_neighbours, pair_subsample

    n1, n2 = _gride_ranks(n1, n2)
    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return _gride_at(nearest_neighbours(rows, (n1, n2), device=device), n1, n2)


def gride_scales(n_rows: int, range_max: int = GRIDE_RANGE_MAX) -> list[int]:
    """The n1 of the GRIDE curve: 1, 2, 4, … with n2 = 2·n1 ≤ min(range_max, n_rows − 1)
    (scikit-dimension's ``multiscale=True``)."""
    if range_max < 2:
        raise ValueError(f"the GRIDE curve needs range_max >= 2, got {range_max}")
    top = min(range_max, n_rows - 1)
    return [2**i for i in range(int(np.log2(top)))] if top >= 2 else []


@dataclass(frozen=True)
class GrideCurve:
    """GRIDE dimension at n1 = 1, 2, 4, … (n2 = 2·n1), with percentile bootstrap intervals
    over rows (each resample re-fits every scale on the same resampled rows, holding their
    neighbour distances; NaN without a bootstrap)."""

    n1: tuple[int, ...]
    dimension: np.ndarray
    error: np.ndarray
    radius: np.ndarray
    """Mean distance to the n2-th neighbour: the scale each n1 reads, in the data's units."""
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_rows: int
    bootstrap_n: int
    seed: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (undefined values as None)."""

        def values(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in a]

        return {"n1": list(self.n1), "n2": [2 * n for n in self.n1], "dimension": values(self.dimension),
                "error": values(self.error), "radius": values(self.radius), "ci_low": values(self.ci_low),
                "ci_high": values(self.ci_high), "n_rows": self.n_rows, "bootstrap_n": self.bootstrap_n,
                "bootstrap_seed": self.seed, "ci_level": self.level}


def _gride_curve(nn: NearestNeighbours, range_max: int, bootstrap: int, seed: int, level: float) -> GrideCurve:
    n = nn.distances.shape[0]
    scales = gride_scales(n, range_max)
    ratios = [_log_ratios(nn, s, 2 * s) for s in scales]
    fits = [_gride_fit(r[~np.isnan(r)], s, 2 * s) for r, s in zip(ratios, scales)]
    low = np.full(len(scales), np.nan)
    high = np.full(len(scales), np.nan)
    if bootstrap:
        picks = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
        tail = (1 - level) / 2 * 100
        for i, (r, s) in enumerate(zip(ratios, scales)):
            boots = []
            for pick in picks:
                drawn = r[pick]
                drawn = drawn[~np.isnan(drawn)]
                if drawn.size >= 2:
                    boots.append(_gride_fit(drawn, s, 2 * s)[0])
            if len(boots) >= bootstrap / 2:
                low[i], high[i] = np.percentile(boots, [tail, 100 - tail])
    return GrideCurve(
        n1=tuple(scales), dimension=np.array([f[0] for f in fits]), error=np.array([f[1] for f in fits]),
        radius=np.array([nn.at(2 * s).mean() for s in scales]), ci_low=low, ci_high=high, n_rows=n,
        bootstrap_n=bootstrap, seed=seed, level=level,
    )


def gride_curve(
    x: np.ndarray, range_max: int = GRIDE_RANGE_MAX, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
    device: str | None = "auto", max_rows: int | None = None,
) -> GrideCurve:
    """GRIDE across scales, equal to scikit-dimension 0.5's ``GRIDE(multiscale=True,
    range_max=range_max)`` (``dimension_scales_``, ``error_scales_``, ``radius_scales_``),
    from one neighbour search for all scales; ``bootstrap`` resamples of the rows give
    percentile intervals. Reading: noise inflates the nearest scales; the plateau over
    larger n1 is the manifold's dimension."""
    from dimcollapse.analysis.pairwise import nearest_neighbours, pair_subsample

    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    scales = gride_scales(len(rows), range_max)
    if not scales:
        raise ValueError(f"the GRIDE curve needs at least 3 rows, got {len(rows)}")
    ranks = set(scales) | {2 * s for s in scales}
    return _gride_curve(nearest_neighbours(rows, ranks, device=device), range_max, bootstrap, seed, level)


PH0_MAX_ROWS = 2_000
"""Largest subsample of the PH₀ fit by default (subsamples from half of it up to it)."""
PH0_STEPS = 10
PH0_SUBSAMPLES = 5


@dataclass(frozen=True)
class PH0Dimension:
    """A PH₀ (minimum spanning tree) dimension with the setting it was measured at."""

    dimension: float
    alpha: float
    rows_min: int
    rows_max: int
    steps: int
    subsamples: int
    seed: int
    n_rows: int
    log_sizes: np.ndarray
    log_lengths: np.ndarray
    """log of Σ ℓ^α over the MST edges of each subsample (the fit's points)."""

    def __float__(self) -> float:
        return self.dimension

    @property
    def setting(self) -> str:
        return (f"alpha={self.alpha:g} rows={self.rows_min}-{self.rows_max} steps={self.steps} "
                f"subsamples={self.subsamples} seed={self.seed}")


def ph0_dimension(
    x: np.ndarray, *, alpha: float = 1.0, sizes: tuple[int, int] | None = None, max_rows: int = PH0_MAX_ROWS,
    steps: int = PH0_STEPS, subsamples: int = PH0_SUBSAMPLES, seed: int = 0, device: str | None = "auto",
) -> PH0Dimension:
    """PH₀ dimension (Schweinhart 2020): the α-weighted length E = Σ ℓ^α of the Euclidean
    minimum spanning tree of n random rows grows as n^((d − α)/d); d = α / (1 − slope) of
    the least-squares line of log E on log n.

    ``steps`` sizes evenly spaced (rounded up) from ``sizes[0]`` to ``sizes[1]`` rows,
    ``subsamples`` draws each, drawn as scikit-dimension 0.5's ``PH(n_range_min=sizes[0],
    n_range_max=sizes[1], range_type="num", nsteps=steps, subsamples=subsamples,
    random_state=seed)`` draws them (one ``RandomState(seed)``, ``choice`` without
    replacement per subsample), so the two agree. Default sizes: from half of
    min(N, ``max_rows``) up to it — scikit-dimension's default range when N ≤ ``max_rows``,
    and a cost independent of N above (the MST of m rows costs m² distances, one GEMM pass
    in :func:`dimcollapse.analysis.spanning_tree.minimum_spanning_tree`).
    """
    from dimcollapse.analysis.spanning_tree import minimum_spanning_tree

    n = len(x)
    top = min(n, max_rows)
    low, high = sizes if sizes is not None else (math.ceil(0.5 * top), top)
    if alpha <= 0:
        raise ValueError(f"PH0 alpha must be > 0, got {alpha}")
    if steps < 2 or subsamples < 1:
        raise ValueError(f"PH0 needs steps >= 2 and subsamples >= 1, got {steps} and {subsamples}")
    if not 2 <= low < high <= n:
        raise ValueError(f"PH0 needs 2 <= smallest subsample < largest <= rows, got {low}, {high}, {n} rows")
    counts = np.repeat(np.ceil(np.linspace(low, high, steps)).astype(int), subsamples)
    rng = np.random.RandomState(seed)
    lengths = []
    for size in counts:
        rows = np.asarray(x[np.sort(rng.choice(n, size=size, replace=False))])
        lengths.append(float(np.sum(minimum_spanning_tree(rows, device=device).lengths ** alpha)))
    if min(lengths) <= 0:
        raise ValueError("PH0: a subsample's rows are all identical (spanning tree of length 0)")
    lx, ly = np.log(counts), np.log(lengths)
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / np.sum((lx - lx.mean()) ** 2))
    return PH0Dimension(dimension=alpha / (1 - slope), alpha=float(alpha), rows_min=int(low), rows_max=int(high),
                        steps=steps, subsamples=subsamples, seed=seed, n_rows=n, log_sizes=lx, log_lengths=ly)


GRIDE_N1 = 8
"""n1 of the ``gride`` column (n2 = 16): past the nearest scales, which noise inflates."""


def or_undefined(name: str, estimate: Any) -> Any:
    """``estimate()``, or None (the column then NaN) with a warning when the data cannot
    give it (too few rows, all rows identical): one undefined column must not cost the others."""
    try:
        return estimate()
    except ValueError as err:
        warnings.warn(f"{name}: {err}: left undefined", stacklevel=3)
        return None


def neighbour_dimensions(
    x: np.ndarray, *, discard_fraction: float = 0.1, gride_n1: int = GRIDE_N1, gride_range_max: int = GRIDE_RANGE_MAX,
    gride_bootstrap: int = 0, seed: int = 0, device: str | None = "auto",
) -> dict[str, Any]:
    """TwoNN (linear fit and MLE), GRIDE at n1 = ``gride_n1`` and the GRIDE curve up to
    ``gride_range_max`` (JSON-ready, key ``gride_curve``) of the rows of ``x``, from one
    neighbour search for every rank they need. What the rows cannot give (fewer than 3,
    or fewer than 2·``gride_n1`` + 1 for ``gride``) is left undefined with a warning."""
    from dimcollapse.analysis.pairwise import nearest_neighbours

    n = len(x)
    out: dict[str, Any] = {"twonn": math.nan, "twonn_mle": math.nan, "twonn_duplicates": 0, "gride": math.nan,
                           "gride_n1": gride_n1, "gride_curve": None}
    if n < 3:
        warnings.warn(f"TwoNN and GRIDE need at least 3 rows, have {n}: left undefined", stacklevel=2)
        return out
    scales = gride_scales(n, gride_range_max)
    n1, n2 = _gride_ranks(gride_n1, None)
    ranks = {1, 2} | set(scales) | {2 * s for s in scales} | ({n1, n2} if n2 < n else set())
    nn = nearest_neighbours(x, ranks, device=device)
    ratios = _twonn_ratios(nn)
    out["twonn_duplicates"] = ratios.n_duplicates
    if int(ratios.mu.size * (1 - discard_fraction)) >= 2:
        out["twonn"] = twonn_from_ratios(ratios, discard_fraction, "linear").dimension
        out["twonn_mle"] = twonn_from_ratios(ratios, discard_fraction, "mle").dimension
    else:
        warnings.warn(f"TwoNN: {ratios.mu.size} rows with a ratio are too few: left undefined", stacklevel=2)
    if n2 < n:
        gride = or_undefined("GRIDE", lambda: _gride_at(nn, n1, n2).dimension)
        out["gride"] = math.nan if gride is None else gride
    else:
        warnings.warn(f"GRIDE at n1={n1} needs more than {n2} rows, have {n}: left undefined", stacklevel=2)
    curve = or_undefined("GRIDE curve", lambda: _gride_curve(nn, gride_range_max, gride_bootstrap, seed, 0.95))
    out["gride_curve"] = None if curve is None else curve.to_dict()
    return out
