"""Running a model on a device at a precision: device choice, model preparation, the forward pass.

:func:`prepare_model` gives every model the preparation its device type calls for, decided
by :func:`preparation_for` from the model's structure alone — so a CPU test can apply
exactly what CUDA gets (memory format, flags; only the device differs) to every family:

* **Memory format.** Channels-last 3D (NDHWC, what cuDNN's fast 3D kernels want) only for
  networks made mostly of 3D convolutions (the Slow R50s, DPC's backbone, the torchvision
  and PyTorchVideo CNNs, the demo nets), and then only on their ``Conv3d`` weights and on
  5-D inputs. Converting a whole module fails on any rank-4 weight — a ``Conv2d`` patch
  embedding (V-JEPA 2, TimeSformer, DINOv2/v3, SigLIP, CLIP, ViT) or DPC's ConvGRU — and a
  transformer gains nothing from it; those stay contiguous.
* **Flags.** cuDNN autotuning on CUDA (process-wide).

The precision is not a property of the prepared model but of each forward call
(:func:`precision_context`): ``fp32`` is IEEE float32 on CUDA too (PyTorch would otherwise
run convolutions in TF32 on Ampere and later, 5e-4 relative error on a Slow R50),
``tf32`` allows TF32 tensor cores for float32 matmuls and convolutions, ``bf16`` and
``fp16`` autocast. On a CPU, ``tf32`` computes strict fp32 (there are no TF32 units).
Reduced precision is opt-in and checked against strict fp32 on the first batch
(:func:`check_precision`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dimcollapse.data.views import FrameBatch
from dimcollapse.errors import KnownError


class PrecisionError(KnownError, RuntimeError):
    """Reduced precision changed the features more than the configured tolerance."""


@dataclass(frozen=True)
class Precision:
    """One ``extraction.precision``: the autocast dtype (``None``: float32) and whether
    float32 matmuls and convolutions may use TF32 tensor cores (CUDA only)."""

    name: str
    autocast: torch.dtype | None
    tf32: bool


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", None, False),
    "tf32": Precision("tf32", None, True),
    "bf16": Precision("bf16", torch.bfloat16, True),
    "fp16": Precision("fp16", torch.float16, True),
}


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("extraction.device is 'cuda' but no CUDA device is available here")
    return torch.device(requested)


@dataclass(frozen=True)
class Preparation:
    """What :func:`prepare_model` does for one model on one device type.

    ``memory_format``: of the ``Conv3d`` weights and of 5-D inputs. ``cudnn_benchmark``:
    let cuDNN time its algorithms for each new input shape (fixed-size batches make that
    a one-off cost).
    """

    device_type: str
    memory_format: torch.memory_format
    cudnn_benchmark: bool


def preparation_for(model: nn.Module, device_type: str) -> Preparation:
    """The preparation of ``model`` for ``device_type`` (``"cuda"``, ``"cpu"``, …).

    Only CUDA gets one: channels-last 3D when 3D convolutions hold most of the model's
    weights (:func:`conv3d_network`), cuDNN autotuning always. On the CPU, features stay
    those of the contiguous layout the feature store's values were computed with.
    """
    if device_type != "cuda":
        return Preparation(device_type, torch.contiguous_format, False)
    layout = torch.channels_last_3d if conv3d_network(model) else torch.contiguous_format
    return Preparation(device_type, layout, True)


def conv3d_network(model: nn.Module) -> bool:
    """Whether ``Conv3d`` weights are most of the parameters: a 3D CNN, where cuDNN's
    channels-last kernels pay, rather than a transformer with a 3D patch embedding."""
    conv3d = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv3d))
    total = sum(p.numel() for p in model.parameters())
    return total > 0 and 2 * conv3d > total


def prepare_model(model: nn.Module, device: torch.device, *, device_type: str | None = None) -> nn.Module:
    """Move ``model`` to ``device`` in eval mode and apply :func:`preparation_for` its device
    type (``device_type`` overrides it: a CPU test runs CUDA's preparation this way).

    Channels-last 3D is applied module by module to the ``Conv3d`` weights — the only
    tensors it is defined for — and the input follows in :func:`forward_views`. The
    preparation is kept as ``model.preparation``.
    """
    prep = preparation_for(model, device_type or device.type)
    model = model.to(device).eval()
    if prep.memory_format == torch.channels_last_3d:
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
    if prep.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    model.preparation = prep  # type: ignore[assignment]  # torch types Module.__setattr__ for tensors and modules only
    return model


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed forward pass at ``precision`` (:data:`PRECISIONS`): the TF32 flags
    of CUDA matmuls and cuDNN set for it (restored afterwards), autocast for bf16/fp16."""
    mode = PRECISIONS[precision]
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode.tf32
    autocast = (torch.autocast(device_type=device.type, dtype=mode.autocast) if mode.autocast is not None
                else contextlib.nullcontext())
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def device_views(video: torch.Tensor | FrameBatch, device: torch.device) -> torch.Tensor:
    """A batch's model views ``(B, V, *clip)`` on ``device``: a float tensor is copied there;
    a :class:`~dimcollapse.data.views.FrameBatch` of uint8 frames is copied and its views
    assembled there. Copies from pinned memory do not block."""
    if isinstance(video, FrameBatch):
        return video.to(device, non_blocking=True).views()
    return video.to(device, non_blocking=True)


def forward_views(
    model: nn.Module,
    video: torch.Tensor | FrameBatch,
    spaces: tuple[str, ...],
    device: torch.device,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """Run all views of a batch in one forward pass; return (B, V, D) float32 per space.

    ``video`` is a batch of views (on any device) or of uint8 frames (:func:`device_views`).
    5-D inputs take the memory format of the model's preparation (:func:`prepare_model`).
    """
    x = device_views(video, device)
    b, v = x.shape[:2]
    x = x.reshape(b * v, *x.shape[2:])
    prep = getattr(model, "preparation", None)
    if prep is not None and x.dim() == 5:
        x = x.contiguous(memory_format=prep.memory_format)
    with torch.inference_mode(), precision_context(precision, device):
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
