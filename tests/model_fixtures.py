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
