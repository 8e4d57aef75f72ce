"""Kernels over all pairs of rows, one Gram block at a time (torch, CPU or CUDA).

Pairwise metrics (the neighbour distances of TwoNN and GRIDE, the k-NN sets of mutual
k-NN, uniformity's sum over pairs) need every inner product of an N × D matrix with itself,
but never the N × N matrix: each kernel walks row chunks, computes one float32 Gram block
``x[chunk] @ x.T`` with a single GEMM, reduces it, and drops it. Memory is bounded by
``chunk_rows × N`` values, not N².

Float32 is accurate for inner products but not for distances read off them:
‖a − b‖² = ‖a‖² + ‖b‖² − 2ab cancels when neighbours are close compared with their norms.
:func:`nearest_neighbours` therefore uses the Gram blocks only to pick candidates per row,
then recomputes from differences (rounded relative to the distance itself, not to the
norms) the few candidates whose order a worst-case rounding bound leaves in doubt, and
proves the result: the last candidate's distance bounds what the float32 pass could have
missed; the rare rows it cannot prove are searched again against all rows. One pass serves
every rank asked for (TwoNN's 1 and 2 and the whole GRIDE curve).

The public metrics built on these kernels are in :mod:`dimcollapse.analysis.neighbours`,
:mod:`~dimcollapse.analysis.geometry` and :mod:`~dimcollapse.analysis.similarity_measures`; the
minimum spanning trees of PH₀ in :mod:`dimcollapse.analysis.spanning_tree`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_CHUNK_ROWS = 512
"""Rows per Gram block: a block of 512 × 20,000 float32 values is 40 MiB, and the GEMM
is still large enough to run at full speed."""

EXTRA_CANDIDATES = 2
"""Candidates kept per row beyond the largest rank asked for (so that a near-tie at that
rank seldom leaves a row unproven); one more bounds, by its float32 distance, what the
pass could have missed."""

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


def _exact_sq_pairs(src: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, piece: int = 4096) -> torch.Tensor:
    """‖src[rows[i]] − src[cols[i]]‖² from differences, so without cancellation: each
    difference is rounded relative to itself, and the sum of squares has no cancellation
    in any precision (float32 input, summed in float32 by torch's cascade: relative error
    ~1e-7 of the distance, not of the norms). Identical rows give exactly 0."""
    out = torch.empty(rows.shape, dtype=torch.float64)
    for s in range(0, rows.numel(), piece):
        b = src[cols[s : s + piece]]
        out[s : s + piece] = b.sub_(src[rows[s : s + piece]]).square_().sum(dim=1)
    return out


@dataclass(frozen=True)
class NearestNeighbours:
    """What :func:`nearest_neighbours` found for every row."""

    ranks: tuple[int, ...]
    distances: np.ndarray
    """N × len(ranks): the Euclidean distance of each row to its r-th nearest other row."""
    members: np.ndarray | None
    """N × k: the k nearest other rows of each row, as a set in index order (ties at the
    k-th distance go to the lower index), when asked for."""
    rechecked: int
    """Rows whose float32 candidates could not be proven complete and were searched again."""

    def at(self, rank: int) -> np.ndarray:
        return self.distances[:, self.ranks.index(rank)]


class _Centred:
    """The rows on ``device`` as float32, centred by their (rounded) mean, with their
    squared norms: centring shrinks the norms and with them the float32 cancellation (a
    shift of all rows changes no distance).

    A float32 squared distance read off the Gram matrix is within
    ``unit·(‖a‖² + ‖b‖²)`` of the exact one: |fl(d²) − d²| ≤ (D + 8)·u·(‖a‖² + ‖b‖²) for
    dot products of length D, and the factor 2 in ``unit`` covers the rounding of the
    differences in the exact recomputation."""

    def __init__(self, src: torch.Tensor, dev: torch.device, piece: int = 2048) -> None:
        n, d = src.shape
        centre = (src.sum(dim=0, dtype=torch.float64) / n).to(src.dtype)
        self.x = torch.empty((n, d), dtype=torch.float32, device=dev)
        self.sq = torch.empty(n, dtype=torch.float64)
        for s in range(0, n, piece):
            part = (src[s : s + piece] - centre).to(torch.float32)
            self.sq[s : s + piece] = part.square().sum(dim=1, dtype=torch.float64)
            self.x[s : s + piece] = part.to(dev)
        self.sq32 = self.sq.to(device=dev, dtype=torch.float32)
        self.unit = 2 * (d + 8) * _U32

    def slack(self, rows: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """The error bound of float32 squared distances from ``rows`` to ``cols`` (same
        shape, or broadcast), or to any row when ``cols`` is None."""
        other = self.sq.max() if cols is None else self.sq[cols]
        return self.unit * (self.sq[rows] + other)

    def block(self, start: int, stop: int, col_start: int, col_stop: int | None = None) -> torch.Tensor:
        """Float32 squared distances of rows start:stop to rows col_start:col_stop (one GEMM)."""
        cols = slice(col_start, col_stop)
        out = self.x[start:stop] @ self.x[cols].T
        return out.mul_(-2).add_(self.sq32[None, cols]).add_(self.sq32[start:stop, None])


def _candidate_chunks(c: _Centred, k: int, chunk_rows: int) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """For each row chunk, in order: the float32 squared distances (ascending) and indices
    of the ``k`` nearest other rows of its rows, final once the chunk is reached.

    d² is symmetric, so each chunk computes only its block of the upper triangle (columns
    from its first row on: half the GEMM work); the block's rows update their own
    candidates, its later columns theirs."""
    n, dev = c.x.shape[0], c.x.device
    cand = torch.full((n, k), float("inf"), device=dev)
    cand_idx = torch.zeros((n, k), dtype=torch.long, device=dev)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        block = c.block(start, stop, start)
        rows = torch.arange(stop - start, device=dev)
        block[rows, rows] = float("inf")
        near, idx = torch.topk(block, min(k, block.shape[1]), dim=1, largest=False)
        near, pick = torch.topk(torch.cat([cand[start:stop], near], dim=1), k, dim=1, largest=False, sorted=True)
        idx = torch.cat([cand_idx[start:stop], idx + start], dim=1).gather(1, pick)
        if stop < n:  # the later columns: their nearest rows within this chunk
            later = block[:, stop - start :].T  # a view: topk along its rows is the fast direction
            col_near, col_idx = torch.topk(later, min(k, stop - start), dim=1, largest=False)
            merged, pick = torch.topk(torch.cat([cand[stop:], col_near], dim=1), k, dim=1, largest=False)
            cand_idx[stop:] = torch.cat([cand_idx[stop:], col_idx + start], dim=1).gather(1, pick)
            cand[stop:] = merged
        yield start, stop, near, idx


def _select(values: torch.Tensor, index: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Per row, a mask of the ``count`` smallest ``values`` (ties to the lower ``index``;
    ``inf`` marks entries that may not be chosen)."""
    order = torch.from_numpy(np.lexsort((index.numpy(), values.numpy()), axis=-1))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(values.shape[1]).expand_as(order).contiguous())
    return rank < count[:, None]


