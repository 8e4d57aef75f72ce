"""From uint8 frames to model views, on whatever device holds the frames.

Decoding (:mod:`dimcollapse.data.video`) and the clip cache (:mod:`dimcollapse.data.clips`)
produce uint8 frames; everything after that — short-side scaling where it happens in
float, the crops, ``/255``, normalisation and each protocol's view layout — is here, in one
function, :func:`frames_to_views`, that runs on the frames' device. Extraction ships the
uint8 frames of a whole batch as one :class:`FrameBatch` (a quarter of the bytes of float
views, one pinned buffer, one copy to the GPU) and assembles the views there with
:func:`batch_views`; on a CPU the very same code runs in the extraction process.

Every batch of uint8 frames becomes model views in :func:`batch_views`, clip by clip, so a
per-clip change of the frames themselves (their order in time, say) belongs in that one
function, before :func:`frames_to_views`.

On the CPU the arithmetic is exactly that of the original pipelines (and bit for bit what
this module computed before it ran on other devices): the same operations on the same
memory layouts; float bilinear scaling runs on one thread, as it did in the loader
workers, because torch's bilinear kernel rounds the last bit differently with other thread
counts. On a GPU the same operations give views equal to the CPU's to about 1e-7.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from dimcollapse.data import slowfast
from dimcollapse.data.protocols import DpcProtocol, Protocol, SlowProtocol


def scaled_size(height: int, width: int, protocol: Protocol) -> tuple[int, int]:
    """Output (height, width) of the short-side scaling to ``protocol.side_size``.

    PyTorchVideo's ``short_side_scale`` (and SlowFast's jitter at a fixed scale) compute the
    long side as ``floor(long / short * size)``; DPC's ``Scale``/frame extraction as
    ``int(size * long / short)``; torchvision's decoder (SlowFast's ``torchvision`` backend)
    rounds it. They can differ by one pixel, so each keeps its own.
    """
    size = protocol.side_size
    if isinstance(protocol, SlowProtocol) and protocol.backend == "torchvision":
        return slowfast.torchvision_size(height, width, size)
    if isinstance(protocol, DpcProtocol):
        if width < height:
            return int(size * height / width), size
        return size, int(size * width / height)
    if width < height:
        return int(math.floor((float(height) / width) * size)), size
    return size, int(math.floor((float(width) / height) * size))


def _offset(extra: int, rounding: str) -> int:
    return int(math.ceil(extra / 2)) if rounding == "ceil" else int(round(extra / 2.0))


def crop_offsets(height: int, width: int, protocol: Protocol) -> list[tuple[int, int]]:
    """Top-left corners of the spatial crops (torchvision/DPC centre crop, or SlowFast's 3)."""
    c = protocol.crop_size
    if height < c or width < c:
        raise ValueError(f"frame {height}x{width} is smaller than the crop {c}")
    y = _offset(height - c, protocol.crop_rounding)
    x = _offset(width - c, protocol.crop_rounding)
    if protocol.crops == 1:
        return [(y, x)]
    if height > width:  # portrait: top / centre / bottom
        return [(0, x), (y, x), (height - c, x)]
    return [(y, 0), (y, x), (y, width - c)]


def normalisation(protocol: Protocol, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's per-channel mean and std, float32 on ``device``.

    Made once per batch by :func:`batch_views`: on CUDA each is a copy from pageable host
    memory, which waits for the staging stream, so once per clip would stall the staging.
    """
    return (torch.tensor(protocol.mean, dtype=torch.float32, device=device),
            torch.tensor(protocol.std, dtype=torch.float32, device=device))


def frames_to_views(
    frames: np.ndarray | torch.Tensor,
    protocol: Protocol,
    out: torch.Tensor | None = None,
    norm: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Scale, crop and normalise one clip's uint8 frames into the model's input views.

    ``frames``: ``K×H×W×3`` uint8 (a NumPy array, or a tensor on any device) with ``K`` a
    multiple of ``protocol.frames_per_window``, at native size or already at the protocol's
    scaled size (then scaling is skipped). Returns ``(windows*crops, *protocol.clip_shape)``
    float32 on the frames' device (written into ``out`` when given), window-major (view
    ``w*crops + c``, SlowFast's ``temporal·3 + spatial``). Per window, in the original
    code's order: PyTorchVideo (``paper``, ``dpc``): float → short side to ``side_size``
    (bilinear, ``align_corners=False``, no antialiasing) → crop(s) → ``/255`` →
    ``(x - mean) / std``; SlowFast's PyAV path normalises *before* scaling, so
    ``backend="pyav"`` does too. DPC crops are then resized to ``output_size`` (nearest,
    PIL's rule) when set.

    The uint8 frames are permuted to C×T×H×W before the float conversion (a 1-byte copy
    instead of a 4-byte one, see :func:`planar_float`) and each view is normalised in
    place into the output; the arithmetic is unchanged. ``norm``: :func:`normalisation` of
    the protocol on the frames' device, when the caller has it already.
    """
    x = torch.from_numpy(_writable(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected K×H×W×3 uint8 frames, got {tuple(x.shape)} {x.dtype}")
    per = protocol.frames_per_window
    if x.shape[0] == 0 or x.shape[0] % per:
        raise ValueError(f"{x.shape[0]} frames is not a whole number of {per}-frame windows")
    device = x.device
    mean, std = norm if norm is not None else normalisation(protocol, device)
    mean_c, std_c = mean[:, None, None, None], std[:, None, None, None]
    c = protocol.crop_size
    windows = x.shape[0] // per
    shape = (windows * protocol.crops, *protocol.clip_shape)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=device)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the views of this clip are {shape}")
    h, wd = x.shape[1:3]
    nh, nw = scaled_size(h, wd, protocol)
    offsets = crop_offsets(nh, nw, protocol)
    normalised_first = isinstance(protocol, SlowProtocol) and protocol.backend == "pyav"
    v_index = 0
    for w in range(windows):
        part = x[w * per:(w + 1) * per]
        if normalised_first:  # SlowFast: T×H×W×C float → /255 → -mean → /std → C×T×H×W → scale
            clip = ((planar_float(part) / 255.0 - mean) / std).permute(3, 0, 1, 2)
        else:
            clip = planar_float(part.permute(3, 0, 1, 2))
        if (nh, nw) != (h, wd):
            with _one_cpu_thread(device):
                clip = torch.nn.functional.interpolate(clip, size=(nh, nw), mode="bilinear", align_corners=False)
        for y0, x0 in offsets:
            crop = clip[..., y0:y0 + c, x0:x0 + c]
            if isinstance(protocol, DpcProtocol):  # C×(N·SL)×H×W → N×C×SL×H×W, DPC's block layout
                s = protocol.input_size
                if s != c:
                    crop = torch.nn.functional.interpolate(crop, size=(s, s), mode="nearest-exact")
                v = crop.reshape(3, protocol.num_seq, protocol.seq_len, s, s).permute(1, 0, 2, 3, 4)
                out[v_index].copy_(((v / 255.0) - mean[None, :, None, None, None]) / std[None, :, None, None, None])
            elif normalised_first:
                out[v_index].copy_(crop)
            else:
                view = torch.div(crop, 255.0, out=out[v_index])
                view.sub_(mean_c).div_(std_c)
            v_index += 1
    return out


def _writable(frames: np.ndarray) -> np.ndarray:
    """``torch.from_numpy`` needs a writable array (a read-only memory map is copied)."""
    return frames if frames.flags.writeable else frames.copy()


def planar_float(frames: torch.Tensor) -> torch.Tensor:
    """A (possibly permuted) uint8 frame tensor as contiguous float32, the cheap way.

    On the CPU the result lives in a per-thread workspace that is reused by the next call,
    so the caller must be done with it before converting again (every caller here crops,
    scales or normalises it into a new tensor first). Reusing the memory matters: a fresh
    40 MB float tensor per clip costs more in page faults than the conversion itself, and
    ``copy_`` from the strided uint8 view converts and permutes in one pass (7 ms instead
    of 68 ms for ``permute().contiguous().to(float32)`` on 8 frames of 768×576, same
    values). Other devices allocate: their caching allocators reuse memory anyway, and a
    shared workspace would have to be ordered across their streams.
    """
    if frames.device.type != "cpu":
        return torch.empty(frames.shape, dtype=torch.float32, device=frames.device).copy_(frames)
    n = frames.numel()
    buf = getattr(_WORKSPACE, "buf", None)
    if buf is None or buf.numel() < n:
        with torch.inference_mode(False):  # a normal tensor, writable in and out of inference mode
            buf = _WORKSPACE.buf = torch.empty(n, dtype=torch.float32)
    return buf[:n].view(frames.shape).copy_(frames)


_WORKSPACE = threading.local()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, run torch ops on one intra-op thread (restored afterwards): torch's
    bilinear kernel rounds the last float bit differently with other thread counts."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ------------------------------------------------------------------------ batches
@dataclass(frozen=True)
class FrameBatch:
    """The uint8 frames of several clips in one flat buffer, and how to make them views.

    ``data`` holds each clip's ``K×H×W×3`` frames one after another (C order); clips may
    differ in size (videos of other aspect ratios), so ``shapes`` gives each one's. One
    buffer means one pinned copy and one transfer to the device per batch.
    :meth:`pin_memory` is what a DataLoader with ``pin_memory=True`` calls.
    """

    data: torch.Tensor
    shapes: tuple[tuple[int, int, int, int], ...]
    protocol: Protocol

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def offsets(self) -> list[int]:
        sizes = [int(np.prod(s)) for s in self.shapes]
        return [0, *np.cumsum(sizes).tolist()][:-1]

    def clip(self, i: int) -> torch.Tensor:
        """Clip ``i``'s frames, a view into :attr:`data`."""
        start = self.offsets[i]
        return self.data[start:start + int(np.prod(self.shapes[i]))].view(self.shapes[i])

    def pin_memory(self) -> FrameBatch:
        return replace(self, data=self.data.pin_memory())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FrameBatch:
        return replace(self, data=self.data.to(device, non_blocking=non_blocking))

    def views(self) -> torch.Tensor:
        """:func:`batch_views` of this batch, on the device that holds it."""
        return batch_views(self)


def pack_frames(frames: Sequence[np.ndarray], protocol: Protocol) -> FrameBatch:
    """Clips' uint8 frames as one :class:`FrameBatch`.

    Inside a DataLoader worker the buffer is allocated in shared memory, as PyTorch's own
    collate does, so that passing it to the main process copies nothing more.
    """
    arrays = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    total = sum(a.nbytes for a in arrays)
    in_worker = torch.utils.data.get_worker_info() is not None
    data = _shared_uint8(total) if in_worker else torch.empty(total, dtype=torch.uint8)
    start = 0
    for a in arrays:
        data[start : start + a.nbytes].copy_(torch.from_numpy(_writable(a)).reshape(-1))
        start += a.nbytes
    shapes = tuple((int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(a.shape[3])) for a in arrays)
    return FrameBatch(data, shapes, protocol)


def _shared_uint8(n: int) -> torch.Tensor:
    storage = torch.UntypedStorage._new_shared(n)
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (n,), (1,))


def batch_views(batch: FrameBatch) -> torch.Tensor:
    """Every clip's views, ``(clips, views, *protocol.clip_shape)`` float32, on the batch's device.

    The one place where a batch of uint8 frames becomes model input: each clip's frames
    go through :func:`frames_to_views` into its row of the output. A clip's views depend on
    its own frames only, never on the other clips of the batch.
    """
    p = batch.protocol
    out = torch.empty((len(batch), p.views, *p.clip_shape), dtype=torch.float32, device=batch.data.device)
    norm = normalisation(p, batch.data.device)
    for i in range(len(batch)):
        frames_to_views(batch.clip(i), p, out=out[i], norm=norm)
    return out
