"""Slow-only ResNet-50 ("Slow R50") and the two heads the paper reads features from.

One backbone serves all five Slow R50 models of the paper. SlowFast's ``ResNet`` with
``MODEL.ARCH: slow`` and PyTorchVideo's ``create_resnet`` (as used by ``slow_r50``) build
the same network, so it is implemented once here, with SlowFast's module names
(``s1.pathway0_stem.conv``, ``s{2..5}.pathway0_res{i}.branch2.a`` …) so that SlowFast
state dicts load without renaming; PyTorchVideo keys are mapped in
:mod:`dimcollapse.models.checkpoints`.

Architecture facts (both original code bases, depth 50):

* stem: Conv3d 3→64, kernel (1,7,7), stride (1,2,2), padding (0,3,3), no bias → BN → ReLU
  → MaxPool3d kernel (1,3,3), stride (1,2,2), padding (0,1,1);
* stages s2..s5 with 3/4/6/3 bottleneck blocks, widths 64/128/256/512 inside and
  256/512/1024/2048 out; the first conv ``a`` has temporal kernel 1 in s2/s3 and 3 in
  s4/s5 (padding 1 in time); the spatial stride (1 in s2, 2 in s3..s5) sits in the 3×3
  conv ``b`` (SlowFast ``STRIDE_1X1: False``, PyTorchVideo ``conv_b_stride``); the first
  block of each stage has a 1×1×1 projection shortcut ``branch1`` with the same stride;
* every BN is ``BatchNorm3d`` with eps 1e-5 and momentum 0.1; ReLU after ``a`` and ``b``
  and after the residual sum, none after ``c``;
* SlowFast's ``pathway0_pool`` after s2 is a MaxPool3d of kernel 1 for ``slow`` (an
  identity) and is therefore omitted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dimcollapse.models.registry import HeadSpec

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
STAGE_DEPTHS = (3, 4, 6, 3)
STAGE_TEMPORAL_KERNELS = (1, 1, 3, 3)
STAGE_SPATIAL_STRIDES = (1, 2, 2, 2)
FEATURE_DIM = 2048
#: PyTorchVideo's head pool kernel for ``slow_r50`` (T, H, W).
PTV_HEAD_POOL_KERNEL = (8, 7, 7)


def _bn3d(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class _Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn = _bn3d(64)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(F.relu(self.bn(self.conv(x))))


class _BottleneckTransform(nn.Module):
    """SlowFast ``BottleneckTransform``: T×1×1 → 1×3×3 (strided) → 1×1×1."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Conv3d(
            dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False
        )
        self.a_bn = _bn3d(dim_inner)
        self.b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.b_bn = _bn3d(dim_inner)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = _bn3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a_bn(self.a(x)))
        x = F.relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class _ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int) -> None:
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = _bn3d(dim_out)
        self.branch2 = _BottleneckTransform(dim_in, dim_inner, dim_out, temporal_kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return F.relu(shortcut + self.branch2(x))


class SlowR50Trunk(nn.Module):
    """Stem and the four residual stages: B×3×T×H×W → B×2048×T×⌈H/32⌉×⌈W/32⌉."""

    def __init__(self) -> None:
        super().__init__()
        self.s1 = nn.ModuleDict({"pathway0_stem": _Stem()})
        dim_in = 64
        for stage, (depth, t_kernel, stride) in enumerate(
            zip(STAGE_DEPTHS, STAGE_TEMPORAL_KERNELS, STAGE_SPATIAL_STRIDES), start=2
        ):
            dim_inner = 64 * 2 ** (stage - 2)
            dim_out = 4 * dim_inner
            blocks = {}
            for i in range(depth):
                blocks[f"pathway0_res{i}"] = _ResBlock(
                    dim_in if i == 0 else dim_out, dim_inner, dim_out, t_kernel, stride if i == 0 else 1
                )
            self.add_module(f"s{stage}", nn.ModuleDict(blocks))
            dim_in = dim_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s1["pathway0_stem"](x)
        for stage in ("s2", "s3", "s4", "s5"):
            for block in getattr(self, stage).values():
                x = block(x)
        return x


def final_spatial_size(crop_size: int) -> int:
    """Spatial size of the s5 output for a square input of side ``crop_size``.

    Each of the five stride-2 layers (stem conv, stem max-pool, the ``b`` convs of
    s3..s5) maps a size ``s`` to ``(s - 1) // 2 + 1``.
    """
    size = crop_size
    for _ in range(5):
        size = (size - 1) // 2 + 1
    return size


def check_clip(x: torch.Tensor, frames: int, crop_size: int, model: str) -> None:
    """Raise ValueError unless ``x`` is B×3×frames×crop×crop."""
    if x.ndim != 5 or x.shape[1] != 3 or tuple(x.shape[2:]) != (frames, crop_size, crop_size):
        raise ValueError(
            f"{model} expects input B×3×{frames}×{crop_size}×{crop_size} (batch, RGB, frames, height, width), "
            f"got {tuple(x.shape)}; rebuild the model with matching frames/crop_size options"
        )


class SlowR50Supervised(nn.Module):
    """PyTorchVideo ``slow_r50`` with the classifier replaced by identity (the paper's baseline).

    PyTorchVideo's head is AvgPool3d(kernel (8,7,7), stride 1) → dropout → proj →
    AdaptiveAvgPool3d(1). With ``proj = Identity`` and dropout inactive in eval mode this
    is the pool followed by a global average. For the paper's 8-frame 224 clips the s5
    map is 8×7×7, so the pool is already global and the result equals ``slow_r50`` with
    ``blocks[-1].proj = Identity`` exactly. Where the s5 map is smaller than the kernel
    (the CPU demo's 128 crop gives 4×4; clips shorter than 8 frames) the original raises;
    there the kernel shrinks to the map, which keeps its meaning, a global average.
    Where the map is larger (the 256 "official" test crop gives 8×8; 16-frame clips) the
    original kernel is kept, so the output stays what the original model computes (an
    average over the overlapping windows, which weights the border less).
    """

    def __init__(self, frames: int = 8, crop_size: int = 224) -> None:
        super().__init__()
        self.frames = frames
        self.crop_size = crop_size
        spatial = final_spatial_size(crop_size)
        kernel_t, kernel_h, kernel_w = PTV_HEAD_POOL_KERNEL
        self.backbone = SlowR50Trunk()
        self.head_pool_kernel = (min(kernel_t, frames), min(kernel_h, spatial), min(kernel_w, spatial))
        self.head_pool = nn.AvgPool3d(self.head_pool_kernel, stride=1)

    @property
    def expected_input_shape(self) -> tuple[int, ...]:
        return (3, self.frames, self.crop_size, self.crop_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_clip(x, self.frames, self.crop_size, "supervised Slow R50")
        pooled = self.head_pool(self.backbone(x))
        return {"representation": pooled.mean(dim=(2, 3, 4))}


class MLPProjection(nn.Module):
    """SlowFast ``MLPHead``: its layers live in ``self.projection`` (an ``nn.Sequential``).

    Layer ``i`` is Linear, then, between layers, [BatchNorm1d] + ReLU. A Linear has a
    bias only when the head has no BN, except the last one, which always has a bias.
    Indices in the Sequential therefore are 0, 2, 4 without BN (3 layers) and
    0, (1 BN), 3, (4 BN), 6 with BN.
    """

    def __init__(self, dim_in: int, spec: HeadSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(dim_in, spec.mlp_dim, bias=not spec.bn)]
        for i in range(1, spec.num_layers):
            if spec.bn:
                layers.append(nn.BatchNorm1d(spec.mlp_dim))
            layers.append(nn.ReLU())
            last = i == spec.num_layers - 1
            layers.append(
                nn.Linear(spec.mlp_dim, spec.dim_out if last else spec.mlp_dim, bias=last or not spec.bn)
            )
        self.projection = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


class SSLHead(nn.Module):
    """SlowFast ``ResNetBasicHead`` as built for ``ContrastiveModel``, in eval mode.

    ``pathway0_avgpool`` is AdaptiveAvgPool3d(1) (SlowFast uses the adaptive pool for
    every ContrastiveModel), its output is the paper's representation. The projection
    is an ``MLPHead`` or, for ``NUM_MLP_LAYERS: 1``, a single Linear with bias.
    ``MODEL.HEAD_ACT: none`` and ``DROPOUT_RATE: 0`` in every contrastive_ssl config, and
    the BYOL predictor is not used by the eval-mode output, so neither is built.
    """

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        self.pathway0_avgpool = nn.AdaptiveAvgPool3d(1)
        self.projection: nn.Module
        if spec.num_layers == 1:
            self.projection = nn.Linear(FEATURE_DIM, spec.dim_out, bias=True)
        else:
            self.projection = MLPProjection(FEATURE_DIM, spec)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        representation = self.pathway0_avgpool(feature_map).flatten(1)
        return representation, self.projection(representation)


class SlowFastResNet(SlowR50Trunk):
    """SlowFast ``ResNet`` (ARCH ``slow``, depth 50) with its contrastive head."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.head = SSLHead(spec)

    # the trunk returns its feature map; the whole network returns (representation, embedding)
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.head(super().forward(x))


class SlowR50SSL(nn.Module):
    """The eval-mode output of SlowFast's ``ContrastiveModel`` plus the paper's hook.

    ``representation`` is the output of ``backbone.head.pathway0_avgpool`` (what the
    paper hooks). ``embedding`` is what ``ContrastiveModel.forward`` returns in eval mode
    with ``index=None``: SimCLR divides by the L2 norm (its ``Normalize`` module, no
    epsilon), SwAV uses ``F.normalize`` (epsilon 1e-12), MoCo and BYOL return the raw
    projection (for BYOL: the projector output, not the predictor). ``normalize_eps``
    selects between the two: 0 divides by the plain norm, 1e-12 clamps it like
    ``F.normalize``.
    """

    def __init__(
        self,
        method: str,
        spec: HeadSpec,
        normalize: bool,
        normalize_eps: float = 0.0,
        frames: int = 8,
        crop_size: int = 224,
    ) -> None:
        super().__init__()
        self.method = method
        self.normalize = normalize
        self.normalize_eps = normalize_eps
        self.frames = frames
        self.crop_size = crop_size
        self.backbone = SlowFastResNet(spec)

    @property
    def expected_input_shape(self) -> tuple[int, ...]:
        return (3, self.frames, self.crop_size, self.crop_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_clip(x, self.frames, self.crop_size, f"{self.method} Slow R50")
        representation, projection = self.backbone(x)
        if self.normalize and self.normalize_eps == 0:
            projection = projection / projection.pow(2).sum(dim=1, keepdim=True).pow(0.5)
        elif self.normalize:
            projection = F.normalize(projection, p=2, dim=1, eps=self.normalize_eps)
        return {"representation": representation, "embedding": projection}
