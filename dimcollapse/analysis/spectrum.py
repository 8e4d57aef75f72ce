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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg.blas import dger

from dimcollapse.atomic import atomic_path
from dimcollapse.errors import KnownError

DEFAULT_CHUNK_ROWS = 4096
"""Rows per streamed chunk: big enough for BLAS to run at full speed (2048 rows measured
about 10 % slower at D = 2048); the chunk's float64 working copy is then 64 MiB at
D = 2048, next to 32 MiB for each D×D matrix."""

DEFAULT_ALPHA_RANGE = (10, 99)
"""α-ReQ fit range: 0-based indices into the descending eigenvalues, both ends included
(ranks k = 11..100), the reference implementation's ``np.arange(10, 100)``."""

RANKME_EPS = 1e-7
"""ε added to each p_k in RankMe (Garrido et al. 2023), keeping log p finite for σ = 0."""

NORM_EPS = 1e-12
"""Row norms are clamped to at least this before dividing (torch's F.normalize default),
so an all-zero row stays zero instead of becoming NaN."""

STATS_FORMAT_VERSION = 1


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
# Streaming statistics


class MomentStats:
    """Pairwise-mergeable (count, mean, centred co-moment) of L2-normalised feature rows.

    ``m2`` is Σ (x - mean)(x - mean)^T over all rows seen, in float64. Optional
    non-negative row weights act as frequency weights (a bootstrap resample's counts).

    Degenerate input is tracked on the way: ``zero_rows`` counts all-zero rows, and while
    every row equals the first one a block costs one comparison instead of its float64
    copy and D×D product, so a constant matrix (all zeros, say) costs about one read and
    fails in :meth:`to_spectrum` with :class:`ConstantFeatures`, before any eigendecomposition.
    """

    def __init__(self, dim: int, normalize: bool = True) -> None:
        if dim < 1:
            raise ValueError(f"feature dimension must be >= 1, got {dim}")
        self.dim = int(dim)
        self.normalize = bool(normalize)
        self.count = 0.0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros((self.dim, self.dim))
        self.zero_rows = 0
        #: the row every row streamed so far equals (normalised), while ``not varied``; ``None``
        #: for statistics not streamed here (loaded, built by hand, weighted)
        self.same_row: np.ndarray | None = None
        self.varied = False
        self._first: np.ndarray | None = None  # that row as stored
        self._first_is_zero = False

    # -- accumulation -------------------------------------------------------------------

    def update(
        self,
        rows: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        source: str = "features",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> "MomentStats":
        """Add feature rows (any float dtype), normalising each row first when enabled.

        ``rows`` is processed in blocks of ``chunk_rows`` so the float64 working copy
        stays bounded whatever its length. ``source`` names the data in error messages.
        Returns ``self``.
        """
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"{source}: expected a 2-D array with {self.dim} columns, got shape {rows.shape}")
        _check_dtype(rows.dtype, source)
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (rows.shape[0],):
                raise ValueError(f"{source}: weights shape {weights.shape} does not match {rows.shape[0]} rows")
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"{source}: weights must be finite and non-negative")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        for start in range(0, rows.shape[0], chunk_rows):
            stop = min(start + chunk_rows, rows.shape[0])
            w = None if weights is None else weights[start:stop]
            self._add_block(rows[start:stop], w, f"{source} rows {start}..{stop - 1}")
        return self

    def _add_block(self, block: np.ndarray, weights: np.ndarray | None, where: str) -> None:
        if weights is None and not self.varied and len(block) and self._repeats_first_row(block):
            return
        x = np.array(block, dtype=np.float64, order="C")
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{where}: non-finite value (NaN or inf) in block row {bad}")
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        self.zero_rows += int(np.count_nonzero(norms == 0.0))
        if self.normalize:
            x /= np.maximum(norms, NORM_EPS)[:, None]
        if weights is not None:
            keep = weights > 0
            if not keep.all():
                x = x[keep]
                weights = weights[keep]
            n_b = float(weights.sum())
        else:
            n_b = float(x.shape[0])
        if n_b == 0.0:
            return
        self.varied = True
        if weights is not None:
            mean_b = (weights @ x) / n_b
            x -= mean_b
            x *= np.sqrt(weights)[:, None]
        else:
            mean_b = x.mean(axis=0)
            x -= mean_b
        m2_b = x.T @ x  # numpy recognises A.T @ A and calls BLAS syrk
        self._merge_moments(n_b, mean_b, m2_b)

    def _repeats_first_row(self, block: np.ndarray) -> bool:
        """Add ``block`` if every row of it equals the first row seen, as stored (NaN never
        does): it then adds count and mean, and no co-moment, at the cost of one comparison."""
        first = block[0] if self._first is None else self._first
        if not (block == first).all():
            return False
        if self._first is None:
            row = np.array(first, dtype=np.float64)
            if not np.isfinite(row).all():
                return False  # the general path names it
            norm = float(np.sqrt(row @ row))
            if self.normalize:
                row /= max(norm, NORM_EPS)
            self._first, self.same_row, self._first_is_zero = np.array(first), row, norm == 0.0
        self.zero_rows += block.shape[0] if self._first_is_zero else 0
        self._merge_moments(float(block.shape[0]), self.same_row, None)
        return True

    def _merge_moments(self, n_b: float, mean_b: np.ndarray, m2_b: np.ndarray | None) -> None:
        """Chan/Golub/LeVeque: combine (n_a, mean_a, M2_a) with (n_b, mean_b, M2_b) in place
        (``m2_b=None``: a zero co-moment)."""
        n_a = self.count
        if n_a == 0.0:
            self.count = n_b
            self.mean = np.array(mean_b, dtype=np.float64)
            if m2_b is not None:
                self.m2 = np.array(m2_b, dtype=np.float64, order="C")
            return
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        if m2_b is not None:
            self.m2 += m2_b
        # m2 += (n_a n_b / n) δ δ^T in place (BLAS dger on the F-ordered view of the
        # C-ordered symmetric matrix), sparing a D×D temporary
        if self.m2.flags.c_contiguous:
            dger(n_a * n_b / n, delta, delta, a=self.m2.T, overwrite_a=True)
        else:
            self.m2 += np.outer(delta, delta * (n_a * n_b / n))
        self.count = n

    def merge(self, other: "MomentStats") -> "MomentStats":
        """A new object holding the statistics of both inputs' rows together."""
        if other.dim != self.dim or other.normalize != self.normalize:
            raise ValueError(
                f"cannot merge statistics of dim={self.dim}, normalize={self.normalize} "
                f"with dim={other.dim}, normalize={other.normalize}"
            )
        out = self.copy()
        if other.count > 0:
            if out.count == 0:
                out.same_row, out.varied = other.same_row, other.varied
                out._first, out._first_is_zero = other._first, other._first_is_zero
            else:
                out.varied = out.varied or other.varied or not np.array_equal(out.same_row, other.same_row)
            out._merge_moments(other.count, other.mean, other.m2)
            out.zero_rows += other.zero_rows
        return out

    def copy(self) -> "MomentStats":
        out = MomentStats(self.dim, self.normalize)
        out.count = self.count
        out.mean = self.mean.copy()
        out.m2 = self.m2.copy()
        out.zero_rows, out.same_row, out.varied = self.zero_rows, self.same_row, self.varied
        out._first, out._first_is_zero = self._first, self._first_is_zero
        return out

    # -- derived matrices ---------------------------------------------------------------

    @property
    def covariance(self) -> np.ndarray:
        """Sample covariance M2 / (N - 1), as ``np.cov`` computes it."""
        if self.count < 2:
            raise ValueError(f"covariance needs at least 2 rows, have {self.count:g}")
        return self.m2 / (self.count - 1.0)

    @property
    def second_moment(self) -> np.ndarray:
        """Uncentred Σ x x^T = M2 + N·mean·mean^T (eigenvalues = σ² of the uncentred matrix)."""
        s = np.array(self.m2, dtype=np.float64, order="C")
        dger(self.count, self.mean, self.mean, a=s.T, overwrite_a=True)  # in place, no D×D temporary
        return s

    # -- persistence --------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics to an ``.npz`` file, atomically."""
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                version=np.int64(STATS_FORMAT_VERSION),
                count=np.float64(self.count),
                mean=self.mean,
                m2=self.m2,
                normalize=np.bool_(self.normalize),
                zero_rows=np.int64(self.zero_rows),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "MomentStats":
        """Read statistics written by :meth:`save`; a malformed file raises naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable statistics file: {err}") from err
        missing = {"version", "count", "mean", "m2", "normalize"} - set(fields)
        if missing:
            raise ValueError(f"{path}: not a statistics file, missing {sorted(missing)}")
        if int(fields["version"]) != STATS_FORMAT_VERSION:
            raise ValueError(f"{path}: statistics format version {int(fields['version'])}, expected {STATS_FORMAT_VERSION}")
        mean, m2 = fields["mean"], fields["m2"]
        if mean.ndim != 1 or m2.shape != (mean.size, mean.size):
            raise ValueError(f"{path}: inconsistent shapes mean {mean.shape}, m2 {m2.shape}")
        out = cls(mean.size, bool(fields["normalize"]))
        out.count = float(fields["count"])
        out.mean = mean.astype(np.float64)
        out.m2 = np.array(m2, dtype=np.float64, order="C")
        out.zero_rows = int(fields.get("zero_rows", 0))
        return out

    # -- construction from data ---------------------------------------------------------

    @classmethod
    def from_array(
        cls, features: np.ndarray, normalize: bool = True, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> "MomentStats":
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features: expected a 2-D array (N × D), got shape {features.shape}")
        return cls(features.shape[1], normalize).update(features, chunk_rows=chunk_rows)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], normalize: bool = True, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> "MomentStats":
        reader = NpyRows(path)
        stats = cls(reader.dim, normalize)
        for start, block in reader.chunks(chunk_rows):
            stats._add_block(block, None, f"{path} rows {start}..{start + block.shape[0] - 1}")
        return stats

    # -- the spectrum -------------------------------------------------------------------

    def to_spectrum(
        self,
        *,
        alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
        rankme_eps: float = RANKME_EPS,
        warn: bool = True,
    ) -> Spectrum:
        """Eigendecompose once and derive every curve and metric (see the module doc)."""
        return _spectrum(self, alpha_range=alpha_range, rankme_eps=rankme_eps, warn=warn)


# --------------------------------------------------------------------------------------
# Reading .npy files in row chunks


def _check_dtype(dtype: np.dtype, source: str) -> None:
    if dtype.kind != "f":
        raise ValueError(f"{source}: features must be floating point, got dtype {dtype}")


class NpyRows:
    """Row-chunk reader of a 2-D C-order ``.npy`` file with bounded memory.

    Chunks are read with ``readinto`` into one reused buffer instead of through a memory
    map: a map's touched pages count towards the process's resident memory until it is
    unmapped, so mapping an 8 GB file would make the resident size grow with N.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except ValueError as err:
                raise ValueError(f"{self.path}: not a readable .npy file: {err}") from err
            self.offset = fh.tell()
        if len(shape) != 2:
            raise ValueError(f"{self.path}: expected a 2-D feature matrix (N × D), got shape {shape}")
        if fortran and shape[0] > 1 and shape[1] > 1:
            raise ValueError(f"{self.path}: Fortran-order arrays are not supported; save features in C order")
        _check_dtype(dtype, str(self.path))
        self.n_rows, self.dim = int(shape[0]), int(shape[1])
        self.dtype = dtype
        expected = self.offset + self.n_rows * self.dim * dtype.itemsize
        actual = self.path.stat().st_size
        if actual < expected:
            raise ValueError(f"{self.path}: truncated: {actual} bytes, header promises {expected} ({shape}, {dtype})")
        if self.n_rows == 0 or self.dim == 0:
            raise ValueError(f"{self.path}: empty feature matrix of shape {shape}")

    def chunks(self, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_row, block)``; ``block`` is a view of a reused buffer."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        buf = np.empty((min(chunk_rows, self.n_rows), self.dim), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.offset)
            for start in range(0, self.n_rows, chunk_rows):
                rows = min(chunk_rows, self.n_rows - start)
                view = memoryview(buf[:rows]).cast("B")
                got = 0
                while got < len(view):
                    n = fh.readinto(view[got:])
                    if not n:
                        raise ValueError(f"{self.path}: unexpected end of file at row {start}")
                    got += n
                yield start, buf[:rows]


