"""Feature extraction of one shard: only clips the store lacks, batched, precision-checked.

The loop is deliberately small: the shard's clips are looked up in the feature store
(:mod:`dimcollapse.extraction.store`); a data loader (decoding or reading the clip cache
in worker processes) yields batches of the missing ones only, as uint8 frames that
become model views on the extraction device (:mod:`dimcollapse.extraction.pipeline`
stages each batch there while the previous one runs); the model runs under
``inference_mode``, always on full batches of ``batch_size`` clips (the last one padded)
so that a clip's features never depend on how many clips share its batch; outputs of
multi-view protocols are averaged per video; finished clips are published to the store
every ``flush_every`` clips (written in a background thread), so a killed job, a rerun, a
new sharding or a grown dataset computes only what is missing. Device choice, model
preparation and precision: :mod:`dimcollapse.extraction.device`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from dimcollapse.extraction.device import check_precision, forward_views, prepare_model, resolve_device
from dimcollapse.extraction.gpu_slots import physical_gpu
from dimcollapse.extraction.pipeline import Batch, Feeder, HostFeatures, StoreWriter, Streams
from dimcollapse.extraction.shards import ShardResult, concat_results, shard_rows, views_key
from dimcollapse.extraction.store import (
    FeatureStore,
    InstanceStore,
    batch_context_keys,
    clip_keys,
    instance_identity,
)
from dimcollapse.failures import Failure

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    """What one run of a shard did (written to the sidecar)."""

    clips_total: int = 0
    clips_reused: int = 0  # taken from the feature store
    clips_computed: int = 0  # run through the model (failed clips are neither)
    failed: int = 0
    wall_s: float = 0.0
    precision_rel_error: float | None = None

    @property
    def clips_per_s(self) -> float:
        return self.clips_computed / self.wall_s if self.wall_s > 0 else 0.0


class Progress:
    """Periodic log line with clips done, clips/s and ETA (Snakemake logs capture it)."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total, self.every_s = total, every_s
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int, force: bool = False) -> None:
        self.done += n
        now = time.perf_counter()
        if force or now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%d/%d clips, %.2f clips/s, ETA %.0f s", self.done, self.total, rate, eta)


