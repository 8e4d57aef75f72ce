"""Feature extraction of one shard: batched, resumable, precision-checked.

The loop is deliberately small: a data loader (decoding or reading the clip cache in
worker processes) yields batches of clips; the model runs under ``inference_mode`` on
the chosen device; outputs of multi-view protocols are averaged per video; finished
rows are flushed to a :class:`~dimcollapse.extraction.shards.PartialStore` every ``flush_every``
clips so that a killed job resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dimcollapse.failures import Failure
from dimcollapse.extraction.gpu_slots import physical_gpu
from dimcollapse.extraction.shards import PartialStore, ShardResult, concat_results, shard_rows

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(RuntimeError):
    """Reduced precision changed the features more than the configured tolerance."""


@dataclass(frozen=True)
class Batch:
    """Clips of one loader step: ``video`` is (B, V, *model_input) for the ok rows."""

    rows: np.ndarray  # manifest positions of the clips in ``video``
    video: torch.Tensor | None
    failures: list[Failure] = field(default_factory=list)
    failed_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    short: np.ndarray | None = None  # bool per row of ``rows``: frames were repeated


@dataclass
class RunStats:
    """What one run of a shard did (written to the sidecar)."""

    clips_total: int = 0
    clips_resumed: int = 0
    clips_computed: int = 0
    failed: int = 0
    wall_s: float = 0.0
    precision_rel_error: float | None = None

    @property
    def clips_per_s(self) -> float:
        return self.clips_computed / self.wall_s if self.wall_s > 0 else 0.0


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("extraction.device is 'cuda' but no CUDA device is available here")
    return torch.device(requested)


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str = "fp32") -> torch.nn.Module:
    """Move the model to the device; on CUDA use cuDNN autotuning and channels-last 3D.

    ``fp32`` means IEEE fp32 on CUDA too: PyTorch runs convolutions in TF32 on
    Ampere/Hopper GPUs by default (about 1e-3 relative error), which would silently
    change the spectrum's tail. Reduced precision is opt-in and checked separately.
    """
    model = model.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        strict = precision == "fp32"
        torch.backends.cudnn.allow_tf32 = not strict
        torch.backends.cuda.matmul.allow_tf32 = not strict
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def forward_views(
    model: torch.nn.Module,
    video: torch.Tensor,
    spaces: tuple[str, ...],
    device: torch.device,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """Run all views of a batch in one forward pass; return (B, V, D) float32 per space."""
    b, v = video.shape[:2]
    x = video.reshape(b * v, *video.shape[2:]).to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    autocast = (
        torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])
        if precision != "fp32"
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        out = model(x)
    return {s: out[s].float().reshape(b, v, -1) for s in spaces}


def relative_error(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> float:
    """Largest Frobenius relative error over spaces: ||other − ref|| / ||ref||."""
    errs = []
    for space, ref in reference.items():
        denom = torch.linalg.vector_norm(ref).item()
        diff = torch.linalg.vector_norm(other[space] - ref).item()
        errs.append(diff / denom if denom > 0 else diff)
    return max(errs)


def check_precision(
    reference: dict[str, torch.Tensor], reduced: dict[str, torch.Tensor], precision: str, limit: float
) -> float:
    """Compare a reduced-precision batch with fp32; raise :class:`PrecisionError` above ``limit``."""
    err = relative_error(reference, reduced)
    if not np.isfinite(err) or err > limit:
        raise PrecisionError(
            f"{precision} features differ from fp32 by a relative error of {err:.3g} on the first "
            f"batch, above extraction.max_rel_error = {limit:g}. Reduced precision would change the "
            "spectrum's tail; use precision: fp32, or raise max_rel_error if this is acceptable."
        )
    return err


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
    store: PartialStore,
    *,
    device: torch.device,
    precision: str = "fp32",
    max_rel_error: float = 0.01,
    flush_every: int = 256,
    keep_views: bool = False,
) -> tuple[ShardResult, RunStats]:
    """Extract features for ``rows``, resuming from ``store``; return them in row order.

    ``make_batches(remaining_rows)`` builds the loader for the rows not yet in the store,
    so finished clips are neither decoded nor run again. Features are averaged over a
    protocol's views; ``keep_views`` also keeps every view, as ``<space>_views`` arrays of
    shape (rows, views × D) (see :func:`views_key`).
    """
    kept = spaces + tuple(views_key(s) for s in spaces) if keep_views else spaces
    t0 = time.perf_counter()
    stats = RunStats(clips_total=len(rows))
    parts = store.load()
    done = np.concatenate([p.rows for p in parts]) if parts else np.zeros(0, np.int64)
    stats.clips_resumed = len(done)
    remaining = np.setdiff1d(rows, done)
    if parts:
        log.info("resuming: %d of %d clips already done", len(done), len(rows))
    progress = Progress(len(remaining))
    pending: list[ShardResult] = []
    n_pending = 0

    def flush() -> None:
        nonlocal pending, n_pending
        if pending:
            chunk = concat_results(pending, kept)
            store.add(chunk)
            parts.append(chunk)
            pending, n_pending = [], 0

    first = True
    for batch in make_batches(remaining):
        feats: dict[str, np.ndarray] = {}
        if batch.video is not None and len(batch.rows):
            out = forward_views(model, batch.video, spaces, device, precision)
            if first and precision != "fp32":
                ref = forward_views(model, batch.video, spaces, device, "fp32")
                stats.precision_rel_error = check_precision(ref, out, precision, max_rel_error)
            first = False
            feats = {s: out[s].mean(dim=1).cpu().numpy().astype(np.float32) for s in spaces}
            if keep_views:
                feats |= {views_key(s): out[s].flatten(1).cpu().numpy() for s in spaces}
        pending.append(_batch_result(batch, feats, kept))
        n = len(batch.rows) + len(batch.failed_rows)
        n_pending += n
        stats.clips_computed += len(batch.rows)
        progress.update(n)
        if n_pending >= flush_every:
            flush()
    flush()
    progress.update(0, force=True)
    result = concat_results(parts, kept)
    if not np.array_equal(result.rows, np.sort(rows)):
        missing = np.setdiff1d(rows, result.rows)
        raise RuntimeError(f"extraction finished without {len(missing)} rows (first: {missing[:5].tolist()})")
    stats.failed = int((~result.ok).sum())
    stats.wall_s = time.perf_counter() - t0
    return result, stats


def views_key(space: str) -> str:
    """Name of the per-view features of ``space`` in shard results and output files."""
    return f"{space}_views"


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
    :class:`~dimcollapse.data.clips.ClipDataset`, whose failed items become failure records."""
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
                video=b["video"] if len(b["index"]) else None,
                failures=[Failure(ids[i], paths[i], "decode", msg) for i, msg in zip(failed, b["failed_error"])],
                failed_rows=failed,
                short=b["short"].numpy(),
            )

    return make_batches


