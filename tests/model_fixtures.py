"""Random weights for model tests that keep activations O(1) (REFERENCE §8)."""

import math

import torch
from torch import nn


def randomize_(model: nn.Module, seed: int) -> None:
    """Scaled He-normal weights, small biases, non-trivial BatchNorm affine and statistics.

    Unlike the package's own ``seeded_init_`` (fresh BN), every BN parameter and running
    statistic is random too, so a loader that drops or swaps any of them changes outputs.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                m.weight.normal_(0.0, 0.7 * math.sqrt(2.0 / m.weight[0].numel()), generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                if m.running_mean is not None:
                    m.running_mean.normal_(0.0, 0.1, generator=g)
                    m.running_var.uniform_(0.5, 1.5, generator=g)


class TinyVideoNet(nn.Module):
    """A user's own model for ``method: custom`` tests: conv stem, two stages, linear classifier."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(width), nn.ReLU())
        self.stage1 = nn.Conv3d(width, 2 * width, 3, stride=2, padding=1)
        self.stage2 = nn.Conv3d(2 * width, 4 * width, 3, stride=2, padding=1)
        self.classifier = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stage2(torch.relu(self.stage1(self.stem(x)))))
        return self.classifier(x.mean(dim=(2, 3, 4)))


def tiny_video_net(width: int = 8, classes: int = 5) -> nn.Module:
    """Builder function in the ``package.module:function`` form that ``builder:`` names."""
    return TinyVideoNet(width, classes)


def not_a_module() -> str:
    return "not a model"
