"""Alignment between representations: debiased CKA (Song et al.'s unbiased HSIC) and mutual
k-NN (Huh et al. 2024), each against a direct float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

from dimcollapse.analysis.similarity_measures import (
    cka_matrices,
    knn_sets,
    linear_cka,
    mutual_knn,
    mutual_knn_matrix,
    unbiased_cka,
)


def hsic1_direct(k: np.ndarray, ell: np.ndarray) -> float:
    """REFERENCE §16 literally: zeroed diagonals, uncentred Grams, float64."""
    n = len(k)
    k, ell = k.copy(), ell.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(ell, 0)
    one = np.ones(n)
    return float((np.trace(k @ ell) + (one @ k @ one) * (one @ ell @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one @ k @ ell @ one)) / (n * (n - 3)))


def unbiased_cka_direct(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    k, ell = x @ x.T, y @ y.T
    return hsic1_direct(k, ell) / np.sqrt(hsic1_direct(k, k) * hsic1_direct(ell, ell))


def mutual_knn_direct(x: np.ndarray, y: np.ndarray, k: int) -> float:
    def sets(a: np.ndarray) -> np.ndarray:
        z = np.asarray(a, dtype=np.float64)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        sim = z @ z.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    a, b = sets(x), sets(y)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(a))]))


def related(n: int, dx: int, dy: int, seed: int, offset: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Two spaces sharing one direction, off-centre (the estimator must not need centring)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx)) + offset
    y = x[:, :1] * np.ones(dy) + rng.standard_normal((n, dy))
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("shape", [(400, 20, 12), (25, 60, 90)])  # D × D form and n × n form
def test_unbiased_cka_equals_the_float64_formula(shape: tuple[int, int, int]) -> None:
    x, y = related(*shape, seed=1)
    assert unbiased_cka(x, y, chunk_rows=64) == pytest.approx(unbiased_cka_direct(x, y), abs=1e-6)


def test_debiased_cka_is_near_zero_where_linear_cka_is_not() -> None:
    """Two independent random 50 × 2000 matrices: linear CKA is biased towards 1 at N ≪ D."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((50, 2000)), rng.standard_normal((50, 2000))
    assert linear_cka(x, y) > 0.9
    assert abs(unbiased_cka(x, y)) < 0.05
    assert unbiased_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a, b = related(200, 30, 10, seed=3)
    assert unbiased_cka(a @ q, 4.0 * b) == pytest.approx(unbiased_cka(a, b), rel=1e-6)


def test_cka_matrices_give_both_measures_from_one_cross_term_per_pair() -> None:
    x, y = related(60, 10, 200, seed=4)
    z = np.random.default_rng(5).standard_normal((60, 7)).astype(np.float32)
    linear, debiased = cka_matrices([x, y, z], chunk_rows=16)
    assert np.allclose(np.diag(linear), 1) and np.allclose(np.diag(debiased), 1)
    for (i, a), (j, b) in [((0, x), (1, y)), ((0, x), (2, z)), ((1, y), (2, z))]:
        assert linear[i, j] == linear[j, i] == pytest.approx(linear_cka(a, b), rel=1e-12)
        assert debiased[i, j] == debiased[j, i] == pytest.approx(unbiased_cka_direct(a, b), abs=1e-6)
    with pytest.raises(ValueError, match="at least 4 rows"):
        unbiased_cka(x[:3], y[:3])
    with pytest.raises(ValueError, match="same rows"):
        unbiased_cka(x, y[:50])


@pytest.mark.parametrize("k", [1, 10])
def test_mutual_knn_equals_the_float64_reference(k: int) -> None:
    x, _ = related(300, 30, 1, seed=6)
    y = (x @ np.random.default_rng(7).standard_normal((30, 20)) + 2.0
         * np.random.default_rng(8).standard_normal((300, 20))).astype(np.float32)
    ours = mutual_knn(x, y, k, device="cpu")
    assert ours == pytest.approx(mutual_knn_direct(x, y, k), abs=1e-6)
    assert 0.05 < ours < 0.95  # related, not identical: the reference is informative


def test_mutual_knn_of_a_space_with_itself_and_a_rotation_is_one() -> None:
    x, _ = related(120, 16, 1, seed=9, offset=0.0)
    q, _ = np.linalg.qr(np.random.default_rng(10).standard_normal((16, 16)))
    noise = np.random.default_rng(11).standard_normal((120, 16)).astype(np.float32)
    matrix = mutual_knn_matrix([x, (x @ q).astype(np.float32), noise], 5, device="cpu")
    assert np.allclose(np.diag(matrix), 1) and matrix[0, 1] == pytest.approx(1.0)
    assert matrix[0, 2] == pytest.approx(mutual_knn_direct(x, noise, 5), abs=1e-6) and matrix[0, 2] < 0.2
    assert knn_sets(x, 5, device="cpu").shape == (120, 5)
    with pytest.raises(ValueError, match="k < rows"):
        mutual_knn(x[:5], x[:5], 5)
