"""Architectures of the ``torchvision`` and ``pytorchvideo`` methods, as static facts.

One :class:`ArchInfo` per video classifier: the library function that builds it, the
name of its final classification layer (whose input is the ``representation``), how its
intermediate outputs are laid out (so that layer features are averaged over the right
dimensions), its official Kinetics-400 weights and the input its model card states,
as a sampling protocol: a preset of :mod:`dimcollapse.data.protocols` plus overrides.

This module imports neither torch nor the libraries, so the workflow can resolve
protocols and feature spaces while parsing.

Model-card facts used for the protocols (``frames`` × ``rate`` at ``target_fps``):

* torchvision (``torchvision.models.video.*_Weights.KINETICS400_V1``): r3d_18, mc3_18,
  r2plus1d_18 take 16 consecutive frames at 15 fps, resized to 128×171 and centre-cropped
  to 112, normalised with torchvision's video mean/std; s3d takes 128 frames at 15 fps,
  resized to 256, crop 224, same mean/std; mvit_v1_b / mvit_v2_s 16 frames at 7.5 fps,
  short side 256, crop 224, mean 0.45 std 0.225; swin3d_t/s/b 32 frames at 15 fps, short
  side 256, crop 224, ImageNet mean/std. (The 128×171 resize is a fixed size; the protocol
  scales the short side to 128, the same for 4:3 video.)
* PyTorchVideo (``docs/source/model_zoo.md``, the TorchHub tutorial and SlowFast's X3D test
  crops): frame length × sample rate at 30 fps; short side and crop 256 for the ResNets
  and SlowFast, 182 for X3D-XS/S, 256 for X3D-M, 356 for X3D-L; 224 crops from a 256 short
  side for MViT-B; mean 0.45, std 0.225.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: How a module's output is laid out, which decides the dimensions a layer feature averages:
#: ``conv``: B×C×(T×H×W…) channels first; ``tokens``: B×N×C token sequences (5-D outputs,
#: e.g. a patch-embedding convolution, are channels first); ``channels_last``: B×…×C.
Layout = Literal["conv", "tokens", "channels_last"]

TV_MEAN = (0.43216, 0.394666, 0.37645)
TV_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class ArchInfo:
    """Static facts about one architecture of a library family.

    ``builder``: ``"module:function"`` that builds the network (called with
    ``pretrained=False`` for PyTorchVideo hub functions). ``classifier``: the
    ``named_modules`` name of the final classification layer. ``class_token``: token
    sequences start with a class token, except in modules whose names start with one of
    ``no_class_token`` (they run before the token is prepended). ``alpha``: a two-pathway
    (SlowFast) model whose slow pathway sees ``T // alpha`` of the T input frames.
    ``size_kwargs``: builder keyword arguments that must be set from the clip
    (``frames``/``crop_size``), because the network has position embeddings of that size.
    ``fixed_input``: (frames, crop) that the builder hard-codes (the network accepts
    nothing else). ``protocol`` + ``protocol_overrides``: the model card's input.
    """

    family: Literal["torchvision", "pytorchvideo"]
    name: str
    builder: str
    classifier: str
    layout: Layout
    weights_url: str
    protocol: str
    protocol_overrides: Mapping[str, Any]
    class_token: bool = False
    no_class_token: tuple[str, ...] = ()
    alpha: int | None = None
    size_kwargs: Mapping[str, str] = field(default_factory=dict)
    fixed_input: tuple[int, int] | None = None

    @property
    def frames(self) -> int:
        return int(self.protocol_overrides["frames"])

    @property
    def crop_size(self) -> int:
        return int(self.protocol_overrides["crop_size"])


def _clip(frames: int, rate: int, fps: float, side: int, crop: int, mean: tuple, std: tuple) -> dict[str, Any]:
    return dict(frames=frames, rate=rate, target_fps=fps, side_size=side, crop_size=crop, mean=mean, std=std)


_TV = "https://download.pytorch.org/models/"
_PTV = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"


def _tv(name: str, classifier: str, layout: Layout, file: str, clip: dict[str, Any], **kw: Any) -> ArchInfo:
    return ArchInfo("torchvision", name, f"torchvision.models.video:{name}", classifier, layout, _TV + file,
                    "paper", MappingProxyType(clip), **kw)


def _ptv(name: str, classifier: str, file: str, clip: dict[str, Any], layout: Layout = "conv", **kw: Any) -> ArchInfo:
    return ArchInfo("pytorchvideo", name, f"pytorchvideo.models.hub:{name}", classifier, layout, _PTV + file,
                    "paper", MappingProxyType(clip), **kw)


_R18 = _clip(16, 1, 15.0, 128, 112, TV_MEAN, TV_STD)
_SWIN = _clip(32, 1, 15.0, 256, 224, IMAGENET_MEAN, IMAGENET_STD)
_MVIT_TV = _clip(16, 1, 7.5, 256, 224, KINETICS_MEAN, KINETICS_STD)


def _k(frames: int, rate: int, side: int = 256, crop: int = 256) -> dict[str, Any]:
    return _clip(frames, rate, 30.0, side, crop, KINETICS_MEAN, KINETICS_STD)


ARCHS: Mapping[str, Mapping[str, ArchInfo]] = MappingProxyType({
    "torchvision": MappingProxyType({
        "r3d_18": _tv("r3d_18", "fc", "conv", "r3d_18-b3b3357e.pth", _R18),
        "mc3_18": _tv("mc3_18", "fc", "conv", "mc3_18-a90a0ba3.pth", _R18),
        "r2plus1d_18": _tv("r2plus1d_18", "fc", "conv", "r2plus1d_18-91a641e6.pth", _R18),
        "s3d": _tv("s3d", "classifier.1", "conv", "s3d-d76dad2f.pth", _clip(128, 1, 15.0, 256, 224, TV_MEAN, TV_STD)),
        "mvit_v1_b": _tv("mvit_v1_b", "head.1", "tokens", "mvit_v1_b-dbeb1030.pth", _MVIT_TV,
                         class_token=True, fixed_input=(16, 224)),
        "mvit_v2_s": _tv("mvit_v2_s", "head.1", "tokens", "mvit_v2_s-ae3be167.pth", _MVIT_TV,
                         class_token=True, fixed_input=(16, 224)),
        "swin3d_t": _tv("swin3d_t", "head", "channels_last", "swin3d_t-7615ae03.pth", _SWIN),
        "swin3d_s": _tv("swin3d_s", "head", "channels_last", "swin3d_s-da41c237.pth", _SWIN),
        "swin3d_b": _tv("swin3d_b", "head", "channels_last", "swin3d_b_1k-24f7c7c6.pth", _SWIN),
    }),
    "pytorchvideo": MappingProxyType({
        "slow_r50": _ptv("slow_r50", "blocks.5.proj", "SLOW_8x8_R50.pyth", _k(8, 8)),
        "slowfast_r50": _ptv("slowfast_r50", "blocks.6.proj", "SLOWFAST_8x8_R50.pyth", _k(32, 2), alpha=4),
        "slowfast_r101": _ptv("slowfast_r101", "blocks.6.proj", "SLOWFAST_8x8_R101.pyth", _k(32, 2), alpha=4),
        "x3d_xs": _ptv("x3d_xs", "blocks.5.proj", "X3D_XS.pyth", _k(4, 12, 182, 182)),
        "x3d_s": _ptv("x3d_s", "blocks.5.proj", "X3D_S.pyth", _k(13, 6, 182, 182)),
        "x3d_m": _ptv("x3d_m", "blocks.5.proj", "X3D_M.pyth", _k(16, 5, 256, 256)),
        "x3d_l": _ptv("x3d_l", "blocks.5.proj", "X3D_L.pyth", _k(16, 5, 356, 356)),
        "i3d_r50": _ptv("i3d_r50", "blocks.6.proj", "I3D_8x8_R50.pyth", _k(8, 8)),
        "c2d_r50": _ptv("c2d_r50", "blocks.6.proj", "C2D_8x8_R50.pyth", _k(8, 8)),
        "csn_r101": _ptv("csn_r101", "blocks.5.proj", "CSN_32x2_R101.pyth", _k(32, 2)),
        "r2plus1d_r50": _ptv("r2plus1d_r50", "blocks.5.proj", "R2PLUS1D_16x4_R50.pyth", _k(16, 4)),
        "mvit_base_16x4": _ptv("mvit_base_16x4", "head.proj", "MVIT_B_16x4.pyth", _k(16, 4, 256, 224), "tokens",
                               class_token=True, no_class_token=("patch_embed",),
                               size_kwargs=MappingProxyType({"temporal_size": "frames", "spatial_size": "crop_size"})),
    }),
})


def arch_info(family: str, arch: Any) -> ArchInfo:
    """The :class:`ArchInfo` of ``arch`` in a library family; ValueError lists the valid names."""
    table = ARCHS[family]
    if arch not in table:
        given = "no arch option" if arch is None else f"arch {arch!r}"
        raise ValueError(f"method {family}: {given}; valid archs: {', '.join(table)}")
    return table[arch]
