"""Dense Predictive Coding (Han et al. 2019): the 256-d context of DPC's linear-eval model.

The paper's appendix feeds DPC's ``eval/model_3d_lc.py::LC`` a pretrained DPC
checkpoint and keeps its ``context`` output. This module implements exactly that path,
under the original module names (``backbone.layer3.0.conv1``, ``agg.cell_list.0.reset_gate``,
``final_bn``) so DPC state dicts load after stripping DataParallel's ``module.``:

* backbone R-2D3D (``backbone/resnet_2d3d.py``): conv1 3→64, kernel (1,7,7), stride (1,2,2),
  padding (0,3,3), no bias → BN → ReLU → MaxPool3d (1,3,3)/(1,2,2)/(0,1,1); layer1 and
  layer2 are 2D basic blocks (convs 1×3×3, padding (0,1,1), stride (1,s,s)), layer3 and
  layer4 are 3D basic blocks (3×3×3, padding 1, stride s in T, H and W); widths
  64/128/256/256 (layer4 is cut to 256); strides 1/2/2/2; a 1×1×1 conv + BN shortcut
  where the shape changes; blocks [2,2,2,2] (R18) or [3,4,6,3] (R34). Every block ends
  with a ReLU after the residual sum except the very last block of layer4;
* LC: ReLU on the backbone output → average over time with kernel ⌈seq_len/4⌉ (the
  whole remaining temporal extent) → one-layer ConvGRU with 1×1 convs over the N blocks,
  starting from a zero hidden state → last hidden state → spatial average → ``final_bn``
  (BatchNorm1d(256), freshly initialised because the DPC checkpoint has none, so in eval
  mode it divides by sqrt(1 + 1e-5)) → context, B×256.

ConvGRU step (``backbone/convrnn.py``): with ``z = [x, h]`` along channels,
``u = σ(update_gate(z))``, ``r = σ(reset_gate(z))``, ``o = tanh(out_gate([x, h·r]))``,
``h' = h·(1 − u) + o·u``. The GRU's dropout is inactive in eval mode. DPC creates the
zero hidden state with ``.cuda()``; here it follows the input's device and dtype.

BatchNorm statistics: DPC pretraining builds its backbone with
``track_running_stats=False``, i.e. every BN normalises with the statistics of the
current batch, in training and in evaluation alike, and such checkpoints (all R18 ones
and the first R34 upload) hold no running statistics. Only the re-uploaded R34
"runningStats" file has them. ``batch_stats=True`` rebuilds the backbone the way DPC
trained it (batch statistics over the B·N blocks of a forward call, so a clip's feature
depends on the other clips in its batch); ``batch_stats=False`` uses running statistics
as the LC model does. See :func:`dimcollapse.models.build_model` for how the choice is
made from the checkpoint.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ARCH_BLOCKS: dict[str, tuple[int, int, int, int]] = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
FEATURE_DIM = 256
#: The published checkpoints were trained at these input sizes.
DEFAULT_SAMPLE_SIZE: dict[str, int] = {"resnet18": 128, "resnet34": 224}


class _BasicBlock(nn.Module):
    """DPC ``BasicBlock2d`` (``three_d=False``) or ``BasicBlock3d`` (``three_d=True``)."""

    def __init__(
        self, inplanes: int, planes: int, stride: int, three_d: bool, final_relu: bool, track_running_stats: bool
    ) -> None:
        super().__init__()
        self.final_relu = final_relu
        if three_d:
            kernel, conv_stride, padding = (3, 3, 3), (stride, stride, stride), (1, 1, 1)
        else:
            kernel, conv_stride, padding = (1, 3, 3), (1, stride, stride), (0, 1, 1)
        self.conv1 = nn.Conv3d(inplanes, planes, kernel, stride=conv_stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm3d(planes, track_running_stats=track_running_stats)
        self.conv2 = nn.Conv3d(planes, planes, kernel, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm3d(planes, track_running_stats=track_running_stats)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=conv_stride, bias=False),
                nn.BatchNorm3d(planes, track_running_stats=track_running_stats),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.final_relu else out


class ResNet2d3d(nn.Module):
    """DPC's ``ResNet2d3d_full`` with basic blocks (R18/R34): B×3×SL×H×W → B×256×⌈SL/4⌉×⌈H/32⌉×⌈W/32⌉."""

    # registered by name in __init__ (``add_module``), as DPC's checkpoints name them
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, arch: str, track_running_stats: bool = True) -> None:
        super().__init__()
        blocks = ARCH_BLOCKS[arch]
        self.conv1 = nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64, track_running_stats=track_running_stats)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        inplanes = 64
        for index, (planes, stride, depth) in enumerate(zip((64, 128, 256, 256), (1, 2, 2, 2), blocks)):
            three_d = index >= 2
            last_layer = index == 3
            layer = [
                _BasicBlock(
                    inplanes if i == 0 else planes,
                    planes,
                    stride if i == 0 else 1,
                    three_d,
                    final_relu=not (last_layer and i == depth - 1),
                    track_running_stats=track_running_stats,
                )
                for i in range(depth)
            ]
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
            inplanes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ConvGRUCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        padding = kernel_size // 2
        self.reset_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.update_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.out_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        combined = torch.cat([x, hidden], dim=1)
        update = torch.sigmoid(self.update_gate(combined))
        reset = torch.sigmoid(self.reset_gate(combined))
        out = torch.tanh(self.out_gate(torch.cat([x, hidden * reset], dim=1)))
        return hidden * (1 - update) + out * update


