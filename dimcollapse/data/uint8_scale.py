"""Bilinear scaling of uint8 frames that gives the same bytes on every machine.

The clip cache and DPC's frame dumps store frames scaled and rounded back to uint8. Rounding
turns the last bit of a float result into a whole grey level whenever the exact value lies
near ``k + 0.5``, and torch's float32 bilinear kernel does not give the same last bit
everywhere: its instruction-set builds (``ATEN_CPU_CAPABILITY`` default against AVX2 /
AVX-512, where fused multiply-adds contract its sums) and thread counts round differently,
which moved 1 to 71 pixels per clip by one grey level on the sample videos here (README,
"Features across machines").

:func:`scale_uint8` computes the same interpolation as
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` without
antialiasing — PyTorch's source coordinates and weights, rounded to float32 as PyTorch
rounds them — but evaluates the weighted sums in float64 with separately rounded NumPy
operations (no fused multiply-add, no order that depends on vector width or threads).
Every product of a grey level and a float32 weight is exact in float64 and each sum is
within 1e-13 of the exact value, so the result, rounded half to even, is the same on every
machine. It differs from torch's float32 result only where that one rounded across a
``.5`` (a few pixels per clip).
"""

from __future__ import annotations

import numpy as np


def linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0, i1`` and weights ``w0, w1`` (float64 holding float32 values) of
    each output position, by PyTorch's ``align_corners=False`` rule: source coordinate
    ``(dst + 0.5) * in/out - 0.5`` clamped at 0, ``w1`` its fractional part, ``i1`` the next
    index (the last one repeated at the edge)."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
    i0 = src.astype(np.int64)
    w1 = np.minimum(src - i0.astype(f32), f32(1))
    w0 = f32(1) - w1
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, w0.astype(np.float64), w1.astype(np.float64)


def scale_uint8(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``K×H×W×C`` uint8 frames scaled to ``height×width`` (bilinear), rounded to uint8.

    Width first on every source row, then height: PyTorch's nesting (the height weights
    multiply the width interpolations). One frame at a time keeps the float64 workspace at
    one frame's size.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"expected K×H×W×C uint8 frames, got {frames.shape} {frames.dtype}")
    k, h, w, c = frames.shape
    y0, y1, a0, a1 = linear_taps(h, height)
    x0, x1, b0, b1 = linear_taps(w, width)
    rows = np.unique(np.concatenate([y0, y1]))  # the source rows the output reads
    r0, r1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)
    b0, b1 = b0[None, :, None], b1[None, :, None]
    a0, a1 = a0[:, None, None], a1[:, None, None]
    out = np.empty((k, height, width, c), np.uint8)
    for i in range(k):
        f = frames[i, rows]
        across = f[:, x0] * b0 + f[:, x1] * b1  # uint8 × float64: exact products
        out[i] = np.rint(across[r0] * a0 + across[r1] * a1)
    return out
