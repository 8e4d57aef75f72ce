"""Merging shards into aligned feature matrices."""

import numpy as np
import pandas as pd
import pytest

from dimcollapse.failures import Failure
from dimcollapse.extraction.features import aligned_index, merge_space
from dimcollapse.extraction.shards import ShardResult


def manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"v{i}" for i in range(n)], "path": [f"/d/v{i}.mp4" for i in range(n)],
                         "label": [i % 2 for i in range(n)], "label_name": ["a" if i % 2 == 0 else "b" for i in range(n)]})


def shard(rows, ok, dim=3) -> ShardResult:
    rows = np.asarray(rows)
    feats = np.stack([np.full(dim, r, np.float32) for r in rows]) * np.asarray(ok)[:, None]
    return ShardResult(rows, np.asarray(ok), {"representation": feats}, [])


def test_merge_drops_rows_failed_anywhere() -> None:
    m = manifest(6)
    # v2 failed in this method, v4 failed in another method of the dataset.
    failures = [Failure("v2", "/d/v2.mp4", "decode", "x"), Failure("v4", "/d/v4.mp4", "probe", "y")]
    index = aligned_index(m, failures)
    assert index["id"].tolist() == ["v0", "v1", "v3", "v5"]
    assert index["row"].tolist() == [0, 1, 3, 5]
    shards = [shard([0, 1, 2], [True, True, False]), shard([3, 4, 5], [True, True, True])]
    out = merge_space(shards, index, 6, "representation")
    assert out[:, 0].tolist() == [0, 1, 3, 5]
    assert out.dtype == np.float32


def test_merge_is_independent_of_shard_split() -> None:
    m = manifest(7)
    index = aligned_index(m, [])
    whole = merge_space([shard(range(7), [True] * 7)], index, 7, "representation")
    split = merge_space([shard([4, 5, 6], [True] * 3), shard([0, 1], [True] * 2), shard([2, 3], [True] * 2)],
                        index, 7, "representation")
    assert np.array_equal(whole, split)


def test_merge_rejects_incomplete_or_stale_inputs() -> None:
    m = manifest(4)
    index = aligned_index(m, [])
    with pytest.raises(ValueError, match="manifest rows"):
        merge_space([shard([0, 1, 2], [True] * 3)], index, 4, "representation")
    with pytest.raises(ValueError, match="stale"):
        merge_space([shard([0, 1, 2, 3], [True, False, True, True])], index, 4, "representation")
    with pytest.raises(ValueError, match="no video"):
        merge_space([shard([0, 1], [False, False])], aligned_index(manifest(2), [Failure("v0", "", "", ""), Failure("v1", "", "", "")]), 2, "representation")
