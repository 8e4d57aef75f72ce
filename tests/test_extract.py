"""Extraction loop: store reuse and resume, full batches, precision validation, multi-view
averaging, failures."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dimcollapse.extraction.device import PrecisionError, check_precision, forward_views, resolve_device
from dimcollapse.extraction.extract import run_shard
from dimcollapse.extraction.pipeline import Batch
from dimcollapse.failures import Failure
from dimcollapse.extraction.shards import ShardResult, concat_results, load_failures, shard_rows
from dimcollapse.extraction.store import InstanceStore, clip_keys

CPU = torch.device("cpu")
N_ROWS = 40  # manifest rows of the synthetic dataset (clip r has content "c<r>")
KEYS = clip_keys([f"c{r}" for r in range(N_ROWS)], [2.0] * N_ROWS, [25.0] * N_ROWS)
IDS = [f"v{r}" for r in range(N_ROWS)]
PATHS = [f"/d/v{r}.mp4" for r in range(N_ROWS)]


def shard(model, rows, make_batches, store_dir: Path, *, batch_size: int = 4, **kwargs):
    """``run_shard`` over the synthetic dataset with the store in ``store_dir``."""
    return run_shard(model, SPACES, rows, make_batches, InstanceStore(store_dir), keys=KEYS, ids=IDS, paths=PATHS,
                     device=CPU, batch_size=batch_size, **kwargs)


class TwoSpaceModel(torch.nn.Module):
    """Deterministic stand-in for a model: representation = per-sample means, embedding = 2×."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(2).mean(-1)  # (B, C)
        return {"representation": flat, "embedding": torch.cat([flat, 2 * flat], dim=1)}


def clips_for(rows: np.ndarray, views: int = 1) -> torch.Tensor:
    """A clip whose content encodes its row number, so outputs identify their rows."""
    base = torch.as_tensor(rows, dtype=torch.float32).reshape(-1, 1, 1, 1, 1, 1)
    per_view = torch.arange(views, dtype=torch.float32).reshape(1, views, 1, 1, 1, 1)
    return (base + per_view).expand(len(rows), views, 3, 2, 4, 4).clone() * torch.tensor([1.0, 10.0, 100.0]).reshape(1, 1, 3, 1, 1, 1)


def batches_from(rows: np.ndarray, size: int = 4, fail: set[int] = frozenset(), views: int = 1, seen: list | None = None):
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        good = np.array([r for r in chunk if r not in fail], dtype=np.int64)
        bad = np.array([r for r in chunk if r in fail], dtype=np.int64)
        if seen is not None:
            seen.extend(chunk.tolist())
        yield Batch(
            rows=good,
            video=clips_for(good, views) if len(good) else None,
            failures=[Failure(f"v{r}", f"/d/v{r}.mp4", "decode", "broken") for r in bad],
            failed_rows=bad,
        )


SPACES = ("representation", "embedding")


def test_shard_rows_partition_all_rows() -> None:
    for n, k, align in [(10, 1, 1), (10, 3, 1), (3, 3, 1), (2, 3, 1), (10, 3, 4), (37, 2, 8), (5, 4, 4)]:
        parts = [shard_rows(n, i, k, align) for i in range(k)]
        assert np.array_equal(np.concatenate(parts), np.arange(n))
        for p in parts:
            if len(p):
                assert p[0] % align == 0  # every shard starts on a batch boundary
    assert [len(shard_rows(10, i, 3)) for i in range(3)] == [3, 3, 4]
    with pytest.raises(ValueError):
        shard_rows(10, 3, 3)


def test_run_shard_outputs_rows_in_order_with_failures(tmp_path: Path) -> None:
    rows = np.arange(5, 15)
    result, stats = shard(TwoSpaceModel(), rows, lambda r: batches_from(r, fail={7, 12}), tmp_path, flush_every=3)
    assert np.array_equal(result.rows, rows)
    assert result.ok.tolist() == [r not in (7, 12) for r in rows]
    rep = result.features["representation"]
    assert rep.shape == (10, 3) and rep.dtype == np.float32
    assert np.allclose(rep[result.ok][:, 0], rows[result.ok])
    assert np.all(rep[~result.ok] == 0)
    assert result.features["embedding"].shape == (10, 6)
    assert {f.id for f in result.failures} == {"v7", "v12"}
    assert stats.clips_computed == 8 and stats.failed == 2 and stats.clips_reused == 0
    assert result.failures[0].path == "/d/v7.mp4"


