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

The method table is imported eagerly; everything that needs torch is imported on first
use, so the Snakefile (which reads only the table) parses without loading torch — a
second or more on every Snakemake start, and Slurm jobs start Snakemake twice.
"""

import importlib
from typing import Any

from dimcollapse.models.registry import METHODS, HeadSpec, MethodInfo, canonical_method

_LAZY = {
    "BN_STATS_CHOICES": "build",
    "BatchStatisticsWarning": "build",
    "build_model": "build",
    "CheckpointError": "checkpoints",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"dimcollapse.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dimcollapse.models' has no attribute {name!r}")


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
