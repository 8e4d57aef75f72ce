"""Final feature matrices: shards merged in manifest order, failed videos dropped.

Row ``i`` of every ``results/features/{dataset}/{method}/{space}.npy`` is row ``i`` of
``results/features/{dataset}/index.csv``: the manifest minus every video that failed
for *any* method or protocol of the dataset, so matrices of different methods line up
row by row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dimcollapse.atomic import atomic_path
from dimcollapse.extraction.shards import ShardResult
from dimcollapse.failures import Failure


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
        raise ValueError(
            f"space {space!r}: no video produced features" if not dims else f"space {space!r}: mixed widths {dims}"
        )
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
    array = np.ascontiguousarray(array, dtype=np.float32)
    with atomic_path(path, suffix=".npy", need=array.nbytes) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def sidecar(
    features: np.ndarray,
    shards: Sequence[ShardResult],
    job: dict[str, Any],
    *,
    dataset: str,
    space: str,
    n_manifest: int,
    rows_file: str,
) -> dict[str, Any]:
    """The JSON sidecar of one feature matrix: what produced it, how, and how fast."""
    from dimcollapse.models.registry import UNTRAINED
    from dimcollapse.provenance import package_versions

    metas = [s.meta for s in shards]
    model = job["model"]
    wall = sum(m.get("wall_s", 0.0) for m in metas)
    computed = sum(m.get("clips_computed", 0) for m in metas)
    errors = [m["precision_rel_error"] for m in metas if m.get("precision_rel_error") is not None]
    first = metas[0] if metas else {}
    return {
        "dataset": dataset,
        "space": space,
        "model": model,
        "weights": model["checkpoint"] or UNTRAINED,
        "checkpoint_sha256": first.get("checkpoint_sha256"),
        "protocol": job["protocol"],
        "build_options": job["build_options"],
        "n": int(features.shape[0]),
        "d": int(features.shape[1]),
        "dtype": str(features.dtype),
        "rows": rows_file,
        "manifest_rows": n_manifest,
        "failed": n_manifest - int(features.shape[0]),
        "short_clips": int(sum(int(s.short[s.ok].sum()) for s in shards)),
        "device": sorted({m.get("device_name", m.get("device", "?")) for m in metas}),
        "precision": job["precision"],
        "precision_rel_error": max(errors) if errors else None,
        "batch_size": first.get("batch_size"),
        "shards": len(shards),
        "wall_s": wall,
        "clips_per_s": computed / wall if wall > 0 else None,
        # Clips that went through the model to produce this file, and clips taken from
        # the feature store (computed by an earlier job); failed clips count as reused
        # when their failure was stored.
        "clips_computed": computed,
        "clips_reused": sum(m.get("clips_reused", 0) for m in metas),
        "versions": package_versions(),
        "provenance": "results/provenance.json",
    }
