"""How alike two representations of the same samples are: linear CKA (Kornblith et al. 2019),
debiased CKA (the unbiased HSIC of Song et al. 2012) and mutual k-NN alignment (Huh et al.
2024), for pairs and as matrices over many spaces (each space's terms computed once)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dimcollapse.analysis.moments import DEFAULT_CHUNK_ROWS, NORM_EPS


def _centred_cross(x: np.ndarray, y: np.ndarray, chunk_rows: int) -> np.ndarray:
    """(X − x̄)ᵀ(Y − ȳ) in float64, streamed over row chunks (works on memory maps)."""
    mx = np.zeros(x.shape[1])
    my = np.zeros(y.shape[1])
    for s in range(0, len(x), chunk_rows):
        mx += np.asarray(x[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
        my += np.asarray(y[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
    mx /= len(x)
    my /= len(y)
    out = np.zeros((x.shape[1], y.shape[1]))
    for s in range(0, len(x), chunk_rows):
        out += (np.asarray(x[s : s + chunk_rows], dtype=np.float64) - mx).T @ (
            np.asarray(y[s : s + chunk_rows], dtype=np.float64) - my)
    return out


def _centred_gram(x: np.ndarray) -> np.ndarray:
    xc = np.asarray(x, dtype=np.float64)
    xc = xc - xc.mean(axis=0)
    return xc @ xc.T


def _centred_row_sq(x: np.ndarray, chunk_rows: int) -> np.ndarray:
    """‖xᵢ − x̄‖² of every row in float64, streamed over row chunks."""
    mean = np.zeros(x.shape[1])
    for s in range(0, len(x), chunk_rows):
        mean += np.asarray(x[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
    mean /= len(x)
    return np.concatenate([np.sum((np.asarray(x[s : s + chunk_rows], dtype=np.float64) - mean) ** 2, axis=1)
                           for s in range(0, len(x), chunk_rows)])


class _CkaSpace:
    """One space compared by CKA, with its normaliser ‖XᵀX‖²_F (X centred) and its centred
    squared row norms kept once computed: a matrix of k spaces then computes k
    normalisers, not one per pair."""

    def __init__(self, x: np.ndarray, chunk_rows: int) -> None:
        self.x, self.chunk_rows = x, chunk_rows
        self._norm_sq: float | None = None
        self._row_sq: np.ndarray | None = None

    def norm_sq(self, gram: np.ndarray | None = None) -> float:
        """‖XᵀX‖²_F = ‖XXᵀ‖²_F, from ``gram`` (XXᵀ) when the caller has it, else from the
        smaller of the D × D and N × N forms."""
        if self._norm_sq is None:
            n, d = self.x.shape
            if gram is None:
                gram = _centred_gram(self.x) if n < d else _centred_cross(self.x, self.x, self.chunk_rows)
            self._norm_sq = float(np.sum(gram * gram))
        return self._norm_sq

    def row_sq(self) -> np.ndarray:
        if self._row_sq is None:
            self._row_sq = _centred_row_sq(self.x, self.chunk_rows)
        return self._row_sq


def _cka_terms(a: _CkaSpace, b: _CkaSpace) -> tuple[float, float, float]:
    """‖XᵀY‖²_F, ‖XᵀX‖²_F, ‖YᵀY‖²_F (X, Y centred): the cross term from the D × D form,
    O(n·dx·dy), or with few rows from the centred Grams K, L (⟨K, L⟩, O(n²(dx + dy))),
    which also give the norms."""
    n, dx = a.x.shape
    dy = b.x.shape[1]
    if n * (dx + dy) < dx * dy:
        k, ell = _centred_gram(a.x), _centred_gram(b.x)
        cross = float(np.sum(k * ell))
        kk, ll = a.norm_sq(k), b.norm_sq(ell)
    else:
        cross = float(np.sum(_centred_cross(a.x, b.x, a.chunk_rows) ** 2))
        kk, ll = a.norm_sq(), b.norm_sq()
    if kk == 0 or ll == 0:
        raise ValueError("CKA is undefined for a space with identical rows (zero centred matrix)")
    return cross, kk, ll


def _hsic1(cross: float, ra: np.ndarray, rb: np.ndarray) -> float:
    """Song et al.'s (2012) unbiased HSIC of linear kernels of centred X, Y, with K̃, L̃ the
    Grams with zeroed diagonals:
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)).
    For centred rows K1 = 0, so K̃1 = −a (a the squared row norms) and the terms reduce
    to tr(K̃L̃) = ‖XᵀY‖²_F − a·b, 1ᵀK̃1 = −Σa, 1ᵀK̃L̃1 = a·b (the estimator does not
    change when the features are shifted, so centring costs nothing)."""
    n = ra.size
    ab = float(ra @ rb)
    return (cross - ab + float(ra.sum()) * float(rb.sum()) / ((n - 1) * (n - 2)) - 2 * ab / (n - 2)) / (n * (n - 3))


def _cka_pair(a: _CkaSpace, b: _CkaSpace, debiased: bool) -> tuple[float, float]:
    """Linear CKA ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) and, when ``debiased``, debiased CKA
    HSIC₁(K, L) / √(HSIC₁(K, K)·HSIC₁(L, L)) from the same cross term (NaN otherwise)."""
    cross, kk, ll = _cka_terms(a, b)
    linear = cross / math.sqrt(kk * ll)
    if not debiased:
        return linear, math.nan
    ra, rb = a.row_sq(), b.row_sq()
    xx, yy = _hsic1(kk, ra, ra), _hsic1(ll, rb, rb)
    if xx <= 0 or yy <= 0:  # possible with very few rows: the estimate of ‖Cov‖² is then useless
        return linear, math.nan
    return linear, _hsic1(cross, ra, rb) / math.sqrt(xx * yy)


def _cka_spaces(matrices: Sequence[np.ndarray], chunk_rows: int, min_rows: int = 2) -> list[_CkaSpace]:
    for m in matrices:
        if m.ndim != 2:
            raise ValueError(f"CKA needs 2-D matrices, got shape {m.shape}")
    rows = {m.shape[0] for m in matrices}
    if len(rows) > 1:
        raise ValueError(f"CKA needs the same rows in every matrix, got {sorted(rows)}")
    if rows and min(rows) < min_rows:
        raise ValueError(f"CKA needs at least {min_rows} rows here, got {min(rows)}")
    return [_CkaSpace(m, chunk_rows) for m in matrices]


def linear_cka(x: np.ndarray, y: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """Linear CKA (Kornblith et al. 2019) of two matrices with the same rows (samples):
    with X, Y centred by column, ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), in [0, 1]; invariant to
    orthogonal transforms and isotropic scaling of either space. Float64, streamed over
    row chunks in the D × D form (works on memory maps)."""
    a, b = _cka_spaces([x, y], chunk_rows)
    return _cka_pair(a, b, debiased=False)[0]


def unbiased_cka(x: np.ndarray, y: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """Debiased linear CKA: linear CKA with Song et al.'s (2012) unbiased HSIC estimator in
    place of the biased one (:func:`_hsic1`), needing n ≥ 4 rows. Plain CKA of two
    independent random n × d matrices with n ≪ d is far from 0; this one is near 0. It can
    be slightly negative, and it is 1 for a space with itself."""
    a, b = _cka_spaces([x, y], chunk_rows, min_rows=4)
    value = _cka_pair(a, b, debiased=True)[1]
    if math.isnan(value):
        raise ValueError("debiased CKA is undefined: a space's unbiased HSIC with itself is not positive")
    return value


def cka_matrices(
    matrices: Sequence[np.ndarray], *, debiased: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric matrices of linear and (``debiased``; else NaN) debiased CKA between every
    two of ``matrices``, ones on the diagonals; one cross term per pair serves both, and
    each space's normaliser and row norms are computed once. A debiased value that a
    space's few rows leave undefined (its unbiased HSIC with itself not positive) is NaN."""
    spaces = _cka_spaces(matrices, chunk_rows, min_rows=4 if debiased else 2)
    linear = np.eye(len(spaces))
    unbiased = np.eye(len(spaces)) if debiased else np.full((len(spaces),) * 2, np.nan)
    for i in range(len(spaces)):
        for j in range(i + 1, len(spaces)):
            linear[i, j], unbiased[i, j] = _cka_pair(spaces[i], spaces[j], debiased)
            linear[j, i], unbiased[j, i] = linear[i, j], unbiased[i, j]
    return linear, unbiased