def test_multi_view_outputs_are_averaged(tmp_path: Path) -> None:
    rows = np.arange(4)
    result, _ = shard(TwoSpaceModel(), rows, lambda r: batches_from(r, views=3), tmp_path)
    # Views carry offsets 0, 1, 2 → mean offset 1.
    assert np.allclose(result.features["representation"][:, 0], rows + 1)


def test_keep_views_stores_every_view(tmp_path: Path) -> None:
    rows = np.arange(4)
    result, _ = shard(TwoSpaceModel(), rows, lambda r: batches_from(r, views=3, fail={2}), tmp_path,
                      keep_views=True, flush_every=2)
    views = result.features["representation_views"].reshape(4, 3, 3)
    assert np.allclose(views[result.ok][:, :, 0], rows[result.ok, None] + np.arange(3))
    assert np.allclose(views.mean(axis=1), result.features["representation"])
    assert result.features["embedding_views"].shape == (4, 18)


def test_resume_skips_finished_rows(tmp_path: Path) -> None:
    rows = np.arange(20)
    store_dir = tmp_path / "store"
    first_seen: list[int] = []

    def interrupted(r):
        for i, b in enumerate(batches_from(r, size=4, seen=first_seen)):
            if i == 3:
                raise KeyboardInterrupt  # killed after 3 batches (12 clips)
            yield b

    with pytest.raises(KeyboardInterrupt):
        shard(TwoSpaceModel(), rows, interrupted, store_dir, flush_every=4)
    second_seen: list[int] = []
    result, stats = shard(TwoSpaceModel(), rows, lambda r: batches_from(r, seen=second_seen), store_dir,
                          flush_every=4)
    reference, _ = shard(TwoSpaceModel(), rows, batches_from, tmp_path / "fresh")
    assert stats.clips_reused == 12 and stats.clips_computed == 8
    assert sorted(second_seen) == list(range(12, 20))
    for s in SPACES:
        assert np.array_equal(result.features[s], reference.features[s])


def test_stored_clips_and_failures_are_reused_by_any_other_rows(tmp_path: Path) -> None:
    """A second job over overlapping rows (another sharding, a grown dataset) computes only
    the new clips; a stored decode failure is not tried again and names this job's row."""
    first, _ = shard(TwoSpaceModel(), np.arange(0, 12), lambda r: batches_from(r, fail={5}), tmp_path)
    seen: list[int] = []
    result, stats = shard(TwoSpaceModel(), np.arange(4, 16), lambda r: batches_from(r, seen=seen), tmp_path)
    assert seen == [12, 13, 14, 15]
    assert (stats.clips_reused, stats.clips_computed, stats.failed) == (8, 4, 1)
    assert result.rows.tolist() == list(range(4, 16)) and result.ok.tolist() == [r != 5 for r in range(4, 16)]
    assert [(f.id, f.path, f.stage, f.error) for f in result.failures] == [("v5", "/d/v5.mp4", "decode", "broken")]
    for s in SPACES:
        assert np.array_equal(result.features[s][:8], first.features[s][4:12])


