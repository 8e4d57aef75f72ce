"""The uint8 scaler of the clip cache and DPC's frames: torch's bilinear interpolation, rounded
the same way on every machine."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from dimcollapse.data.uint8_scale import linear_taps, scale_uint8


def _exact(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """The interpolation with PyTorch's float32 weights, in exact rational arithmetic, rounded
    half to even: what every machine must give."""
    y0, y1, a0, a1 = linear_taps(frames.shape[1], height)
    x0, x1, b0, b1 = linear_taps(frames.shape[2], width)
    a0, a1, b0, b1 = ([Fraction(float(w)) for w in v] for v in (a0, a1, b0, b1))
    out = np.empty((frames.shape[0], height, width, frames.shape[3]), np.uint8)
    for k, i, j, c in np.ndindex(out.shape):
        f = frames[k, :, :, c]
        row0 = b0[j] * int(f[y0[i], x0[j]]) + b1[j] * int(f[y0[i], x1[j]])
        row1 = b0[j] * int(f[y1[i], x0[j]]) + b1[j] * int(f[y1[i], x1[j]])
        out[k, i, j, c] = round(a0[i] * row0 + a1[i] * row1)  # Python rounds half to even
    return out


def test_equals_exact_arithmetic_with_torchs_weights() -> None:
    g = np.random.default_rng(0)
    for (h, w), (nh, nw) in [((12, 16), (6, 9)), ((9, 7), (16, 13)), ((10, 15), (10, 7))]:
        frames = g.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        assert np.array_equal(scale_uint8(frames, nh, nw), _exact(frames, nh, nw)), (h, w, nh, nw)
    # exact ties (halving a width of 2: weights 1/2, 1/2) round half to even: 0.5 → 0, 1.5 → 2, 2.5 → 2
    pairs = np.array([[[[0, 1, 2], [1, 2, 3]]]], np.uint8)  # 1 frame, 1×2 pixels, 3 channels
    assert scale_uint8(pairs, 1, 1).ravel().tolist() == [0, 2, 2]


def test_is_torchs_bilinear_interpolation_rounded() -> None:
    """Same source coordinates and weights as ``interpolate(mode="bilinear",
    align_corners=False)``: within rounding of torch's float32 result everywhere."""
    g = np.random.default_rng(1)
    for (h, w), (nh, nw) in [((120, 160), (146, 194)), ((144, 176), (128, 156)), ((576, 768), (256, 341))]:
        frames = g.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        y = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        y = y.permute(0, 2, 3, 1).numpy()
        ours = scale_uint8(frames, nh, nw)
        assert ours.shape == (2, nh, nw, 3)
        assert np.abs(ours - y).max() <= 0.5 + 1e-3
        assert (ours != np.rint(y)).mean() < 1e-4  # only where torch's float32 result sat on a .5
