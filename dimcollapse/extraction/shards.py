"""Shards of a dataset's manifest and the rows one shard job produces.

A dataset's manifest is split into K contiguous shards, each extracted by its own job
(one GPU or one Slurm job each). Finished clips go to the feature store
(:mod:`dimcollapse.extraction.store`) as the job runs; its output is a
:class:`ShardResult`, the shard's rows in manifest order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from dimcollapse.atomic import atomic_path
from dimcollapse.failures import Failure

#: Arrays kept per row besides the features of each space.
_ROWS = "rows"
_OK = "ok"


def views_key(space: str) -> str:
    """Name of the per-view features of ``space`` in shard results and output files (here, in
    the torch-free shard format, so that merging reads it without importing torch)."""
    return f"{space}_views"


def shard_rows(n_rows: int, shard: int, n_shards: int, align: int = 1) -> np.ndarray:
    """Manifest row positions of one shard: contiguous, balanced, covering all rows once.

    Shard boundaries fall on multiples of ``align`` (the batch size), so that only the
    dataset's last batch needs padding (extraction always runs full batches, which makes
    results bit-identical for any number of shards). A shard can be empty when there
    are more shards than batches.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is not in 0..{n_shards - 1}")
    if align < 1:
        raise ValueError(f"align must be >= 1, got {align}")
    n_blocks = -(-n_rows // align)
    block_bounds = np.linspace(0, n_blocks, n_shards + 1).astype(np.int64)
    start, stop = (min(int(b) * align, n_rows) for b in block_bounds[shard : shard + 2])
    return np.arange(start, stop, dtype=np.int64)


@dataclass(init=False)
class ShardResult:
    """Everything one shard computed, in manifest row order."""

    rows: np.ndarray  # int64 manifest positions
    ok: np.ndarray  # bool, False for videos that failed
    features: dict[str, np.ndarray]  # space -> float32 (n_rows, D) (zeros where not ok)
    failures: list[Failure]
    short: np.ndarray  # bool, True where the clip had to repeat frames
    meta: dict[str, Any]  # run statistics for the sidecar

    def __init__(
        self,
        rows: np.ndarray,
        ok: np.ndarray,
        features: dict[str, np.ndarray],
        failures: list[Failure],
        short: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        # Written out (not generated) so that ``short`` may be left out yet is always an array.
        self.rows, self.ok, self.features, self.failures = rows, ok, features, failures
        self.short = np.zeros(len(rows), bool) if short is None else short
        self.meta = {} if meta is None else meta

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically as an uncompressed ``.npz`` (plus failures as arrays)."""
        arrays = {_ROWS: self.rows, _OK: self.ok, "short": self.short,
                  **{f"feat_{k}": v for k, v in self.features.items()}}
        arrays["fail_fields"] = np.array(
            [[f.id, f.path, f.stage, f.error] for f in self.failures], dtype=str
        ).reshape(-1, 4)
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True, default=str))
        with atomic_path(path, suffix=".npz", need=sum(a.nbytes for a in arrays.values())) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, allow_pickle=False, **arrays)  # the readers load with allow_pickle=False

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ShardResult:
        with np.load(path, allow_pickle=False) as data:
            features = {k[5:]: data[k] for k in data.files if k.startswith("feat_")}
            failures = _failures(data)
            meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
            return cls(rows=data[_ROWS], ok=data[_OK], features=features, failures=failures,
                       short=data["short"], meta=meta)


def load_failures(path: str | os.PathLike[str]) -> list[Failure]:
    """The failure records of a saved shard, without reading its feature arrays."""
    with np.load(path, allow_pickle=False) as data:
        return _failures(data)


def _failures(data: Any) -> list[Failure]:
    return [Failure(*map(str, row)) for row in data["fail_fields"]]


def concat_results(parts: list[ShardResult], spaces: tuple[str, ...]) -> ShardResult:
    """Concatenate results and sort them by manifest row (rows must be distinct)."""
    if not parts:
        return ShardResult(
            np.zeros(0, np.int64), np.zeros(0, bool), {s: np.zeros((0, 0), np.float32) for s in spaces}, []
        )
    rows = np.concatenate([p.rows for p in parts])
    order = np.argsort(rows, kind="stable")
    if len(np.unique(rows)) != len(rows):
        raise ValueError("duplicate manifest rows across chunks")
    ok = np.concatenate([p.ok for p in parts])[order]
    short = np.concatenate([p.short for p in parts])[order]
    features = {s: np.concatenate(_padded([p.features[s] for p in parts]))[order] for s in spaces}
    failures = [f for p in parts for f in p.failures]
    return ShardResult(rows[order], ok, features, failures, short)


def _padded(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Give all-failure parts (width 0, no model output) the width of the others."""
    dim = max(a.shape[1] for a in arrays)
    return [a if a.shape[1] == dim else np.zeros((a.shape[0], dim), np.float32) for a in arrays]