def linear_cka_matrix(matrices: Sequence[np.ndarray], *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Symmetric matrix of linear CKA between every two of ``matrices`` (ones on the
    diagonal); each space's normaliser is computed once."""
    return cka_matrices(matrices, debiased=False, chunk_rows=chunk_rows)[0]


MUTUAL_KNN_K = 10
"""Neighbours per row of the mutual k-NN alignment (Huh et al. 2024 use 10)."""


def knn_sets(x: np.ndarray, k: int = MUTUAL_KNN_K, *, device: str | None = "auto") -> np.ndarray:
    """The ``k`` nearest other rows of each row by cosine similarity (N × k indices, each
    row's set in index order; ties go to the lower index): Euclidean neighbours of the
    L2-normalised rows, from one chunked search (zero rows stay zero)."""
    from dimcollapse.analysis.pairwise import nearest_neighbours

    z = np.array(x, dtype=np.float64)
    z /= np.maximum(np.linalg.norm(z, axis=1), NORM_EPS)[:, None]
    sets = nearest_neighbours(z.astype(np.float32), (k,), members=k, device=device).members
    assert sets is not None  # members=k asks for them
    return sets


def _shared_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |A_i ∩ B_i| / k for two N × k arrays of per-row index sets."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    return float(np.mean(np.sum(both[:, 1:] == both[:, :-1], axis=1) / a.shape[1]))


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = MUTUAL_KNN_K, *, device: str | None = "auto") -> float:
    """Mutual k-NN alignment (Huh et al. 2024, "The Platonic Representation Hypothesis")
    of two matrices with the same rows: the mean over rows of the fraction of its k
    nearest neighbours (cosine, itself excluded) that the two spaces share; 1 for spaces
    with the same neighbourhoods, about k/(N − 1) for unrelated ones."""
    return float(mutual_knn_matrix([x, y], k, device=device)[0, 1])


def mutual_knn_matrix(
    matrices: Sequence[np.ndarray], k: int = MUTUAL_KNN_K, *, device: str | None = "auto",
) -> np.ndarray:
    """Symmetric matrix of :func:`mutual_knn` between every two of ``matrices`` (ones on
    the diagonal); each space's neighbour sets are searched once."""
    rows = {m.shape[0] for m in matrices}
    if len(rows) > 1:
        raise ValueError(f"mutual k-NN needs the same rows in every matrix, got {sorted(rows)}")
    if rows and not 1 <= k < min(rows):
        raise ValueError(f"mutual k-NN needs 1 <= k < rows, got k={k} with {min(rows)} rows")
    return mutual_knn_from_sets([knn_sets(m, k, device=device) for m in matrices])


def mutual_knn_from_sets(sets: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric matrix of the mean shared fraction between every two of ``sets`` (N × k
    neighbour sets of :func:`knn_sets` on the same rows), ones on the diagonal."""
    out = np.eye(len(sets))
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            out[i, j] = out[j, i] = _shared_fraction(sets[i], sets[j])
    return out
