"""The uint8 data path: frames batched as they are stored, views assembled on the extraction
device, batches staged one ahead, features back and store writes off the critical path.

On the CPU the same code runs as on a GPU; a fake ``Streams`` object stands in for CUDA's
streams and events to check the ordering the GPU relies on. Tests that need CUDA run the
real thing where there is one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from dimcollapse.data.clip_cache import build_clip_cache
from dimcollapse.data.clips import ClipDataset, make_loader
from dimcollapse.data.protocols import resolve_protocol
from dimcollapse.data.views import FrameBatch, batch_views, frames_to_views, pack_frames
from dimcollapse.extraction.device import prepare_model
from dimcollapse.extraction.extract import loader_batches, run_shard
from dimcollapse.extraction.pipeline import Batch, Feeder, StoreWriter
from dimcollapse.extraction.store import InstanceStore, clip_keys
from dimcollapse.failures import Failure
from dimcollapse.models import build_model

VIDEOS = Path("/work/shared/testdata/videos")
CPU = torch.device("cpu")
SMALL = resolve_protocol("paper", frames=4, side_size=40, crop_size=32)
SPACES = ("representation",)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_net() -> torch.nn.Module:
    return build_model("custom", seed=3, builder="dimcollapse.models.demo_nets:demo_video_net",
                       builder_options={"width": 8}, frames=4, crop_size=32)


def random_clips(n: int, seed: int = 0) -> list[np.ndarray]:
    """Clips of 4 frames in two aspect ratios (a batch of them is ragged), at and below the side size."""
    g = np.random.default_rng(seed)
    sizes = [(40, 53), (30, 40), (53, 40)]
    return [g.integers(0, 256, (4, *sizes[i % 3], 3), dtype=np.uint8) for i in range(n)]


def test_batch_views_are_each_clips_own_views() -> None:
    clips = random_clips(5)
    for protocol in (SMALL, resolve_protocol("slowfast_test", frames=4, side_size=40, crop_size=32, temporal_views=1),
                     resolve_protocol("dpc", num_seq=2, seq_len=2, side_size=40, crop_size=32, output_size=16)):
        per = protocol.frames_per_window * protocol.windows
        frames = [c[np.arange(per) % 4] for c in clips]
        batch = pack_frames(frames, protocol)
        assert len(batch) == 5 and batch.data.dtype == torch.uint8 and batch.data.numel() == sum(f.size for f in frames)
        views = batch_views(batch)
        assert views.shape == (5, protocol.views, *protocol.clip_shape)
        for i, f in enumerate(frames):
            assert np.array_equal(batch.clip(i).numpy(), f)
            assert torch.equal(views[i], frames_to_views(f, protocol))
    # a clip's views do not depend on its neighbours
    alone = batch_views(pack_frames(clips[2:3], SMALL))
    assert torch.equal(alone[0], batch_views(pack_frames(clips, SMALL))[2])


def test_view_assembly_runs_on_a_non_cpu_device() -> None:
    """The device path of ``frames_to_views`` (no CPU workspace, no NumPy) on PyTorch's meta
    device: shapes only, but every operation a GPU runs."""
    clips = random_clips(3)
    batch = pack_frames(clips, SMALL).to("meta")
    views = batch.views()
    assert views.device.type == "meta" and views.shape == (3, 1, *SMALL.clip_shape)
    dpc = resolve_protocol("dpc", num_seq=2, seq_len=2, side_size=40, crop_size=32, output_size=16)
    assert pack_frames(clips, dpc).to("meta").views().shape == (3, 1, *dpc.clip_shape)


def _batches(rows: np.ndarray, clips: list[np.ndarray], frames: bool, size: int = 3, fail: frozenset = frozenset()):
    for i in range(0, len(rows), size):
        chunk = rows[i:i + size]
        good = np.array([r for r in chunk if r not in fail], np.int64)
        bad = np.array([r for r in chunk if r in fail], np.int64)
        video = None
        if len(good):
            packed = pack_frames([clips[r] for r in good], SMALL)
            video = packed if frames else batch_views(packed)
        yield Batch(good, video, [Failure(f"v{r}", f"/v{r}", "decode", "bad") for r in bad], bad)


def _run(model, rows, make, store: Path, batch_size: int = 3, ids=None, **kw):
    n = int(rows.max()) + 1
    keys = clip_keys([f"c{r}" for r in range(n)], [2.0] * n, [25.0] * n)
    ids = ids or [f"v{r}" for r in range(n)]
    return run_shard(model, SPACES, rows, make, InstanceStore(store), keys=keys, ids=ids,
                     paths=[f"/{i}" for i in ids], device=CPU, batch_size=batch_size, **kw)


def test_the_loaders_pinning_step_keeps_a_frame_batch_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a DataLoader with ``pin_memory=True`` (extraction on CUDA) does to a collated batch,
    with page-locking itself replaced by a copy (this machine has no CUDA driver): the frames
    stay one FrameBatch, pinned as one buffer, with the same views."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned: list[int] = []

    def copy_as_pinned(self: torch.Tensor, *args: object) -> torch.Tensor:
        pinned.append(self.numel())
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", copy_as_pinned)
    frames = pack_frames(random_clips(3), SMALL)
    out = pin_memory({"index": torch.arange(3), "frames": frames, "failed_error": []})
    assert isinstance(out["frames"], FrameBatch) and out["frames"].shapes == frames.shapes
    assert out["frames"].data.data_ptr() != frames.data.data_ptr() and frames.data.numel() in pinned
    assert torch.equal(out["frames"].views(), frames.views())


def test_frame_batches_give_the_features_of_view_batches(tmp_path: Path) -> None:
    model = prepare_model(tiny_net(), CPU)
    clips = random_clips(8)
    rows = np.arange(8)
    frames, _ = _run(model, rows, lambda r: _batches(r, clips, True, fail=frozenset({5})), tmp_path / "a",
                     keep_views=True, flush_every=2)
    views, _ = _run(model, rows, lambda r: _batches(r, clips, False, fail=frozenset({5})), tmp_path / "b",
                    keep_views=True, flush_every=2)
    assert frames.ok.tolist() == [r != 5 for r in rows]
    for space in ("representation", "representation_views"):
        assert np.array_equal(frames.features[space], views.features[space])


class FakeStreams:
    """CUDA's streams and events, as a log: what ran where, and what waited for what."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.on_side = False
        self.n = 0

    def side(self):
        streams = self

        class Side:
            def __enter__(self) -> None:
                streams.on_side = True

            def __exit__(self, *exc: object) -> None:
                streams.on_side = False

        return Side()

    def _event(self, kind: str) -> str:
        self.n += 1
        self.log.append((kind, self.n))
        return f"{kind}{self.n}"

    def record_side(self) -> str:
        return self._event("side")

    def record_main(self) -> str:
        return self._event("main")

    def main_waits(self, event: str, tensor: torch.Tensor) -> None:
        self.log.append(("wait", event))

    def synchronize(self, event: str) -> None:
        self.log.append(("sync", event))