def _resolve(
    src: torch.Tensor, c: _Centred, start: int, near: torch.Tensor, idx: torch.Tensor, ranks: tuple[int, ...],
    members: int, bounded: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Exact squared distances at ``ranks`` (and the ``members`` nearest) of a chunk's rows
    from their sorted float32 candidates.

    Each candidate's exact value lies in [a − s, a + s] (a its float32 value, s its pair's
    rounding bound), and every row the pass left out is at least ``a_last − s_max`` away
    (``a_last`` the last candidate's value) when the candidates are not all rows
    (``bounded``). So the exact r-th distance lies in [L_r, U_r] with U_r the largest
    upper end of the r first candidates and L_r the smallest lower end of the others:
    candidates whose interval ends below L_r are surely nearer, those starting above U_r
    surely farther, and only the few in between are measured exactly. A row whose
    left-out bound does not clear U of its largest rank is reported doubtful (third
    value) for an exact search against all rows."""
    a = near.double().cpu()
    cols = idx.cpu()
    n_rows, k = a.shape
    rows = torch.arange(start, start + n_rows)
    s = c.slack(rows[:, None], cols)
    lo, hi = a - s, a + s
    left_out = a[:, -1] - c.slack(rows) if bounded else torch.full((n_rows,), float("inf"), dtype=torch.float64)
    at = torch.tensor([r - 1 for r in ranks])
    upper = hi.cummax(dim=1).values[:, at]  # rows × ranks
    lower = torch.minimum(lo.flip(1).cummin(dim=1).values.flip(1)[:, at], left_out[:, None])
    window = (hi[:, :, None] >= lower[:, None, :]) & (lo[:, :, None] <= upper[:, None, :])  # rows × k × ranks
    below = (hi[:, :, None] < lower[:, None, :]).sum(dim=1)  # rows × ranks
    exact = torch.full((n_rows, k), float("inf"), dtype=torch.float64)
    r_i, c_i = torch.nonzero(window.any(dim=2), as_tuple=True)
    exact[r_i, c_i] = _exact_sq_pairs(src, rows[r_i], cols[r_i, c_i])
    in_window = torch.where(window, exact[:, :, None], torch.tensor(float("inf"), dtype=torch.float64))
    values = in_window.sort(dim=1).values.gather(1, (at[None, :] - below)[:, None, :]).squeeze(1)
    chosen = None
    if members:
        j = ranks.index(members)
        pick = _select(in_window[:, :, j], cols, members - below[:, j])
        chosen = (hi < lower[:, j, None]) | (window[:, :, j] & pick)
    return values, chosen, left_out <= upper[:, -1]


def _recheck_rows(src: torch.Tensor, c: _Centred, rows: torch.Tensor, reach: torch.Tensor, ranks: tuple[int, ...],
                  members: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Exact squared distances at ``ranks`` (and the ``members`` nearest) of rows whose
    candidates were not proven complete: one float32 block of those rows against all rows
    (one GEMM) keeps, per row, every row whose float32 distance is within its ``reach``
    (the largest rank's float32 distance plus twice the rounding bound), then those few
    are measured from differences."""
    on_dev = rows.to(c.x.device)
    approx = (c.sq32[None, :] + c.sq32[on_dev, None] - 2 * (c.x[on_dev] @ c.x.T)).cpu()
    approx[torch.arange(rows.numel()), rows] = float("inf")
    limit = torch.nextafter(reach.float(), torch.tensor(float("inf")))  # rounded up, never down
    r_i, c_i = torch.nonzero(approx <= limit[:, None], as_tuple=True)
    exact = _exact_sq_pairs(src, rows[r_i], c_i)
    out = []
    for i in range(rows.numel()):
        mine = r_i == i
        near, values = c_i[mine], exact[mine]
        order = torch.from_numpy(np.lexsort((near.numpy(), values.numpy())))
        out.append((values[order[torch.tensor(ranks) - 1]], near[order[:members]] if members else None))
    return out


def nearest_neighbours(
    x: np.ndarray, ranks: Iterable[int], *, members: int = 0, chunk_rows: int = DEFAULT_CHUNK_ROWS,
    device: str | None = "auto", extra: int = EXTRA_CANDIDATES,
) -> NearestNeighbours:
    """Euclidean distances of each row to its r-th nearest other row, for every r in
    ``ranks``, and with ``members`` > 0 the set of its ``members`` nearest rows: one chunked
    float32 top-k pass over Gram blocks, then exact distances where order is in doubt.

    The pass keeps r + max(``extra``, r / 4) + 1 candidates per row (r the largest rank
    or ``members``: more near-ties at larger ranks); the exact step
    (:func:`_resolve`) measures only the candidates whose float32 distance is too close to
    a requested rank's to decide, and the last candidate proves that no other row is
    nearer; the rare rows it cannot prove are searched again against all rows. Identical
    rows have distance exactly 0. Memory: the input, one float32 centred copy on
    ``device``, one ``chunk_rows × N`` block and the N × k candidates.
    """
    src = _as_tensor(x)
    n = src.shape[0]
    asked = tuple(sorted(set(ranks) | ({members} if members else set())))
    if not asked or asked[0] < 1:
        raise ValueError(f"neighbour ranks must be at least 1, got {sorted(set(ranks))}")
    if asked[-1] > n - 1:
        raise ValueError(f"the {asked[-1]}-th nearest neighbour needs at least {asked[-1] + 1} rows, got {n}")
    dev = torch_device(device)
    k = min(asked[-1] + max(extra, asked[-1] // 4) + 1, n - 1)
    c = _Centred(src, dev)
    dist = np.empty((n, len(asked)))
    chosen = np.empty((n, members), dtype=np.int64)  # (no columns without members)
    rechecked = 0
    with _ieee_float32(dev):
        for start, stop, near, idx in _candidate_chunks(c, k, chunk_rows):
            values, sets, doubtful = _resolve(src, c, start, near, idx, asked, members, bounded=k < n - 1)
            if sets is not None:
                kept = idx.cpu()[sets].view(stop - start, members)
                chosen[start:stop] = kept.sort(dim=1).values.numpy()
            again = torch.nonzero(doubtful).flatten()
            if again.numel():
                reach = near[again.to(dev), asked[-1] - 1].double().cpu() + 2 * c.slack(start + again)
                for i, (row_values, row_set) in zip(again.tolist(), _recheck_rows(src, c, again + start, reach,
                                                                                   asked, members)):
                    values[i] = row_values
                    if row_set is not None:
                        chosen[start + i] = row_set.sort().values.numpy()
                rechecked += again.numel()
            dist[start:stop] = values.sqrt().numpy()
    return NearestNeighbours(ranks=asked, distances=dist, members=chosen if members else None, rechecked=rechecked)


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
