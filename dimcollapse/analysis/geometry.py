"""The geometry columns of a feature matrix beyond its spectrum: intrinsic dimension
(:mod:`dimcollapse.analysis.neighbours`), self-clustering (Tsitsulin et al. 2023), uniformity and
alignment (Wang & Isola 2020), all in :func:`geometry_metrics` for the spectrum rule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dimcollapse.analysis.moments import NORM_EPS, MomentStats
from dimcollapse.analysis.neighbours import (
    GRIDE_N1,
    GRIDE_RANGE_MAX,
    PH0_MAX_ROWS,
    PH0_STEPS,
    PH0_SUBSAMPLES,
    neighbour_dimensions,
    or_undefined,
    ph0_dimension,
)

DEFAULT_MAX_PAIRS_ROWS = 20_000
"""Rows above which the O(N²) metrics (TwoNN, GRIDE, PH₀, uniformity) use a seeded subsample."""


def self_clustering(x: np.ndarray) -> float:
    """Self-clustering ψ (Tsitsulin et al. 2023) of the L2-normalised rows z of ``x``:
    ψ = (d‖ZZᵀ‖²_F − n(n + d − 1)) / (n(n − 1)(d − 1)); 0 for random directions, 1 when
    all rows point one way.

    ‖ZZᵀ‖_F = ‖ZᵀZ‖_F, so with more rows than dimensions the D × D second moment of the
    streamed statistics (float64, chunked) replaces the n × n Gram matrix: O(nd²), no pairs.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"self-clustering needs at least 2 rows and 2 columns, got shape {x.shape}")
    n, d = x.shape
    if n >= d:
        gram_sq = float(np.sum(MomentStats.from_array(x, normalize=True).second_moment ** 2))
    else:
        z = np.array(x, dtype=np.float64)
        z /= np.maximum(np.linalg.norm(z, axis=1), NORM_EPS)[:, None]
        gram_sq = float(np.sum((z @ z.T) ** 2))
    return (d * gram_sq - n * (n + d - 1)) / (n * (n - 1) * (d - 1))


def uniformity(
    x: np.ndarray, t: float = 2.0, *, device: str | None = "auto", max_rows: int | None = None, seed: int = 0,
) -> float:
    """Uniformity (Wang & Isola 2020): log of the mean over pairs i < j of exp(−t‖zᵢ − zⱼ‖²)
    for the L2-normalised rows z; lower is more uniform on the sphere. Summed by log-sum-exp
    over float32 Gram blocks of the upper triangle; more than ``max_rows`` rows: a seeded subsample.
    """
    from dimcollapse.analysis.pairwise import (
        log_mean_pair_kernel,
        normalized_rows,
        pair_subsample,
        torch_device,
    )

    if t <= 0:
        raise ValueError(f"uniformity t must be > 0, got {t}")
    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return log_mean_pair_kernel(normalized_rows(rows, torch_device(device)), t)


def alignment(views: np.ndarray, *, chunk_rows: int = 1024) -> float:
    """Alignment (Wang & Isola 2020, α = 2) of an N × Q × D array of Q ≥ 2 views per sample:
    the mean over samples and over view pairs v < w of ‖z_v − z_w‖² (rows L2-normalised);
    0 when every view of a sample maps to one point, 4 at most.

    Σ_{v<w}‖z_v − z_w‖² = QΣ_v‖z_v‖² − ‖Σ_v z_v‖², so it costs O(NQD), streamed in chunks.
    """
    if views.ndim != 3 or views.shape[0] < 1 or views.shape[1] < 2:
        raise ValueError(f"alignment needs an N × Q × D array with Q ≥ 2 views, got shape {views.shape}")
    n, q, _ = views.shape
    total = 0.0
    for start in range(0, n, chunk_rows):
        z = np.array(views[start : start + chunk_rows], dtype=np.float64)
        z /= np.maximum(np.linalg.norm(z, axis=2), NORM_EPS)[..., None]
        total += float(q * np.sum(z**2) - np.sum(z.sum(axis=1) ** 2))
    return total / (n * q * (q - 1) / 2)


def geometry_metrics(
    x: np.ndarray, *, views: np.ndarray | None = None, normalize: bool = True, discard_fraction: float = 0.1,
    uniformity_t: float = 2.0, max_pairs_rows: int | None = DEFAULT_MAX_PAIRS_ROWS, seed: int = 0,
    device: str | None = "cpu", gride_n1: int = GRIDE_N1, gride_range_max: int = GRIDE_RANGE_MAX,
    gride_bootstrap: int = 0, ph0_max_rows: int = PH0_MAX_ROWS, ph0_steps: int = PH0_STEPS,
    ph0_subsamples: int = PH0_SUBSAMPLES, ph0_alpha: float = 1.0,
) -> dict[str, Any]:
    """The geometry columns of one feature matrix (and of its views, when given).

    TwoNN (linear fit and MLE), GRIDE at n1 = ``gride_n1`` and the GRIDE curve (key
    ``gride_curve``, for the JSON, not the table) come from one neighbour search, on the
    rows the spectrum sees: L2-normalised when ``normalize``, so all describe one point
    cloud. TwoNN, GRIDE, PH₀ and uniformity use the same seeded subsample when N >
    ``max_pairs_rows``; ``pairs_rows`` records how many rows they used, ``ph0_setting``
    the PH₀ sizes and draws. Self-clustering uses every row (it needs no pairs).
    """
    from dimcollapse.analysis.pairwise import pair_subsample

    pick = pair_subsample(len(x), max_pairs_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    cloud = rows
    if normalize:
        cloud = np.array(rows, dtype=np.float64)
        cloud /= np.maximum(np.linalg.norm(cloud, axis=1), NORM_EPS)[:, None]
        cloud = cloud.astype(np.float32)
    out: dict[str, Any] = neighbour_dimensions(cloud, discard_fraction=discard_fraction, gride_n1=gride_n1,
                                               gride_range_max=gride_range_max, gride_bootstrap=gride_bootstrap,
                                               seed=seed, device=device)
    ph0 = or_undefined("PH0", lambda: ph0_dimension(cloud, alpha=ph0_alpha, max_rows=ph0_max_rows, steps=ph0_steps,
                                               subsamples=ph0_subsamples, seed=seed, device=device))
    out.update({
        "ph0": math.nan if ph0 is None else ph0.dimension,
        "ph0_setting": "" if ph0 is None else ph0.setting,
        "self_clustering": self_clustering(x),
        "uniformity": uniformity(rows, uniformity_t, device=device),
        "pairs_rows": int(len(rows)),
    })
    if views is not None:
        out["alignment"] = alignment(views)
    return out