def run_shard(
    model: torch.nn.Module,
    spaces: tuple[str, ...],
    rows: np.ndarray,
    make_batches: Callable[[np.ndarray], Iterable[Batch]],
    store: InstanceStore,
    *,
    keys: np.ndarray,
    ids: Sequence[str],
    paths: Sequence[str],
    device: torch.device,
    batch_size: int,
    precision: str = "fp32",
    max_rel_error: float = 0.01,
    flush_every: int = 256,
    keep_views: bool = False,
    batch_dependent: bool = False,
    time_spaces: tuple[str, ...] = (),
    streams: Streams | None = None,
    intervene: Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None = None,
) -> tuple[ShardResult, RunStats]:
    """Features of manifest ``rows``: stored clips are reused, missing ones computed and stored.

    A ``batch_dependent`` model (BatchNorm on batch statistics, see
    :func:`uses_batch_statistics`) gives a clip features that depend on the other clips
    of its batch. Its batches are then the manifest's aligned blocks of ``batch_size``
    rows, never padded, and a clip is stored under a key that includes its block's
    clips (:func:`~dimcollapse.extraction.store.batch_context_keys`): reused exactly when
    the same batch would be formed again. Every other model runs full batches of
    ``batch_size`` clips (see :class:`~dimcollapse.extraction.pipeline.Feeder`).

    ``keys``, ``ids`` and ``paths`` are per manifest row (store keys, and what names a
    failure). ``make_batches(remaining_rows)`` builds the loader for the rows not in the
    store, so stored clips are neither decoded nor run again. Features are averaged over
    a protocol's views; ``keep_views`` also keeps every view, as ``<space>_views`` arrays
    of shape (rows, views × D) (see :func:`views_key`). ``time_spaces``: further model
    outputs kept per clip (time-resolved arrays, flattened to T′ × D), averaged over views
    and never kept per view. ``streams`` and ``intervene(views, rows)`` (a frame order applied
    to each batch's views on the device, before the model, see
    :func:`~dimcollapse.data.interventions.views_intervention`): see
    :class:`~dimcollapse.extraction.pipeline.Feeder`. Returns rows in manifest order.
    """
    kept = spaces + tuple(views_key(s) for s in spaces) if keep_views else spaces
    kept += time_spaces
    run_spaces = spaces + time_spaces
    t0 = time.perf_counter()
    stats = RunStats(clips_total=len(rows))
    if batch_dependent:
        keys = batch_context_keys(keys, batch_size)
    reused, _ = store.read(store.lookup(keys[rows], kept), rows, ids, paths, kept)
    remaining = np.setdiff1d(rows, reused.rows)
    if batch_dependent and len(remaining):  # recompute whole blocks only
        blocks = np.unique(remaining // batch_size)
        remaining = rows[np.isin(rows // batch_size, blocks)]
        keep = ~np.isin(reused.rows, remaining)
        recomputed = {ids[r] for r in reused.rows[~keep]}
        reused = ShardResult(reused.rows[keep], reused.ok[keep], {s: v[keep] for s, v in reused.features.items()},
                             [f for f in reused.failures if f.id not in recomputed], reused.short[keep])
    stats.clips_reused = len(reused.rows)
    log.info("%d of %d clips are in the feature store; computing %d", stats.clips_reused, len(rows), len(remaining))
    parts = [reused] if len(reused.rows) else []
    progress = Progress(len(remaining))
    pending: list[ShardResult] = []
    feeder = Feeder(device, 0 if batch_dependent else batch_size, streams, intervene)
    in_flight: deque[tuple[Batch, HostFeatures | None]] = deque()

    with StoreWriter() as writer:

        def flush() -> None:
            if pending:
                chunk = concat_results(pending, kept)
                writer.submit(store.add, keys[chunk.rows], chunk, [ids[r] for r in chunk.rows])
                parts.append(chunk)
                pending.clear()

        def finish(batch: Batch, host: HostFeatures | None) -> None:
            pending.append(_batch_result(batch, host.numpy() if host is not None else {}, kept))
            n = len(batch.rows) + len(batch.failed_rows)
            stats.clips_computed += len(batch.rows)
            progress.update(n)
            if sum(len(p.rows) for p in pending) >= flush_every:
                flush()

        checked = precision == "fp32"
        try:
            for staged in feeder.feed(make_batches(remaining)):
                batch = staged.batch
                if batch_dependent:
                    _check_block(batch, batch_size, len(keys))
                host = None
                if staged.views is not None:
                    views = feeder.ready(staged)
                    out = forward_views(model, views, run_spaces, device, precision)
                    if not checked:
                        ref = forward_views(model, views, run_spaces, device, "fp32")
                        stats.precision_rel_error = check_precision(ref, out, precision, max_rel_error)
                        checked = True
                    n = len(batch.rows)  # the padding is left on the device
                    feats = {s: out[s][:n].mean(dim=1) for s in run_spaces}
                    if keep_views:
                        feats |= {views_key(s): out[s][:n].flatten(1) for s in spaces}
                    host = feeder.to_host(feats)
                in_flight.append((batch, host))
                while len(in_flight) > feeder.depth:
                    finish(*in_flight.popleft())
        except BaseException:
            # whatever stopped the loop, the batches already computed count (on CUDA one is still on
            # its way to the host, where a CPU run would have finished it)
            try:
                while in_flight:
                    finish(*in_flight.popleft())
            except Exception:
                log.exception("could not keep the batches computed before the error")
            raise
        while in_flight:
            finish(*in_flight.popleft())
        flush()
    progress.update(0, force=True)
    result = concat_results(parts, kept)
    if not np.array_equal(result.rows, np.sort(rows)):
        missing = np.setdiff1d(rows, result.rows)
        raise RuntimeError(f"extraction finished without {len(missing)} rows (first: {missing[:5].tolist()})")
    stats.failed = int((~result.ok).sum())
    stats.wall_s = time.perf_counter() - t0
    return result, stats


def _check_block(batch: Batch, batch_size: int, n_rows: int) -> None:
    """A batch of a batch-dependent model must be one whole aligned block of the manifest."""
    rows = np.sort(np.concatenate([batch.rows, batch.failed_rows]))
    start = int(rows[0]) // batch_size * batch_size if len(rows) else 0
    if not np.array_equal(rows, np.arange(start, min(start + batch_size, n_rows))):
        raise RuntimeError(f"batch of rows {rows[:3].tolist()}... is not the aligned block of {batch_size} rows at "
                           f"{start}: features under batch statistics would not match their store key")


def uses_batch_statistics(model: torch.nn.Module) -> bool:
    """Whether some BatchNorm normalises with the statistics of the batch in eval mode
    (DPC's published R18 files): a clip's features then depend on its batch."""
    from torch.nn.modules.batchnorm import _NormBase

    return any(isinstance(m, _NormBase) and m.running_mean is None for m in model.modules())


def _batch_result(batch: Batch, feats: dict[str, np.ndarray], spaces: tuple[str, ...]) -> ShardResult:
    """Rows of one batch: computed rows with features, failed rows with zeros."""
    n_ok, n_bad = len(batch.rows), len(batch.failed_rows)
    rows = np.concatenate([batch.rows, batch.failed_rows]).astype(np.int64)
    ok = np.concatenate([np.ones(n_ok, bool), np.zeros(n_bad, bool)])
    short = np.concatenate([batch.short if batch.short is not None else np.zeros(n_ok, bool), np.zeros(n_bad, bool)])
    features = {}
    for s in spaces:
        good = feats.get(s)
        dim = good.shape[1] if good is not None else 0
        bad = np.zeros((n_bad, dim), np.float32)
        features[s] = np.concatenate([good, bad]) if good is not None else bad
    return ShardResult(rows, ok, features, list(batch.failures), short)



def loader_batches(
    dataset: Any, batch_size: int, workers: int, device: torch.device
) -> Callable[[np.ndarray], Iterable[Batch]]:
    """``make_batches`` for :func:`run_shard`: a DataLoader over the given rows of a
    :class:`~dimcollapse.data.clips.ClipDataset` (uint8 frames when its ``output`` is
    ``"frames"``, pinned for a CUDA device), whose failed items become failure records."""
    from torch.utils.data import Subset

    from dimcollapse.data.clips import make_loader

    ids = [r.id for r in dataset.rows]
    paths = [r.path for r in dataset.rows]

    def make_batches(remaining: np.ndarray) -> Iterable[Batch]:
        if len(remaining) == 0:
            return
        loader = make_loader(Subset(dataset, remaining.tolist()), batch_size=batch_size, workers=workers,
                             pin_memory=device.type == "cuda")
        for b in loader:
            failed = b["failed_index"].numpy()
            yield Batch(
                rows=b["index"].numpy(),
                video=(b["frames"] if "frames" in b else b["video"]) if len(b["index"]) else None,
                failures=[Failure(ids[i], paths[i], "decode", msg) for i, msg in zip(failed, b["failed_error"])],
                failed_rows=failed,
                short=b["short"].numpy(),
            )

    return make_batches


def extract_shard(
    *,
    job: dict[str, Any],
    manifest_path: str,
    shard: int,
    n_shards: int,
    output: str,
    store_root: str,
    device: str,
    clip_cache: str | None,
    checkpoint: str | None,
    threads: int,
    batch_size: int,
    workers: int,
    flush_every: int,
    max_rel_error: float,
) -> RunStats:
    """Extract one shard of a dataset for one model instance and write its ``.npz``.

    ``job`` is the rule's ``extraction_params`` (model instance, protocol, build options,
    precision, and ``frame_order`` for an intervention); ``device`` is ``extraction.device``.
    With the checkpoint's SHA-256 the job selects the instance's part of the feature store
    under ``store_root``; clips found there are reused.

    A ``frame_order`` other than ``original`` (:mod:`dimcollapse.data.interventions`) puts
    every clip's frames in that order before the model, keeps the features in a store key
    of its own and names the shard's spaces ``<space>@<order>``. Time-resolved arrays
    (``time_resolved`` of the instance) are computed with the original order only.
    """
    from dimcollapse.data.clips import open_clip_dataset
    from dimcollapse.data.interventions import ORIGINAL, intervened_space, views_intervention
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.data.protocols import Protocol
    from dimcollapse.models.build import build_model
    from dimcollapse.models.registry import METHODS
    from dimcollapse.models.time_axes import time_key

    torch.set_num_threads(threads)
    manifest = read_manifest(manifest_path)
    rows = shard_rows(len(manifest), shard, n_shards, align=batch_size)
    protocol = Protocol.from_dict(job["protocol"])
    model_cfg = job["model"]
    # the method's spaces, then one per configured layer (same forward pass, see build_model)
    spaces = tuple(METHODS[model_cfg["method"]].spaces) + tuple(f"layer.{n}" for n in model_cfg.get("layers") or ())
    order = job.get("frame_order", ORIGINAL)
    time_spaces = tuple(time_key(s) for s in model_cfg.get("time_resolved") or ()) if order == ORIGINAL else ()
    dev = resolve_device(device)
    precision = job["precision"]
    identity = instance_identity(job, checkpoint, clip_cache=clip_cache is not None)
    store = FeatureStore(store_root).instance(identity, {"instance": model_cfg["name"],
                                                         "checkpoint": model_cfg.get("checkpoint")})
    keys = clip_keys(manifest["content"], manifest["duration"], manifest["fps"])
    log.info("shard %d/%d: %d of %d manifest rows; model %s (%s) on %s, %s; protocol %s; frame order %s; store %s",
             shard, n_shards, len(rows), len(manifest), model_cfg["name"], model_cfg["method"], dev,
             precision, protocol.key, order, store.dir)
    model = prepare_model(
        build_model(model_cfg["method"], checkpoint=checkpoint, config=model_cfg["config"], **job["build_options"]),
        dev,
    )
    dataset = open_clip_dataset(manifest, protocol, clip_cache, output="frames")
    make_batches = loader_batches(dataset, batch_size, workers, dev)
    result, stats = run_shard(model, spaces, rows, make_batches, store, keys=keys, ids=manifest["id"].tolist(),
                              paths=manifest["path"].tolist(), device=dev, batch_size=batch_size,
                              precision=precision, max_rel_error=max_rel_error, flush_every=flush_every,
                              keep_views=job["keep_views"], batch_dependent=uses_batch_statistics(model),
                              time_spaces=time_spaces, intervene=views_intervention(protocol, order, keys))
    if order != ORIGINAL:  # the shard holds the intervened spaces, named so
        names = {s: intervened_space(s, order) for s in spaces}
        names |= {views_key(s): views_key(names[s]) for s in spaces}
        result.features = {names[s]: v for s, v in result.features.items()}
    result.meta = {
        **asdict(stats),
        "clips_per_s": stats.clips_per_s,
        "device": str(dev),
        "device_name": f"{torch.cuda.get_device_name(dev)} (GPU {physical_gpu()})" if dev.type == "cuda" else "cpu",
        "precision": precision,
        "batch_size": batch_size,
        "workers": workers,
        "threads": threads,
        "shard": shard,
        "n_shards": n_shards,
        "frame_order": order,
        "clip_cache": clip_cache,
        "checkpoint_path": checkpoint,
        "checkpoint_sha256": identity["checkpoint_sha256"],
        "store": str(store.dir),
        "weights": getattr(model, "provenance", {}),
    }
    if result.failures:
        log.warning(
            "%d of %d videos of this shard failed to decode; they are left out for every method",
            len(result.failures),
            len(rows),
        )
    result.save(output)
    store.compact()
    log.info(
        "wrote %s: %d clips (%d computed, %d reused from the feature store, %d failed) in %.1f s, %.2f clips/s",
        output,
        len(rows),
        stats.clips_computed,
        stats.clips_reused,
        stats.failed,
        stats.wall_s,
        stats.clips_per_s,
    )
    return stats
