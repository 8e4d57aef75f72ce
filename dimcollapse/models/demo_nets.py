"""A small video network for the demo, with an optional low-rank bottleneck.

The demo runs every method with untrained weights, and untrained backbones all give the
same sampling-limited spectrum, so on its own the demo cannot show what collapse looks
like. ``demo_video_net(bottleneck=r)`` is the contrast the tool must visibly detect: the
same network whose pooled representation is squeezed through an ``r``-dimensional linear
map (``width → r → width``) before the classifier. Every representation row then lies in
an ``r``-dimensional subspace, so the covariance has exactly ``r`` non-zero eigenvalues
(a cliff at index ``r``, far before the N ≤ D floor) and RankMe is at most ``r``.

Config (``method: custom``)::

    options: {builder: "dimcollapse.models.demo_nets:demo_video_net",
              builder_options: {width: 64, bottleneck: 2}}

The representation ``method: custom`` reads is the classifier's input, i.e. the
bottleneck's output.

``demo_frame_net`` is the demo's known zero for the temporal study: frame-wise 2D
convolutions (3D kernels of temporal size 1, no temporal stride) and then a mean over time
and space, so its representation is the same for every order of a clip's frames by
construction (up to the rounding of a sum in another order), where the 3D CNN mixes
neighbouring frames and changes with their order::

    options: {builder: "dimcollapse.models.demo_nets:demo_frame_net", builder_options: {width: 64}}
"""

from __future__ import annotations

import torch
from torch import nn


class DemoVideoNet(nn.Module):
    """Conv3d stem and two stages, global average pool, optional bottleneck, linear classifier.

    Cheap on CPU at the demo's 8 × 128 × 128 clips (a few MFLOP per clip), so it adds
    seconds, not minutes, to the demo.
    """

    def __init__(self, width: int = 64, bottleneck: int | None = None, classes: int = 5) -> None:
        super().__init__()
        if bottleneck is not None and not 0 < bottleneck < width:
            raise ValueError(f"bottleneck must be between 1 and width - 1 = {width - 1}, got {bottleneck}")
        self.stem = nn.Sequential(
            nn.Conv3d(3, width // 4, (1, 7, 7), stride=(1, 4, 4), padding=(0, 3, 3)), nn.ReLU()
        )
        self.stage1 = nn.Sequential(nn.Conv3d(width // 4, width // 2, 3, stride=2, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv3d(width // 2, width, 3, stride=2, padding=1), nn.ReLU())
        # Registered before the classifier, so the classifier stays the last nn.Linear (the
        # default `classifier` option of method custom).
        self.bottleneck: nn.Module = (
            nn.Sequential(nn.Linear(width, bottleneck, bias=False), nn.Linear(bottleneck, width, bias=False))
            if bottleneck is not None
            else nn.Identity()
        )
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.stage2(self.stage1(self.stem(x))).mean(dim=(2, 3, 4))
        return self.classifier(self.bottleneck(pooled))


def demo_video_net(width: int = 64, bottleneck: int | None = None, classes: int = 5) -> nn.Module:
    """Builder for ``options.builder: "dimcollapse.models.demo_nets:demo_video_net"``."""
    return DemoVideoNet(width, bottleneck, classes)


class DemoFrameNet(nn.Module):
    """:class:`DemoVideoNet`'s stem and stages with every kernel and stride of temporal size
    1 (each frame alone, as a 2D CNN), then the mean over frames and positions: order-blind."""

    def __init__(self, width: int = 64, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, width // 4, (1, 7, 7), stride=(1, 4, 4), padding=(0, 3, 3)), nn.ReLU()
        )
        self.stage1 = nn.Sequential(nn.Conv3d(width // 4, width // 2, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                    nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv3d(width // 2, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                                    nn.ReLU())
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stage2(self.stage1(self.stem(x))).mean(dim=(2, 3, 4)))


def demo_frame_net(width: int = 64, classes: int = 5) -> nn.Module:
    """Builder for ``options.builder: "dimcollapse.models.demo_nets:demo_frame_net"``."""
    return DemoFrameNet(width, classes)
