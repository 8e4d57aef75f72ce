"""Seeded test matrices of the geometry tests: known intrinsic dimension or spectrum."""

from __future__ import annotations

import numpy as np


def low_rank(n: int = 700, d: int = 64, rank: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))).astype(np.float32)


def isotropic(n: int = 700, d: int = 40, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def power_law(n: int = 700, d: int = 64, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.arange(1, d + 1) ** -1.0 + 0.3).astype(np.float32)


def noisy_manifold(n: int = 3000, d: int = 256, seed: int = 0) -> np.ndarray:
    """sin(z·A), z uniform in 5-d, A a random 5 × d matrix, plus Gaussian noise of 0.05."""
    rng = np.random.default_rng(seed)
    z, a = rng.uniform(size=(n, 5)), rng.standard_normal((5, d))
    return (np.sin(z @ a) + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
