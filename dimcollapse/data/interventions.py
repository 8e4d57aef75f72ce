"""Frame-order interventions: does a representation change when time is scrambled?

A clip's frames f₀ … f_{T−1} (one temporal window, after sampling) are given to the model
in another order, and the features it then computes become feature spaces of their own
(``<space>@<order>``, e.g. ``representation@shuffled``) beside the original ones, with the
same rows:

* ``reversed``: f_{T−1−t};
* ``shuffled``: f_{π(t)}, π a permutation drawn from a generator seeded by the clip's
  feature-store key (:func:`~dimcollapse.extraction.store.clip_keys`), so it is the same on
  every run, process and machine; drawn again while π is the identity (for T ≥ 2);
* ``frozen``: f_{⌊T/2⌋} repeated T times (no motion, the content of one moment).

A model whose features do not change under ``shuffled`` or ``reversed`` does not use frame
order; one whose features do not change under ``frozen`` does not use more than one frame.

Every per-frame step of the input pipeline (scaling, cropping, normalisation) acts on each
frame alone, so reordering the model-input views along their time axis is the same as
reordering the decoded frames (REFERENCE §15): the clip cache of the original sampling
serves every order. :func:`views_intervention` does that on a batch of views, as one call
between the data path and the model. Windows of multi-window protocols are reordered each
on its own with the clip's order; DPC's ``num_seq`` blocks of ``seq_len`` frames are one
sequence of ``num_seq·seq_len`` frames, reordered as a whole and cut into blocks again.

The permutation is not NumPy's: a Fisher–Yates shuffle driven by BLAKE2b of the key and a
counter (rejection sampling, so every permutation is equally likely), which no library
version can change.

Torch-free at import (the workflow's start reads the names); torch is imported by the
function that reorders tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from dimcollapse.data.protocols import Protocol

ORIGINAL = "original"
#: Frame orders other than the original, in the order tables and figures list them.
INTERVENTIONS: tuple[str, ...] = ("reversed", "shuffled", "frozen")
FRAME_ORDERS: tuple[str, ...] = (ORIGINAL, *INTERVENTIONS)
#: Separates a space from its frame order in space names: ``representation@shuffled``.
SEPARATOR = "@"

_SHUFFLE_DOMAIN = b"dimcollapse frame order: shuffled\0"
_U64 = 1 << 64


def intervened_space(space: str, order: str) -> str:
    """Name of the feature space of ``space`` computed on frames in ``order``."""
    _check_order(order)
    return space if order == ORIGINAL else f"{space}{SEPARATOR}{order}"


def split_space(name: str) -> tuple[str, str]:
    """``(space, order)`` of a feature-space name: ``representation@shuffled`` →
    ``("representation", "shuffled")``; a plain name has order ``original``."""
    space, sep, order = name.rpartition(SEPARATOR)
    if sep and order in INTERVENTIONS:
        return space, order
    return name, ORIGINAL


def _check_order(order: str) -> None:
    if order not in FRAME_ORDERS:
        raise ValueError(f"unknown frame order {order!r}; choose from {', '.join(FRAME_ORDERS)}")


def _key_bytes(key: bytes | str | np.bytes_) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


def _draws(seed: bytes) -> Callable[[int], int]:
    """Uniform integers in ``[0, n)`` from BLAKE2b(seed, counter), by rejection sampling."""
    counter = 0

    def below(n: int) -> int:
        nonlocal counter
        limit = _U64 - _U64 % n  # the largest multiple of n: values at or above it would bias
        while True:
            digest = hashlib.blake2b(seed + counter.to_bytes(8, "little"), digest_size=8).digest()
            counter += 1
            value = int.from_bytes(digest, "little")
            if value < limit:
                return value % n

    return below


def shuffled_indices(frames: int, key: bytes | str | np.bytes_) -> np.ndarray:
    """The ``shuffled`` permutation of ``frames`` frames for the clip with store key ``key``.

    Fisher–Yates driven by :func:`_draws`; a draw that gives the identity is replaced by
    the next one (for ``frames >= 2``), so the result never is the original order.
    """
    if frames < 1:
        raise ValueError(f"a clip has at least one frame, got {frames}")
    below = _draws(_SHUFFLE_DOMAIN + _key_bytes(key))
    identity = np.arange(frames, dtype=np.int64)
    while True:
        order = identity.copy()
        for j in range(frames - 1, 0, -1):
            i = below(j + 1)
            order[i], order[j] = order[j], order[i]
        if frames < 2 or not np.array_equal(order, identity):
            return order


def frame_indices(order: str, frames: int, key: bytes | str | np.bytes_ = b"") -> np.ndarray:
    """Which original frame goes to each position: intervened frame ``t`` = original frame
    ``frame_indices(order, T, key)[t]`` (int64, length ``frames``). ``key`` matters for
    ``shuffled`` only."""
    _check_order(order)
    if frames < 1:
        raise ValueError(f"a clip has at least one frame, got {frames}")
    if order == "reversed":
        return np.arange(frames - 1, -1, -1, dtype=np.int64)
    if order == "shuffled":
        return shuffled_indices(frames, key)
    if order == "frozen":
        return np.full(frames, frames // 2, dtype=np.int64)
    return np.arange(frames, dtype=np.int64)


def reorder_views(video: torch.Tensor, indices: np.ndarray, blocks: int | None = None) -> torch.Tensor:
    """A batch of model-input views with every clip's frames in its own new order.

    ``video``: ``B × V × 3 × T × H × W`` (one clip per row, ``V`` views, each a window of
    ``T`` frames), or DPC's ``B × V × N × 3 × SL × H × W`` when ``blocks = N`` (the window is
    the sequence of ``N·SL`` frames). ``indices``: ``B × T`` (``B × N·SL``), row ``b`` from
    :func:`frame_indices` for clip ``b``; every view of a clip gets the clip's order.
    """
    import torch

    rows = np.asarray(indices, dtype=np.int64)
    b, v = video.shape[:2]
    if blocks is not None:  # B×V×N×3×SL×H×W → B×V×3×(N·SL)×H×W: one sequence of frames
        n, c, sl, h, w = video.shape[2:]
        flat = video.permute(0, 1, 3, 2, 4, 5, 6).reshape(b, v, c, n * sl, h, w)
        out = reorder_views(flat, rows)
        return out.reshape(b, v, c, n, sl, h, w).permute(0, 1, 3, 2, 4, 5, 6).contiguous()
    if video.ndim != 6:
        raise ValueError(f"expected views B×V×3×T×H×W, got shape {tuple(video.shape)}")
    if rows.shape != (b, video.shape[3]):
        raise ValueError(f"frame orders of shape {rows.shape} for {b} clips of {video.shape[3]} frames")
    index = torch.as_tensor(rows, device=video.device)
    return torch.stack([video[i].index_select(2, index[i]) for i in range(b)])


def views_intervention(
    protocol: Protocol, order: str, keys: Sequence[Any] | np.ndarray
) -> Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None:
    """The call that puts a batch of views in ``order`` before the model, or None for ``original``.

    ``keys``: the store key of every manifest row (``shuffled`` seeds each clip's permutation
    with it); the returned function takes the batch's views and its manifest rows.
    """
    from dimcollapse.data.protocols import DpcProtocol

    _check_order(order)
    if order == ORIGINAL:
        return None
    frames = protocol.frames_per_window
    blocks = protocol.num_seq if isinstance(protocol, DpcProtocol) else None

    def intervene(video: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        indices = np.stack([frame_indices(order, frames, keys[r]) for r in rows]) if len(rows) else \
            np.zeros((0, frames), np.int64)
        return reorder_views(video, indices, blocks)

    return intervene


__all__ = ["FRAME_ORDERS", "INTERVENTIONS", "ORIGINAL", "SEPARATOR", "frame_indices", "intervened_space",
           "reorder_views", "shuffled_indices", "split_space", "views_intervention"]