class ShapeRecorder(TwoSpaceModel):
    """Records the batch size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return super().forward(x)


def test_every_forward_pass_is_a_full_batch(tmp_path: Path) -> None:
    """Partial batches (the last one, or one with failed clips) are padded to ``batch_size``:
    CPU kernels round differently for other batch sizes."""
    model = ShapeRecorder()
    result, stats = shard(model, np.arange(10), lambda r: batches_from(r, fail={1, 2}), tmp_path, batch_size=4)
    assert model.sizes == [4, 4, 4] and stats.clips_computed == 8
    assert np.allclose(result.features["representation"][result.ok][:, 0], np.arange(10)[result.ok])


def test_check_precision_raises_above_limit() -> None:
    ref = {"representation": torch.ones(4, 8)}
    close = {"representation": torch.ones(4, 8) * (1 + 1e-4)}
    far = {"representation": torch.ones(4, 8) * 1.1}
    assert check_precision(ref, close, "bf16", 1e-3) == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(PrecisionError, match="bf16.*0.1.*max_rel_error"):
        check_precision(ref, far, "bf16", 1e-2)
    with pytest.raises(PrecisionError):
        check_precision(ref, {"representation": torch.full((4, 8), float("nan"))}, "fp16", 1e-2)


class NoisyUnderAutocast(TwoSpaceModel):
    """Injects a large error only when autocast is active, like a precision-fragile model."""

    def forward(self, x):
        out = super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            out = {k: v * 1.5 for k, v in out.items()}
        return out


def test_reduced_precision_validated_on_first_batch(tmp_path: Path) -> None:
    rows = np.arange(4)
    with pytest.raises(PrecisionError):
        shard(NoisyUnderAutocast(), rows, batches_from, tmp_path / "a", precision="bf16", max_rel_error=0.05)
    _, stats = shard(TwoSpaceModel(), rows, batches_from, tmp_path / "b", precision="bf16", max_rel_error=0.05)
    assert stats.precision_rel_error is not None and stats.precision_rel_error < 0.05


def test_forward_views_shapes() -> None:
    out = forward_views(TwoSpaceModel(), clips_for(np.arange(2), views=5), SPACES, CPU)
    assert out["representation"].shape == (2, 5, 3)


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")


def test_shard_result_roundtrip_and_concat(tmp_path: Path) -> None:
    a = ShardResult(np.array([3, 1]), np.array([True, False]), {"representation": np.ones((2, 4), np.float32)},
                    [Failure("x", "/p", "decode", "e")], meta={"wall_s": 1.5})
    a.save(tmp_path / "a.npz")
    b = ShardResult.load(tmp_path / "a.npz")
    assert b.failures == a.failures and b.meta == {"wall_s": 1.5}
    assert load_failures(tmp_path / "a.npz") == a.failures
    only_failed = ShardResult(np.array([2]), np.array([False]), {"representation": np.zeros((1, 0), np.float32)}, [])
    merged = concat_results([b, only_failed], ("representation",))
    assert merged.rows.tolist() == [1, 2, 3]
    assert merged.features["representation"].shape == (3, 4)


class BatchStatisticsModel(torch.nn.Module):
    """Like DPC's published R18 files: BatchNorm without running statistics (batch-dependent)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(3, track_running_stats=False, affine=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self.norm(x.flatten(2).mean(-1) + torch.arange(3.0))
        return {"representation": flat, "embedding": 2 * flat}


def test_batch_dependent_models_reuse_whole_blocks_only(tmp_path: Path) -> None:
    """Under batch statistics a clip's features depend on its batch: batches are the
    manifest's aligned blocks (never padded), and a clip is reused only in the same block."""
    from dimcollapse.extraction.extract import uses_batch_statistics

    model = BatchStatisticsModel().eval()
    assert uses_batch_statistics(model) and not uses_batch_statistics(TwoSpaceModel())
    rows = np.arange(10)

    def run(keys: np.ndarray, store: Path, seen: list[int] | None = None):
        return run_shard(model, SPACES, rows, lambda r: batches_from(r, seen=seen), InstanceStore(store),
                         keys=keys, ids=IDS, paths=PATHS, device=CPU, batch_size=4, batch_dependent=True)

    keys = KEYS[:10]  # a 10-row manifest: blocks 0-3, 4-7 and 8-9
    first, _ = run(keys, tmp_path / "s")
    seen: list[int] = []
    again, stats = run(keys, tmp_path / "s", seen)
    assert seen == [] and stats.clips_reused == 10
    assert np.array_equal(again.features["representation"], first.features["representation"])
    # Clip 5 changes: its whole block (4..7) is recomputed; other blocks are reused.
    changed = keys.copy()
    changed[5] = clip_keys(["other"], [2.0], [25.0])[0]
    seen.clear()
    _, stats = run(changed, tmp_path / "s", seen)
    assert seen == [4, 5, 6, 7] and (stats.clips_reused, stats.clips_computed) == (6, 4)
    # The last block (2 clips) is not padded: its statistics come from its own clips.
    alone = model(clips_for(np.arange(8, 10))[:, 0])["representation"].numpy()
    assert np.array_equal(first.features["representation"][8:], alone)
