"""The torch data layer that feeds extractors: every manifest row's clip, read from the clip
cache (:mod:`dimcollapse.data.clip_cache`) or decoded on the fly, batched with failures
reported beside the batch, never inside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dimcollapse.data.cache_files import CacheUnreadable
from dimcollapse.data.clip_cache import ClipCache, cache_frames, quarantine_cache
from dimcollapse.data.manifest import as_rows
from dimcollapse.data.protocols import Protocol, resolve_protocol
from dimcollapse.data.video import decode_row
from dimcollapse.data.views import frames_to_views, pack_frames
from dimcollapse.failures import VideoError

OUTPUTS = ("views", "frames")


class ClipDataset(Dataset):
    """Every manifest row's clip, from the clip cache or decoded on the fly.

    Item ``i`` is a dict: ``index`` (row position), ``ok``, ``short`` and ``error`` (``""``
    when ok), and the clip as ``output`` says:

    * ``"views"`` (default): ``video``, the float32 model input ``(views,
      *protocol.clip_shape)`` (1 view for ``paper`` and ``dpc``, 30 for ``slowfast_test``;
      an empty tensor when the row failed);
    * ``"frames"``: ``frames``, the uint8 ``K×H×W×3`` frames the views are made of
      (:func:`~dimcollapse.data.views.frames_to_views`; ``None`` when the row failed), and
      ``protocol``. Extraction reads these: a quarter of the bytes, and the views are
      assembled on the extraction device (:func:`~dimcollapse.data.views.batch_views`).

    A failing video never raises: it comes back with ``ok=False`` and the error message,
    so a DataLoader worker survives it.

    ``as_cached`` (without a cache) decodes each clip to the frames a clip cache would
    store (:func:`cache_frames`), so the views equal those read from a cache exactly.
    """

    def __init__(
        self,
        rows: Any,
        protocol: str | Protocol = "paper",
        *,
        cache: ClipCache | str | os.PathLike[str] | None = None,
        as_cached: bool = False,
        output: str = "views",
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.rows = as_rows(rows)
        self.protocol = resolve_protocol(protocol)
        self.as_cached = as_cached
        self.output = output
        if cache is not None and not isinstance(cache, ClipCache):
            cache = ClipCache(cache)
        if cache is not None:
            cache.check_compatible(self.rows, self.protocol)
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def frames(self, i: int) -> tuple[np.ndarray, bool]:
        """Row ``i``'s uint8 frames and its short flag (raises for a failed row)."""
        if self.cache is not None:
            return self.cache.frames(i), self.cache.entries[i].short
        frames, short = decode_row(self.rows[i], self.protocol)
        return (cache_frames(frames, self.protocol) if self.as_cached else frames), short

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": i, "ok": True, "short": False, "error": ""}
        try:
            frames, short = self.frames(i)
            item["short"] = bool(short)
            if self.output == "frames":
                return item | {"frames": frames, "protocol": self.protocol}
            return item | {"video": frames_to_views(frames, self.protocol)}
        except Exception as err:  # noqa: BLE001 - reported per item, never kills the loader
            empty = (
                {"frames": None, "protocol": self.protocol} if self.output == "frames" else {"video": torch.empty(0)}
            )
            return item | {"ok": False, "short": False, "error": _message(err)} | empty


def open_clip_dataset(
    rows: Any, protocol: Protocol, cache_dir: str | os.PathLike[str] | None, output: str = "views"
) -> ClipDataset:
    """The dataset of ``rows`` (items as ``output`` says): read from the clip cache at
    ``cache_dir`` (if any).

    A damaged or vanished cache does not stop the job: it is quarantined
    (:func:`quarantine_cache`) and the clips are decoded to the frames it would hold.
    """
    if cache_dir is None:
        return ClipDataset(rows, protocol, output=output)
    try:
        return ClipDataset(rows, protocol, cache=cache_dir, output=output)
    except (CacheUnreadable, FileNotFoundError) as err:
        quarantine_cache(
            cache_dir,
            str(err),
            "this job decodes its clips to the frames the cache would hold "
            "(same features, slower); the next run of the workflow builds it again",
        )
        return ClipDataset(rows, protocol, as_cached=True, output=output)


def _message(err: BaseException) -> str:
    if isinstance(err, VideoError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch the ok items; failed ones are reported beside the tensor batch, never inside it.

    Returns ``index`` (long, rows of the clips), the clips — ``video`` (``B×views×...``
    float32; empty when every item failed) for ``views`` items, ``frames`` (a
    :class:`~dimcollapse.data.views.FrameBatch`; ``None`` when every item failed) for
    ``frames`` items —, ``short`` (bool), ``failed_index`` (long) and ``failed_error``
    (list of messages).
    """
    ok = [it for it in items if it["ok"]]
    bad = [it for it in items if not it["ok"]]
    batch: dict[str, Any] = {
        "index": torch.tensor([it["index"] for it in ok], dtype=torch.long),
        "short": torch.tensor([it["short"] for it in ok], dtype=torch.bool),
        "failed_index": torch.tensor([it["index"] for it in bad], dtype=torch.long),
        "failed_error": [it["error"] for it in bad],
    }
    if items and "frames" in items[0]:
        batch["frames"] = pack_frames([it["frames"] for it in ok], ok[0]["protocol"]) if ok else None
    else:
        batch["video"] = torch.stack([it["video"] for it in ok]) if ok else torch.empty(0)
    return batch


def make_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int = 16,
    workers: int = 2,
    pin_memory: bool = False,
    persistent_workers: bool = True,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A sequential DataLoader over ``dataset``, a :class:`ClipDataset` or a ``Subset`` of one
    (row order kept, so feature row i = manifest row i).

    ``pin_memory``: copy each batch into page-locked memory (for a fast, asynchronous copy
    to a GPU; extraction asks for it on CUDA). Workers run one torch thread each
    (decoding parallelism comes from the workers; PyAV uses SLICE threading only).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        worker_init_fn=_loader_worker_init if workers > 0 else None,
    )


def _loader_worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding parallelism comes from the workers
