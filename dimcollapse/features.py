"""Final feature matrices: shards merged in manifest order, failed videos dropped.

Row ``i`` of every ``results/features/{dataset}/{method}/{space}.npy`` is row ``i`` of
``results/features/{dataset}/index.csv``: the manifest minus every video that failed
for *any* method or protocol of the dataset, so matrices of different methods line up
row by row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from dimcollapse.atomic import atomic_path
from dimcollapse.failures import Failure
from dimcollapse.shards import ShardResult


def aligned_index(manifest: pd.DataFrame, failures: Iterable[Failure]) -> pd.DataFrame:
    """Manifest rows kept for every method, with their manifest position in ``row``."""
    failed = {f.id for f in failures}
    index = manifest.reset_index(drop=True).copy()
    index.insert(0, "row", np.arange(len(index)))
    return index[~index["id"].astype(str).isin(failed)].reset_index(drop=True)


def merge_space(shards: Sequence[ShardResult], index: pd.DataFrame, n_manifest: int, space: str) -> np.ndarray:
    """Concatenate one space of all shards and keep the rows of ``index``.

    Checks that the shards cover every manifest row exactly once, and that no kept
    row failed in this method (which would mean the dataset failure table is stale).
    """
    rows = np.concatenate([s.rows for s in shards])
    if len(rows) != n_manifest or not np.array_equal(np.sort(rows), np.arange(n_manifest)):
        raise ValueError(
            f"shards cover {len(np.unique(rows))} distinct of {n_manifest} manifest rows "
            f"({len(rows)} in all): shard files do not belong to this manifest"
        )
    dims = {s.features[space].shape[1] for s in shards if s.ok.any()}
    if len(dims) != 1:
        raise ValueError(f"space {space!r}: no video produced features" if not dims else f"space {space!r}: mixed widths {dims}")
    dim = dims.pop()
    full = np.zeros((n_manifest, dim), np.float32)
    ok = np.zeros(n_manifest, bool)
    for s in shards:
        if s.ok.any():
            full[s.rows[s.ok]] = s.features[space][s.ok]
        ok[s.rows] = s.ok
    keep = index["row"].to_numpy()
    bad = keep[~ok[keep]]
    if len(bad):
        raise ValueError(f"{len(bad)} kept rows failed in this extraction (first row {bad[0]}): failure table is stale")
    return full[keep]


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a float32 ``.npy`` atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array, dtype=np.float32))