class Logged(torch.nn.Module):
    """Records each forward pass in the streams' log (and checks it is not on the side stream)."""

    def __init__(self, net: torch.nn.Module, streams: FakeStreams) -> None:
        super().__init__()
        self.net, self.streams = net, streams

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        assert not self.streams.on_side
        self.streams.log.append(("forward", x.shape[0]))
        return self.net(x)


def test_the_next_batch_is_staged_while_the_current_one_runs_and_features_come_back_a_batch_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = FakeStreams()
    staged_on_side: list[bool] = []
    import dimcollapse.extraction.pipeline as pipeline

    real = pipeline.device_views
    monkeypatch.setattr(pipeline, "device_views", lambda v, d: staged_on_side.append(streams.on_side) or real(v, d))
    model = Logged(prepare_model(tiny_net(), CPU), streams)
    clips = random_clips(7)
    result, _ = _run(model, np.arange(7), lambda r: _batches(r, clips, True), tmp_path / "s", streams=streams)
    assert staged_on_side == [True] * 3  # copies and view assembly on the side stream
    log = list(streams.log)
    reference, _ = _run(model, np.arange(7), lambda r: _batches(r, clips, True), tmp_path / "r")
    assert np.array_equal(result.features["representation"], reference.features["representation"])
    # batch k+1 is staged (side event) before batch k's forward pass; each forward waits for its own
    # batch's side event; batch k's features are read (sync) only after batch k+1's forward is queued
    assert log == [
        ("side", 1), ("side", 2), ("wait", "side1"), ("forward", 3), ("main", 3),
        ("side", 4), ("wait", "side2"), ("forward", 3), ("main", 5), ("sync", "main3"),
        ("wait", "side4"), ("forward", 3), ("main", 6), ("sync", "main5"), ("sync", "main6"),
    ]


