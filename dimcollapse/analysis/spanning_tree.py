"""Euclidean minimum spanning tree of the rows of a matrix, on chunked Gram blocks.

The PH₀ dimension (:func:`dimcollapse.analysis.neighbours.ph0_dimension`) needs the total
length of the Euclidean MST of many random subsamples. A dense MST (scipy on the full
distance matrix, as scikit-dimension does) holds m² distances; this module never does
beyond a fixed budget. It runs Borůvka's algorithm: every round, each row's nearest row
in another component comes from one pass over float32 Gram blocks of the upper triangle
(one GEMM per block of ``chunk_rows`` rows, each block updating its rows and its later
columns, as :func:`dimcollapse.analysis.pairwise.nearest_neighbours` does), each
component takes the shortest such edge, and components merge; the number of components
at least halves per round. While the m × m matrix fits in ``cache_bytes`` (subsamples of
up to 4,096 rows by default) the blocks are written once into it, mirrored, and each round
is one masked pass over it (one GEMM pass for the whole tree, and few, large element-wise
operations, which matters on busy cores); larger inputs recompute the blocks each round,
in memory bounded by one block.

The tree is chosen on float32 distances; its edges' lengths are then measured from
differences (no ‖a‖² + ‖b‖² − 2ab cancellation). Where float32 rounding swaps two
near-equal edges, the tree's length differs from the exact MST's by at most that
rounding (a tree's length is continuous in its edge lengths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dimcollapse.analysis.pairwise import (
    DEFAULT_CHUNK_ROWS,
    _as_tensor,
    _Centred,
    _exact_sq_pairs,
    _ieee_float32,
    torch_device,
)

MST_CACHE_BYTES = 64 * 2**20
"""Largest float32 distance matrix kept between Borůvka rounds (64 MiB: a subsample of
4,096 rows); above it each round recomputes its Gram blocks, in memory bounded by one."""


@dataclass(frozen=True)
class SpanningTree:
    """The m − 1 edges of a minimum spanning tree and their exact Euclidean lengths."""

    edges: np.ndarray
    """(m − 1) × 2 row indices."""
    lengths: np.ndarray
    """float64 lengths of the edges."""
    rounds: int
    """Borůvka rounds it took."""


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _dense(c: _Centred, chunk_rows: int) -> torch.Tensor:
    """The full m × m float32 squared-distance matrix from the upper-triangle blocks (each
    block also written to its mirror image: no GEMM twice), infinite on the diagonal."""
    m = c.x.shape[0]
    full = torch.empty((m, m), device=c.x.device)
    for start in range(0, m, chunk_rows):
        stop = min(start + chunk_rows, m)
        block = c.block(start, stop, start)
        full[start:stop, start:] = block
        full[start:, start:stop] = block.T
    full.fill_diagonal_(float("inf"))
    return full


def _nearest_other_dense(full: torch.Tensor, comp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's nearest row in another component (float32 squared distance, index):
    one masked pass over the kept matrix."""
    return torch.where(comp[:, None] == comp[None, :], float("inf"), full).min(dim=1)


def _nearest_other_blocks(c: _Centred, comp: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same from the upper-triangle blocks, recomputed: each block updates its rows
    and its later columns."""
    m, dev = c.x.shape[0], c.x.device
    best = torch.full((m,), float("inf"), device=dev)
    best_j = torch.zeros(m, dtype=torch.long, device=dev)
    for start in range(0, m, chunk_rows):
        stop = min(start + chunk_rows, m)
        other = torch.where(comp[start:stop, None] == comp[None, start:], float("inf"), c.block(start, stop, start))
        near, j = other.min(dim=1)
        better = near < best[start:stop]
        best[start:stop] = torch.where(better, near, best[start:stop])
        best_j[start:stop] = torch.where(better, j + start, best_j[start:stop])
        if stop < m:  # the later columns: their nearest row of this chunk
            near, j = other[:, stop - start :].min(dim=0)
            better = near < best[stop:]
            best[stop:] = torch.where(better, near, best[stop:])
            best_j[stop:] = torch.where(better, j + start, best_j[stop:])
    return best, best_j


def minimum_spanning_tree(
    x: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, device: str | None = "auto",
    cache_bytes: int = MST_CACHE_BYTES,
) -> SpanningTree:
    """Euclidean minimum spanning tree of the rows of ``x`` (Borůvka on chunked Gram
    blocks, see the module doc). Identical rows are joined by edges of length 0."""
    src = _as_tensor(x)
    m = src.shape[0]
    if m < 2:
        raise ValueError(f"a spanning tree needs at least 2 rows, got {m}")
    dev = torch_device(device)
    c = _Centred(src, dev)
    labels = np.arange(m)  # component of each row, numbered 0..C-1
    edges: list[tuple[int, int]] = []
    rounds = 0
    with _ieee_float32(dev):
        full = _dense(c, chunk_rows) if m * m * 4 <= cache_bytes else None
        while len(edges) < m - 1:
            rounds += 1
            comp = torch.from_numpy(labels).to(dev)
            best, best_j = (_nearest_other_dense(full, comp) if full is not None
                            else _nearest_other_blocks(c, comp, chunk_rows))
            # each component's shortest outgoing edge: its row with the smallest `best`
            order = np.lexsort((best.cpu().numpy(), labels))
            first = order[np.r_[True, labels[order][1:] != labels[order][:-1]]]
            targets = best_j.cpu().numpy()
            parent = np.arange(labels.max() + 1)  # union-find over this round's components
            for i in first.tolist():
                j = int(targets[i])
                a, b = _find(parent, int(labels[i])), _find(parent, int(labels[j]))
                if a != b:  # two components that chose the same edge add it once
                    parent[a] = b
                    edges.append((i, j))
            roots = np.array([_find(parent, a) for a in range(parent.size)])
            labels = np.unique(roots, return_inverse=True)[1][labels]
    pairs = torch.tensor(edges, dtype=torch.long)
    lengths = _exact_sq_pairs(src, pairs[:, 0], pairs[:, 1]).sqrt().numpy()
    return SpanningTree(edges=pairs.numpy(), lengths=lengths, rounds=rounds)
