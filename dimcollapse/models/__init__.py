"""Every model of the paper, built from its original checkpoint format.

Public API::

    build_model(method, checkpoint=None, config=None, **options) -> torch.nn.Module
    METHODS: Mapping[str, MethodInfo]      # canonical name -> static facts
    canonical_method(name) -> str          # case-insensitive, ValueError lists valid names
    CheckpointError                        # every checkpoint/config loading failure

Modules: :mod:`.registry` (method table), :mod:`.slow_r50` (Slow R50 backbone, the
PyTorchVideo head and the SlowFast contrastive head), :mod:`.dpc` (DPC R-2D3D +
ConvGRU linear-eval context), :mod:`.checkpoints` (reading the three on-disk formats),
:mod:`.build` (``build_model``).
"""

from dimcollapse.models.build import BN_STATS_CHOICES, BatchStatisticsWarning, build_model
from dimcollapse.models.checkpoints import CheckpointError
from dimcollapse.models.registry import METHODS, HeadSpec, MethodInfo, canonical_method

__all__ = [
    "BN_STATS_CHOICES",
    "METHODS",
    "BatchStatisticsWarning",
    "CheckpointError",
    "HeadSpec",
    "MethodInfo",
    "build_model",
    "canonical_method",
]