def test_a_loader_error_keeps_the_batches_computed_before_it(tmp_path: Path) -> None:
    """With a batch in flight (GPU), what was computed before the loader failed is finished and
    flushed as it would be without overlap: a rerun computes only the rest."""
    clips = random_clips(9)
    model = prepare_model(tiny_net(), CPU)

    def interrupted(rows):
        for i, b in enumerate(_batches(rows, clips, True)):
            if i == 2:
                raise KeyboardInterrupt
            yield b

    with pytest.raises(KeyboardInterrupt):
        _run(model, np.arange(9), interrupted, tmp_path / "s", streams=FakeStreams(), flush_every=3)
    seen: list[int] = []

    def counted(rows):
        seen.extend(rows.tolist())
        return _batches(rows, clips, True)

    _, stats = _run(model, np.arange(9), counted, tmp_path / "s")
    assert stats.clips_reused == 6 and seen == [6, 7, 8]


def test_a_model_error_keeps_the_batch_still_on_its_way_to_the_host(tmp_path: Path) -> None:
    """On CUDA the batch before the failing one is in flight when the model raises; it is
    finished and flushed as a CPU run would have, so a rerun computes only the rest."""
    clips = random_clips(9)
    model = prepare_model(tiny_net(), CPU)
    calls = {"n": 0}

    def failing_second_batch(module: torch.nn.Module, args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    hook = model.register_forward_pre_hook(failing_second_batch)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _run(model, np.arange(9), lambda r: _batches(r, clips, True), tmp_path / "s", streams=FakeStreams(),
             flush_every=3)
    hook.remove()
    seen: list[int] = []

    def counted(rows):
        seen.extend(rows.tolist())
        return _batches(rows, clips, True)

    _, stats = _run(model, np.arange(9), counted, tmp_path / "s")
    assert stats.clips_reused == 3 and seen == [3, 4, 5, 6, 7, 8]


def test_store_writes_run_in_the_background_and_their_errors_surface(tmp_path: Path) -> None:
    done: list[int] = []
    with StoreWriter() as writer:
        for i in range(3):
            writer.submit(done.append, i)
    assert done == [0, 1, 2]  # in order, all finished when the block ends

    def broken(_: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with StoreWriter() as writer:
            writer.submit(broken, 0)
    with pytest.raises(KeyboardInterrupt):  # an error of the caller wins, after the writes finished
        with StoreWriter() as writer:
            writer.submit(done.append, 3)
            raise KeyboardInterrupt
    assert done[-1] == 3


def test_a_write_error_raised_at_the_next_submit_is_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"), StoreWriter() as writer:
        writer.submit(broken, 0)
        while not writer._futures[0].done():
            time.sleep(0.01)
        writer.submit(print, 1)  # raises the first write's error here
    assert "failed as well" not in caplog.text


def test_an_intervention_on_the_views_is_the_same_change_of_the_uint8_frames(tmp_path: Path) -> None:
    """``intervene(views, rows)`` runs on the device views before the model (and the padding):
    reversing their time axis gives the features of clips whose uint8 frames were reversed
    (every step before the model acts on each frame alone)."""
    model = prepare_model(tiny_net(), CPU)
    clips = random_clips(5)
    seen: list[list[int]] = []

    def reverse(views: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        seen.append(rows.tolist())
        return views.flip(3)  # B×V×3×T×H×W

    rows = np.arange(5)
    flipped, _ = _run(model, rows, lambda r: _batches(r, clips, True), tmp_path / "a", intervene=reverse)
    reordered = [np.ascontiguousarray(c[::-1]) for c in clips]
    direct, _ = _run(model, rows, lambda r: _batches(r, reordered, True), tmp_path / "b")
    assert seen == [[0, 1, 2], [3, 4]]  # the batch's own rows, before padding
    assert np.array_equal(flipped.features["representation"], direct.features["representation"])


def test_padding_repeats_the_last_clip_on_the_device() -> None:
    feeder = Feeder(CPU, 4)
    clips = random_clips(2)
    staged = feeder.stage(Batch(np.arange(2), pack_frames(clips, SMALL)))
    views = feeder.ready(staged)
    assert views.shape[0] == 4 and torch.equal(views[2], views[1]) and torch.equal(views[3], views[1])
    assert feeder.stage(Batch(np.zeros(0, np.int64), None)).views is None


# ---------------------------------------------------------------------------- real loaders
def _manifest() -> pd.DataFrame:
    rows = []
    for name in ("Megamind.avi", "tree.avi", "vtest.avi"):
        with av.open(str(VIDEOS / name)) as c:
            s = c.streams.video[0]
            rows.append({"id": name, "path": str(VIDEOS / name), "duration": float(s.duration * s.time_base),
                         "fps": float(s.average_rate)})
    rows.append({"id": "gone", "path": "/nonexistent/gone.avi", "duration": math.nan, "fps": math.nan})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("cached", [False, True])
def test_the_uint8_loader_gives_the_features_of_the_float_loader(cached: bool, tmp_path: Path) -> None:
    """Workers ship uint8 frames (shared memory, one buffer per batch); the views assembled in
    the extraction process are the float loader's exactly, so are the features."""
    manifest = _manifest()
    cache = None
    if cached:
        cache = tmp_path / "cache"
        build_clip_cache(manifest, SMALL, cache, workers=0)
    model = prepare_model(tiny_net(), CPU)
    frames = ClipDataset(manifest, SMALL, cache=cache, output="frames")
    batch = next(iter(make_loader(frames, batch_size=4, workers=1)))
    assert isinstance(batch["frames"], FrameBatch) and batch["frames"].data.is_shared()
    assert batch["failed_index"].tolist() == [3] and "gone.avi" in batch["failed_error"][0]
    results = []
    for dataset in (frames, ClipDataset(manifest, SMALL, cache=cache)):
        make = loader_batches(dataset, 2, 1, CPU)
        results.append(_run(model, np.arange(4), make, tmp_path / f"s{len(results)}", batch_size=2,
                            ids=manifest.id.tolist())[0])
    assert results[0].ok.tolist() == [True, True, True, False]
    assert np.array_equal(results[0].features["representation"], results[1].features["representation"])


# ---------------------------------------------------------------------------- on a GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_views_assembled_on_cuda_equal_the_cpu_views() -> None:
    for protocol in (SMALL, resolve_protocol("slowfast_test", frames=4, side_size=40, crop_size=32, temporal_views=1),
                     resolve_protocol("dpc", num_seq=2, seq_len=2, side_size=40, crop_size=32, output_size=16),
                     resolve_protocol("slowfast_test", backend="pyav", frames=4, side_size=40, crop_size=32,
                                      temporal_views=1)):
        per = protocol.frames_per_window * protocol.windows
        batch = pack_frames([c[np.arange(per) % 4] for c in random_clips(4)], protocol)
        on_gpu = batch.pin_memory().to("cuda", non_blocking=True).views()
        assert on_gpu.device.type == "cuda"
        assert (on_gpu.cpu() - batch_views(batch)).abs().max().item() <= 1e-6


@cuda
def test_run_shard_on_cuda_equals_the_cpu(tmp_path: Path) -> None:
    clips = random_clips(7)
    gpu = torch.device("cuda")
    cpu_result, _ = _run(prepare_model(tiny_net(), CPU), np.arange(7), lambda r: _batches(r, clips, True),
                         tmp_path / "c")
    n = 7
    keys = clip_keys([f"c{r}" for r in range(n)], [2.0] * n, [25.0] * n)
    gpu_result, _ = run_shard(prepare_model(tiny_net(), gpu), SPACES, np.arange(7),
                              lambda r: (Batch(b.rows, b.video.pin_memory(), b.failures, b.failed_rows)
                                         for b in _batches(r, clips, True)),
                              InstanceStore(tmp_path / "g"), keys=keys, ids=[f"v{r}" for r in range(n)],
                              paths=[f"/v{r}" for r in range(n)], device=gpu, batch_size=3)
    a, b = cpu_result.features["representation"], gpu_result.features["representation"]
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)