def _checkpoint_identity(checkpoint: str | None) -> dict[str, Any]:
    """SHA-256 recorded by the download rule (sidecar), plus size and mtime of the file."""
    if checkpoint is None:
        return {}
    path = Path(checkpoint)
    stat = path.stat()
    sidecar = Path(f"{checkpoint}.json")
    sha = json.loads(sidecar.read_text()).get("sha256") if sidecar.is_file() else None
    return {"checkpoint_path": str(path), "checkpoint_sha256": sha, "checkpoint_size": stat.st_size,
            "checkpoint_mtime": stat.st_mtime}


def extract_shard(
    *,
    job: dict[str, Any],
    code_version: str,
    manifest_path: str,
    shard: int,
    n_shards: int,
    output: str,
    partial_root: str,
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
    precision, device); with the code version, the manifest and the checkpoint it keys
    the partial store, so only an identical configuration resumes.
    """
    from dimcollapse.data.clips import ClipDataset
    from dimcollapse.config import stable_hash
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.models import METHODS, build_model
    from dimcollapse.data.protocols import Protocol

    torch.set_num_threads(threads)
    manifest = read_manifest(manifest_path)
    rows = shard_rows(len(manifest), shard, n_shards, align=batch_size)
    protocol = Protocol.from_dict(job["protocol"])
    model_cfg = job["model"]
    spaces = tuple(METHODS[model_cfg["method"]].spaces)
    device = resolve_device(job["device"])
    precision = job["precision"]
    ckpt = _checkpoint_identity(checkpoint)
    fingerprint = stable_hash({
        "job": job, "code": code_version, "checkpoint": ckpt, "batch_size": batch_size, "shard": [shard, n_shards],
        "manifest": hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest(),
    })
    store = PartialStore(partial_root, fingerprint)
    log.info("shard %d/%d: %d of %d manifest rows; model %s (%s) on %s, %s; protocol %s",
             shard, n_shards, len(rows), len(manifest), model_cfg["name"], model_cfg["method"], device,
             precision, protocol.key)
    model = prepare_model(
        build_model(model_cfg["method"], checkpoint=checkpoint, config=model_cfg["config"], **job["build_options"]),
        device,
        precision,
    )
    dataset = ClipDataset(manifest, protocol, cache=clip_cache)
    make_batches = loader_batches(dataset, batch_size, workers, device)
    result, stats = run_shard(model, spaces, rows, make_batches, store, device=device, precision=precision,
                              max_rel_error=max_rel_error, flush_every=flush_every,
                              keep_views=job["keep_views"])
    result.meta = {
        **asdict(stats), "clips_per_s": stats.clips_per_s, "device": str(device),
        "device_name": f"{torch.cuda.get_device_name(device)} (GPU {physical_gpu()})" if device.type == "cuda" else "cpu",
        "precision": precision, "batch_size": batch_size, "workers": workers, "threads": threads,
        "shard": shard, "n_shards": n_shards, "clip_cache": clip_cache, **ckpt,
        "weights": getattr(model, "provenance", {}),
    }
    if result.failures:
        log.warning("%d of %d videos of this shard failed to decode; they are left out for every method",
                    len(result.failures), len(rows))
    result.save(output)
    store.clear()
    log.info("wrote %s: %d clips (%d resumed, %d computed) in %.1f s, %.2f clips/s", output, len(rows),
             stats.clips_resumed, stats.clips_computed, stats.wall_s, stats.clips_per_s)
    return stats
