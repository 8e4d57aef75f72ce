"""Every model family and kind the tool builds, at small sizes: what the GPU check runs on
CUDA against the CPU, and what a CPU test runs through CUDA's preparation.

One :class:`Spec` per row: the paper's Slow R50s (supervised, SimCLR, MoCo, SwAV, BYOL, BYOL
16×4), DPC R18 and R34, every ``torchvision`` and ``pytorchvideo`` architecture, every
supported ``transformers`` class (tiny random configurations: ``tests/hf_helpers.py``, the
ones the test suite uses, written as checkpoint folders), and ``custom`` (the demo's CNN,
plain and with its rank-2 bottleneck). Seeded random weights throughout.

The sizes only need to exercise the kernels and memory formats, not to be the published
ones (a CPU reference of every family at full size would take many minutes): clips of a
few frames of 32–64 px, except the two torchvision MViTs, whose builders accept 16×224 only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dimcollapse.models import ARCHS  # noqa: E402

#: ``torchvision``/``pytorchvideo`` archs: (frames, crop) small enough for a CPU, as the
#: library tests run them (tests/test_models_zoo.py); None: the arch's own fixed input.
LIBRARY_CLIPS: dict[str, tuple[int, int] | None] = {
    "r3d_18": (4, 32), "mc3_18": (4, 32), "r2plus1d_18": (4, 32), "s3d": (8, 32), "mvit_v1_b": None,
    "mvit_v2_s": None, "swin3d_t": (2, 32), "swin3d_s": (2, 32), "swin3d_b": (2, 32), "slow_r50": (2, 32),
    "slowfast_r50": (8, 32), "slowfast_r101": (8, 32), "x3d_xs": (4, 32), "x3d_s": (2, 32), "x3d_m": (2, 32),
    "x3d_l": (2, 32), "i3d_r50": (4, 32), "c2d_r50": (4, 32), "csn_r101": (2, 32), "r2plus1d_r50": (2, 32),
    "mvit_base_16x4": (4, 32),
}
#: Readable names of the transformers classes in the rows.
HF_LABELS = {"VJEPA2": "V-JEPA 2", "Timesformer": "TimeSformer", "Vivit": "ViViT", "VideoMAE": "VideoMAE",
             "Dinov2WithRegisters": "DINOv2+reg", "Dinov2": "DINOv2", "DINOv3ViT": "DINOv3", "Siglip": "SigLIP",
             "CLIP": "CLIP", "ViT": "ViT"}
DEMO_NET = "dimcollapse.models.demo_nets:demo_video_net"


@dataclass(frozen=True)
class Spec:
    """One model: how to build it (``build_model(method, seed=0, **options)``) and one clip's shape."""

    label: str
    method: str
    options: dict[str, Any]
    clip: tuple[int, ...]
    group: str = field(default="", compare=False)


def paper_models(crop: int = 224, dpc34: int = 224, dpc18: int = 128) -> list[Spec]:
    """The paper's models at their published input sizes (smaller ones for a CPU)."""

    def slow(label: str, method: str, frames: int = 8) -> Spec:
        return Spec(label, method, {"frames": frames, "crop_size": crop}, (3, frames, crop, crop), "paper")

    def dpc(arch: str, size: int) -> Spec:
        return Spec(f"DPC {arch.replace('resnet', 'R')}-{size}", "DPC", {"arch": arch, "sample_size": size},
                    (5, 3, 5, size, size), "paper")

    return [slow(f"supervised 8x{crop}", "supervised"), slow(f"SimCLR 8x{crop}", "SimCLR"),
            slow(f"MoCo 8x{crop}", "MoCo"), slow(f"SwAV 8x{crop}", "SwAV"), slow(f"BYOL 8x{crop}", "BYOL"),
            slow(f"BYOL 16x4 {crop}", "BYOL", frames=16), dpc("resnet34", dpc34), dpc("resnet18", dpc18)]


def library_models() -> list[Spec]:
    """Every torchvision and PyTorchVideo architecture, seeded."""
    specs = []
    for family, table in ARCHS.items():
        for arch, info in table.items():
            frames, crop = LIBRARY_CLIPS[arch] or (info.frames, info.crop_size)
            specs.append(Spec(f"{family} {arch} {frames}x{crop}", family,
                              {"arch": arch, "frames": frames, "crop_size": crop}, (3, frames, crop, crop), family))
    return specs


def transformers_models(root: Path, only: Sequence[str] = ()) -> list[Spec]:
    """Every supported transformers class as a tiny checkpoint folder under ``root`` (with
    ``only``: those whose label contains one of its strings)."""
    sys.path.insert(0, str(REPO / "tests"))
    from hf_helpers import FRAMES, SIZE, save_tiny

    from dimcollapse.models.hub import CLASSES

    specs = []
    for name in CLASSES:
        stem = next((v for k, v in HF_LABELS.items() if name.startswith(k)), name)
        label = f"{stem} ({name}) {FRAMES}x{SIZE}"
        if only and not any(o in label for o in only):
            continue
        folder = root / name
        if not (folder / "config.json").is_file():
            save_tiny(name, folder)
        specs.append(Spec(label, "transformers", {"checkpoint": str(folder), "frames": FRAMES, "crop_size": SIZE},
                          (3, FRAMES, SIZE, SIZE), "transformers"))
    return specs


def custom_models(crop: int = 64) -> list[Spec]:
    """``custom``: the demo's CNN, plain and with its rank-2 bottleneck."""
    return [Spec(f"custom demo CNN{' rank-2' if b else ''} 8x{crop}", "custom",
                 {"builder": DEMO_NET, "builder_options": {"width": 64, **({"bottleneck": b} if b else {})},
                  "frames": 8, "crop_size": crop}, (3, 8, crop, crop), "custom")
            for b in (None, 2)]


def every_family(root: Path, only: Sequence[str] = ()) -> list[Spec]:
    """Every row, small: the paper's models at 32 px (DPC R18 and R34 too), the library archs,
    the transformers classes (checkpoints written under ``root``), custom; with ``only``, the
    rows whose label contains one of its strings."""
    specs = [*paper_models(32, 32, 32), *library_models(), *transformers_models(root, only), *custom_models()]
    return [s for s in specs if not only or any(o in s.label for o in only)]
