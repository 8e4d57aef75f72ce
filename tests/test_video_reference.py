"""load_clip("paper") against the paper's own pipeline (PyTorchVideo EncodedVideo + transforms)."""

from pathlib import Path

import pytest
import torch

from dimcollapse.data.video import load_clip
from pytorchvideo_reference import pytorchvideo_clip

VIDEOS = Path("/work/shared/testdata/videos")

CASES = [
    # B-frames, pts starting at 1; last clip runs past the end (short)
    ("Megamind.avi", 0.0), ("Megamind.avi", 3.3), ("Megamind.avi", 5.0), ("Megamind.avi", 9.5),
    # seeks land after the target (keyframes indexed by decode time); 3.32 s is pts 100
    ("Megamind_bugy.avi", 1.2), ("Megamind_bugy.avi", 3.32),
    # header says 444 frames, 68 decode, irregular timestamps: fewer than 8 frames per window
    ("tree.avi", 0.0), ("tree.avi", 14.7), ("tree.avi", 27.0),
    # 25 s GOPs, 768x576
    ("vtest.avi", 20.0), ("vtest.avi", 40.05), ("vtest.avi", 77.0),
]


@pytest.mark.parametrize(("name", "start"), CASES)
def test_paper_clip_equals_pytorchvideo(name: str, start: float) -> None:
    ours = load_clip(VIDEOS / name, start)
    ref = pytorchvideo_clip(VIDEOS / name, start)
    assert ours.shape == ref.shape == (3, 8, 224, 224)
    assert ours.dtype == torch.float32
    assert (ours - ref).abs().max().item() <= 1e-5


def test_overridden_frames_and_rate_equal_pytorchvideo() -> None:
    ours = load_clip(VIDEOS / "Megamind.avi", 2.0, frames=16, rate=4)
    ref = pytorchvideo_clip(VIDEOS / "Megamind.avi", 2.0, frames=16, rate=4)
    assert ours.shape == ref.shape == (3, 16, 224, 224)
    assert (ours - ref).abs().max().item() <= 1e-5


def test_reference_refuses_protocols_it_does_not_cover() -> None:
    with pytest.raises(ValueError, match="single-view"):
        pytorchvideo_clip(VIDEOS / "vtest.avi", 0.0, "slowfast_test")
