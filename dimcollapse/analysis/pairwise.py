"""Kernels over all pairs of rows, one Gram block at a time (torch, CPU or CUDA).

Pairwise metrics (TwoNN's nearest neighbours, uniformity's sum over pairs) need every
inner product of an N × D matrix with itself, but never the N × N matrix: each kernel
walks row chunks, computes one float32 Gram block ``x[chunk] @ x.T`` with a single GEMM,
reduces it, and drops it. Memory is bounded by ``chunk_rows × N`` values, not N².

Float32 is accurate for inner products but not for distances read off them:
‖a − b‖² = ‖a‖² + ‖b‖² − 2ab cancels when neighbours are close compared with their norms.
:func:`nearest_two` therefore uses the Gram blocks only to pick a few candidates per row,
then recomputes the candidates' distances from differences (rounded relative to the
distance itself, not to the norms), and proves the result: every row whose second-nearest
distance lies below the smallest distance the float32 pass could have missed (a
worst-case rounding bound) is certain; the rare others are searched again against all rows
in float64.

The public metrics built on these kernels are in :mod:`dimcollapse.analysis.metrics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

DEFAULT_CHUNK_ROWS = 512
"""Rows per Gram block: a block of 512 × 20,000 float32 values is 40 MiB, and the GEMM
is still large enough to run at full speed."""

CANDIDATES = 4
"""Neighbours per row whose distances are recomputed from differences after the float32
pass; the next one's float32 distance bounds what the pass could have missed."""

_U32 = float(np.finfo(np.float32).eps) / 2  # unit round-off of float32


def torch_device(device: str | None) -> torch.device:
    """``auto``/None: CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


@contextlib.contextmanager
def _ieee_float32(device: torch.device) -> Iterator[None]:
    """Plain float32 GEMMs on CUDA (no TF32), which the rounding bound assumes."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = before