# --------------------------------------------------------------------------------------
# From statistics to spectrum


def _descending_eigenvalues(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """Eigenvalues of a symmetric PSD matrix, descending, with round-off set to 0.

    Returns the eigenvalues and the tolerance τ = D·eps·λ_max below which they were
    considered zero (numpy's ``matrix_rank`` rule).
    """
    lam = np.linalg.eigvalsh(matrix)[::-1].copy()
    tau = lam[0] * matrix.shape[0] * np.finfo(np.float64).eps
    lam[lam <= tau] = 0.0
    return lam, float(tau)


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
        what = ("identical" if exactly else "identical up to round-off") + (" after L2 normalisation" if normalized else "")
    return (f"all {n_samples} feature rows are {what} (zero covariance): the spectrum and every metric are "
            "undefined; a model that gives every video the same features is broken, or its forward pass failed "
            "(see the extraction's log)")


def zero_rows_message(zero_rows: int, n_samples: int) -> str:
    return (f"{zero_rows} of {n_samples} feature rows are all zeros, usually videos whose forward pass failed; "
            "they count in every metric as identical points")


def _spectrum(stats: MomentStats, *, alpha_range: tuple[int, int], rankme_eps: float, warn: bool) -> Spectrum:
    n_float, d = stats.count, stats.dim
    if n_float < 2:
        raise ValueError(f"a spectrum needs at least 2 feature rows, have {n_float:g}")
    n = int(round(n_float))
    if stats.same_row is not None and not stats.varied:  # seen in the streaming pass: no eigendecomposition
        raise ConstantFeatures(constant_message(n, all_zero=stats.zero_rows >= n_float, normalized=stats.normalize))
    lam, tau = _descending_eigenvalues(stats.covariance)
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

    mu, _ = _descending_eigenvalues(stats.second_moment)
    sigma_u = np.sqrt(mu[:m])
    p = sigma_u / sigma_u.sum() + rankme_eps
    rankme = float(np.exp(-np.sum(p * np.log(p))))

    alpha, r2, used = _alpha_req(lam, alpha_range)
    rank_limited = n <= d
    message = rank_limit_message(n, d) if rank_limited else ""
    if rank_limited and warn:
        warnings.warn(message, RankLimitedWarning, stacklevel=3)
    if stats.zero_rows:
        zeros = zero_rows_message(stats.zero_rows, n)
        message = f"{message} {zeros}" if message else zeros
        if warn:
            warnings.warn(zeros, ZeroRowsWarning, stacklevel=3)
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


def _row_source(source: np.ndarray | str | os.PathLike[str]) -> tuple[int, int, str]:
    if isinstance(source, (str, os.PathLike)):
        reader = NpyRows(source)
        return reader.n_rows, reader.dim, str(source)
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise ValueError(f"features: expected a 2-D array (N × D), got shape {arr.shape}")
    return arr.shape[0], arr.shape[1], "features"


def _iter_rows(source: np.ndarray | str | os.PathLike[str], chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    if isinstance(source, (str, os.PathLike)):
        yield from NpyRows(source).chunks(chunk_rows)
    else:
        arr = np.asarray(source)
        for start in range(0, arr.shape[0], chunk_rows):
            yield start, arr[start : start + chunk_rows]


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
    n, d, name = _row_source(source)
    if estimate is None:
        stats = MomentStats(d, normalize)
        for start, block in _iter_rows(source, chunk_rows):
            stats._add_block(block, None, f"{name} rows {start}..{start + block.shape[0] - 1}")
        estimate = stats.to_spectrum(alpha_range=alpha_range, rankme_eps=rankme_eps, warn=False)
    rng = np.random.default_rng(seed)
    values = {key: np.empty(n_boot) for key in BOOTSTRAP_METRICS}
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        stats = MomentStats(d, normalize)
        for start, block in _iter_rows(source, chunk_rows):
            w = counts[start : start + block.shape[0]]
            stats._add_block(block, w, f"{name} rows {start}..{start + block.shape[0] - 1}")
        spec = stats.to_spectrum(alpha_range=alpha_range, rankme_eps=rankme_eps, warn=False)
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
        n_boot=int(n_boot), seed=int(seed), level=float(level), method=method,
        replicates=values, bias=bias, intervals=intervals,
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
    stats: MomentStats, source: np.ndarray | str | os.PathLike[str], normalize: bool, chunk_rows: int,
    alpha_range: tuple[int, int],
    rankme_eps: float, n_boot: int, seed: int, ci_level: float, ci_method: str,
) -> Spectrum:
    """The spectrum of ``stats``, with bootstrap intervals over ``source``'s rows when asked."""
    spec = stats.to_spectrum(alpha_range=alpha_range, rankme_eps=rankme_eps)
    if n_boot:
        ci = bootstrap(
            source, n_boot, seed, normalize=normalize, level=ci_level, method=ci_method, estimate=spec,
            chunk_rows=chunk_rows, alpha_range=alpha_range, rankme_eps=rankme_eps,
        )
        spec = dataclasses.replace(spec, bootstrap=ci)
    return spec