class ConvGRU(nn.Module):
    """One-layer ConvGRU as used by LC (``num_layers=1``, ``kernel_size=1``).

    DPC registers the cell twice (``ConvGRUCell_00`` and ``cell_list.0``); only
    ``cell_list.0`` is registered here, the loader folds the duplicate.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.hidden_size = size
        self.cell_list = nn.ModuleList([ConvGRUCell(size, size, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×N×C×H×W → last hidden state B×C×H×W."""
        cell = self.cell_list[0]
        hidden = x.new_zeros((x.shape[0], self.hidden_size, *x.shape[3:]))
        for t in range(x.shape[1]):
            hidden = cell(x[:, t], hidden)
        return hidden


class DPCContext(nn.Module):
    """DPC's linear-eval model (``LC``) up to its 256-d ``context`` (see module docstring)."""

    def __init__(
        self,
        arch: str = "resnet34",
        sample_size: int = 224,
        num_seq: int = 5,
        seq_len: int = 5,
        batch_stats: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCH_BLOCKS:
            raise ValueError(f"DPC arch must be one of {sorted(ARCH_BLOCKS)}, got {arch!r}")
        for name, value in (("sample_size", sample_size), ("num_seq", num_seq), ("seq_len", seq_len)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DPC {name} must be a positive integer, got {value!r}")
        self.arch = arch
        self.sample_size = sample_size
        self.num_seq = num_seq
        self.seq_len = seq_len
        self.batch_stats = batch_stats
        self.last_duration = math.ceil(seq_len / 4)
        self.last_size = math.ceil(sample_size / 32)
        self.backbone = ResNet2d3d(arch, track_running_stats=not batch_stats)
        self.agg = ConvGRU(FEATURE_DIM)
        self.final_bn = nn.BatchNorm1d(FEATURE_DIM)

    @property
    def expected_input_shape(self) -> tuple[int, ...]:
        return (self.num_seq, 3, self.seq_len, self.sample_size, self.sample_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 6 or tuple(x.shape[1:]) != self.expected_input_shape:
            n, sl, s = self.num_seq, self.seq_len, self.sample_size
            raise ValueError(
                f"DPC expects input B×{n}×3×{sl}×{s}×{s} (batch, num_seq blocks, RGB, seq_len frames, height, width), "
                f"got {tuple(x.shape)}; rebuild the model with matching num_seq/seq_len/sample_size options"
            )
        b, n = x.shape[:2]
        feature = self.backbone(x.reshape(b * n, *x.shape[2:]))
        feature = F.avg_pool3d(F.relu(feature), (self.last_duration, 1, 1), stride=1)
        feature = feature.reshape(b, n, FEATURE_DIM, self.last_size, self.last_size)
        hidden = self.agg(feature).unsqueeze(1)  # LC pools the B×1×256×s×s tensor with a (1, s, s) kernel
        context = F.avg_pool3d(hidden, (1, self.last_size, self.last_size), stride=1).flatten(1)
        return {"representation": self.final_bn(context)}