def pair_subsample(n_rows: int, max_rows: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded subsample of ``max_rows`` rows, or None to use them all."""
    if max_rows is None or n_rows <= max_rows:
        return None
    if max_rows < 3:
        raise ValueError(f"max_pairs_rows must be at least 3, got {max_rows}")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=max_rows, replace=False))


def normalized_rows(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero), normalised in float64, stored float32."""
    z = torch.from_numpy(np.array(x, dtype=np.float64))  # a copy: the input may be a read-only map
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return z.to(device=device, dtype=torch.float32)


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    """The rows as a CPU tensor sharing memory where possible (float32 or float64)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if not (x.flags.c_contiguous and x.flags.writeable):
        x = np.array(x, order="C")  # a read-only memory map is read into memory once
    return torch.from_numpy(x)


def _exact_sq_distances(src: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, piece: int = 256) -> torch.Tensor:
    """‖src[rows[i]] − src[cols[i, j]]‖² from differences, so without cancellation: each
    difference is rounded relative to itself (float32 input: relative error ~1e-7 of the
    distance, not of the norms), and identical rows give exactly 0."""
    out = torch.empty(cols.shape, dtype=torch.float64)
    for s in range(0, rows.numel(), piece):
        b = src[cols[s : s + piece]]
        b.sub_(src[rows[s : s + piece]][:, None, :]).square_()
        out[s : s + piece] = b.sum(dim=2)  # a sum of squares: no cancellation in any precision
    return out


def _recheck_row(src: torch.Tensor, xc: torch.Tensor, sq32: torch.Tensor, row: int, reach: float) -> torch.Tensor:
    """The two smallest squared distances of one row to all others, when its candidates
    were not proven complete: one float32 pass over all rows (a GEMV) keeps every row whose
    float32 distance is within ``reach`` (r₂² plus the rounding bound), then those few are
    measured from differences."""
    approx = (sq32 + sq32[row] - 2 * (xc @ xc[row])).cpu()
    approx[row] = float("inf")
    near = torch.nonzero(approx <= reach).flatten()
    exact = _exact_sq_distances(src, torch.tensor([row]), near[None, :])[0]
    return torch.topk(exact, 2, largest=False, sorted=True).values


def nearest_two(
    x: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, device: str | None = "auto",
    candidates: int = CANDIDATES,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Euclidean distances r₁ ≤ r₂ of each row to its two nearest other rows (float64 array).

    Returns ``(r1, r2, rechecked)``: ``rechecked`` counts the rows whose float32 candidates
    could not be proven complete and were searched again exactly. Identical rows have
    distance exactly 0 (the check subtracts them). Memory: the input, one float32 centred
    copy on ``device``, one ``chunk_rows × N`` block and N × (candidates + 1) candidates.
    """
    src = _as_tensor(x)
    n, d = src.shape
    if n < 3:
        raise ValueError(f"the two nearest neighbours need at least 3 rows, got {n}")
    dev = torch_device(device)
    k = min(candidates + 1, n - 1)  # the (candidates + 1)-th only bounds the others
    piece = 2048
    # Centring shrinks the norms, and with them the float32 cancellation (a shift of all
    # rows by the rounded mean changes no distance).
    centre = (src.sum(dim=0, dtype=torch.float64) / n).to(src.dtype)
    xc = torch.empty((n, d), dtype=torch.float32, device=dev)
    sq = torch.empty(n, dtype=torch.float64)
    for s in range(0, n, piece):
        part = (src[s : s + piece] - centre).to(torch.float32)
        sq[s : s + piece] = part.square().sum(dim=1, dtype=torch.float64)
        xc[s : s + piece] = part.to(dev)
    sq32 = sq.to(device=dev, dtype=torch.float32)
    # |fl(d²) − d²| ≤ (D + 8)·u·(‖a‖² + ‖b‖²) for float32 dot products of length D; the
    # factor 2 covers the rounding of the differences in the exact recomputation
    slack = 2 * (d + 8) * _U32 * (sq + sq.max())
    r1, r2 = np.empty(n), np.empty(n)
    rechecked = 0
    # Running float32 candidates of every row: d² is symmetric, so each row chunk computes
    # only its block of the upper triangle (columns from its first row on: half the GEMM
    # work); the block's rows update their own candidates, its later columns theirs.
    cand = torch.full((n, k), float("inf"), device=dev)
    cand_idx = torch.zeros((n, k), dtype=torch.long, device=dev)
    with _ieee_float32(dev):
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            block = xc[start:stop] @ xc[start:].T
            block.mul_(-2).add_(sq32[None, start:]).add_(sq32[start:stop, None])
            rows = torch.arange(stop - start, device=dev)
            block[rows, rows] = float("inf")
            width = min(k, block.shape[1])
            near, idx = torch.topk(block, width, dim=1, largest=False)
            near, pick = torch.topk(torch.cat([cand[start:stop], near], dim=1), k, dim=1, largest=False, sorted=True)
            idx = torch.cat([cand_idx[start:stop], idx + start], dim=1).gather(1, pick)
            if stop < n:  # the later columns: their nearest rows within this chunk
                later = block[:, stop - start :]
                col_near, col_idx = torch.topk(later, min(k, stop - start), dim=0, largest=False)
                merged, pick = torch.topk(torch.cat([cand[stop:], col_near.T], dim=1), k, dim=1, largest=False)
                cand_idx[stop:] = torch.cat([cand_idx[stop:], col_idx.T + start], dim=1).gather(1, pick)
                cand[stop:] = merged
            checked = idx[:, :candidates] if k > candidates else idx
            exact = _exact_sq_distances(src, torch.arange(start, stop), checked.cpu())
            two = torch.topk(exact, 2, dim=1, largest=False, sorted=True).values
            # a row not checked is at least this far (squared) in exact terms
            missed = near[:, -1].double().cpu() - slack[start:stop]
            doubtful = (two[:, 1] > missed) & (k > candidates)
            for i in torch.nonzero(doubtful).flatten().tolist():
                reach = float(two[i, 1] + 2 * slack[start + i])
                two[i] = _recheck_row(src, xc, sq32, start + i, reach)
                rechecked += 1
            two = two.sqrt().numpy()
            r1[start:stop], r2[start:stop] = two[:, 0], two[:, 1]
    return r1, r2, rechecked


def log_mean_pair_kernel(z: torch.Tensor, t: float, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """log of the mean over pairs i < j of exp(−t‖zᵢ − zⱼ‖²) for unit rows ``z``.

    ‖zᵢ − zⱼ‖² = 2 − 2zᵢ·zⱼ, so each row chunk needs only the Gram block of its own and
    later rows (the upper triangle: half the GEMM work); block sums are combined with
    log-sum-exp in float64, so nothing underflows whatever ``t``.
    """
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"a mean over pairs needs at least 2 rows, got {n}")
    total = -np.inf
    with _ieee_float32(z.device):
        for start in range(0, n - 1, chunk_rows):
            stop = min(start + chunk_rows, n)
            block = z[start:stop] @ z[start:].T
            block.sub_(1).mul_(2 * t)  # −t(2 − 2s)
            upper = torch.ones(stop - start, n - start, dtype=torch.bool, device=z.device).triu_(1)
            block.masked_fill_(~upper, float("-inf"))
            per_row = torch.logsumexp(block, dim=1).double()  # float32 sums of ≤ N terms per row
            total = float(np.logaddexp(total, torch.logsumexp(per_row, dim=0).item()))
    return total - float(np.log(n * (n - 1) / 2))
