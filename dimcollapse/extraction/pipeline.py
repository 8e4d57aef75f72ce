"""Keeping the extraction device busy: batches staged one ahead, features back and store writes off the critical path.

:func:`~dimcollapse.extraction.extract.run_shard` runs every batch through three stages
that overlap on a GPU:

1. :meth:`Feeder.feed` takes the next batch from the loader (uint8 frames in pinned
   memory) and, before the current batch's forward pass is queued, starts copying it to
   the device and assembling its views there (:func:`~dimcollapse.extraction.device.device_views`)
   — on CUDA on a side stream, so the copy and the assembly run beside the model;
2. the forward pass waits only for that batch's own copy (:meth:`Feeder.ready`);
3. its features go back to the host asynchronously (:meth:`Feeder.to_host`, pinned memory)
   and are read one batch later, when the next forward pass is already queued;
   :class:`StoreWriter` writes finished chunks to the feature store in a thread.

On the CPU the same code runs in order (no side stream; features are read at once). The
few CUDA calls (streams and events) are :class:`CudaStreams`; a test can hand
:class:`Feeder` any object with its methods to check the ordering on a CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from dimcollapse.data.views import FrameBatch
from dimcollapse.extraction.device import device_views
from dimcollapse.failures import Failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Clips of one loader step: ``video`` holds the ok rows' clips — float views
    ``(B, V, *model_input)`` or a :class:`~dimcollapse.data.views.FrameBatch` of their uint8
    frames, made into views on the extraction device."""

    rows: np.ndarray  # manifest positions of the clips in ``video``
    video: torch.Tensor | FrameBatch | None
    failures: list[Failure] = field(default_factory=list)
    failed_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    short: np.ndarray | None = None  # bool per row of ``rows``: frames were repeated


class Streams(TypingProtocol):
    """What :class:`Feeder` needs from an asynchronous device (see :class:`CudaStreams`)."""

    def side(self) -> contextlib.AbstractContextManager[Any]: ...
    def record_side(self) -> Any: ...
    def record_main(self) -> Any: ...
    def main_waits(self, event: Any, tensor: torch.Tensor) -> None: ...
    def synchronize(self, event: Any) -> None: ...


class CudaStreams:
    """A side stream for copies and view assembly, and the events that order it with the
    main stream (which runs the model)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def side(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(self.stream)

    def record_side(self) -> torch.cuda.Event:
        return self.stream.record_event()

    def record_main(self) -> torch.cuda.Event:
        return torch.cuda.current_stream(self.device).record_event()

    def main_waits(self, event: torch.cuda.Event, tensor: torch.Tensor) -> None:
        main = torch.cuda.current_stream(self.device)
        main.wait_event(event)
        tensor.record_stream(main)  # allocated on the side stream, used (and freed) on the main one

    def synchronize(self, event: torch.cuda.Event) -> None:
        event.synchronize()


@dataclass
class Staged:
    """A batch whose views are on their way to the device (``views`` ``None``: no ok clip)."""

    batch: Batch
    views: torch.Tensor | None = None
    event: Any = None


@dataclass
class HostFeatures:
    """Features of one batch on their way to the host; :meth:`numpy` waits for them."""

    tensors: dict[str, torch.Tensor]
    event: Any
    streams: Streams | None

    def numpy(self) -> dict[str, np.ndarray]:
        if self.streams is not None:
            self.streams.synchronize(self.event)
        return {k: v.numpy() for k, v in self.tensors.items()}


class Feeder:
    """Stages batches on the device one ahead of the model (module docstring).

    ``pad_to``: pad each batch of views to this many clips with copies of its last clip (0:
    never). CPU kernels round differently for different batch sizes (measured: up to 7e-7
    on a Slow R50 representation between a clip alone and in a batch of 8) but not for
    different neighbours or positions in a batch of the same size; fixed-size batches
    therefore make a clip's features a function of the clip alone, which is what lets the
    feature store reuse it in any later batch and stay byte-identical to a clean run.
    ``streams``: the asynchronous device (default :class:`CudaStreams` on CUDA, none
    elsewhere). ``intervene(views, rows)``: applied to each batch's views on the device,
    before the padding (a per-clip change of the input, e.g. the order of its frames).
    """

    def __init__(self, device: torch.device, pad_to: int, streams: Streams | None = None,
                 intervene: Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None = None) -> None:
        self.device = device
        self.pad_to = pad_to
        self.intervene = intervene
        self.streams = streams if streams is not None else (CudaStreams(device) if device.type == "cuda" else None)

    @property
    def depth(self) -> int:
        """Batches whose features may still be on their way back while the next one runs."""
        return 0 if self.streams is None else 1

    def stage(self, batch: Batch) -> Staged:
        """Start moving ``batch`` to the device and assembling its (padded) views."""
        if batch.video is None or not len(batch.rows):
            return Staged(batch)
        side = self.streams.side() if self.streams is not None else contextlib.nullcontext()
        with side, torch.no_grad():
            views = device_views(batch.video, self.device)
            if self.intervene is not None:
                views = self.intervene(views, batch.rows)
            views = pad_batch(views, self.pad_to)
        return Staged(batch, views, self.streams.record_side() if self.streams is not None else None)

    def ready(self, staged: Staged) -> torch.Tensor:
        """The staged views, once the model's stream may use them."""
        assert staged.views is not None
        if self.streams is not None:
            self.streams.main_waits(staged.event, staged.views)
        return staged.views

    def to_host(self, tensors: dict[str, torch.Tensor]) -> HostFeatures:
        """Start copying ``tensors`` to (pinned) host memory."""
        host = {k: v.to("cpu", non_blocking=True) for k, v in tensors.items()}
        event = self.streams.record_main() if self.streams is not None else None
        return HostFeatures(host, event, self.streams)

    def feed(self, batches: Iterable[Batch]) -> Iterator[Staged]:
        """``batches`` staged one ahead: the next batch is staged before the current one is
        handed out. When the loader raises, the batch fetched before is still handed out
        first, then the error follows."""
        it = iter(batches)
        try:
            current = self.stage(next(it))
        except StopIteration:
            return
        while True:
            try:
                following = next(it)
            except StopIteration:
                yield current
                return
            except BaseException:
                yield current
                raise
            upcoming = self.stage(following)
            yield current
            current = upcoming


def pad_batch(views: torch.Tensor, size: int) -> torch.Tensor:
    """``views`` with its last clip repeated up to ``size`` clips (unchanged when it has as many)."""
    n = views.shape[0]
    if n >= size:
        return views
    return torch.cat([views, views[-1:].expand(size - n, *views.shape[1:])])


class StoreWriter:
    """Runs feature-store writes in a background thread, in submission order.

    A failed write surfaces in the caller at the next :meth:`submit` or when the ``with``
    block ends, which also waits for every write (so what was flushed before an error or
    an interruption is in the store).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature-store")
        self._futures: list[Future[Any]] = []

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        self._raise_failed()
        self._futures.append(self._pool.submit(write, *args))

    def _raise_failed(self) -> None:
        for f in self._futures:
            if f.done() and (err := f.exception()) is not None:
                self._futures.remove(f)  # raised here: not reported again when the block ends
                raise err
        self._futures = [f for f in self._futures if not f.done()]

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._pool.shutdown(wait=True)
        errors = [err for f in self._futures if (err := f.exception()) is not None]
        if errors and exc is None:
            raise errors[0]
        for err in errors:
            log.error("feature store write failed as well: %s: %s", type(err).__name__, err)
