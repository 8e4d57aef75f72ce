"""Every model of the paper, built from its original checkpoint format, and any other video model.

Public API::

    build_model(method, checkpoint=None, config=None, **options) -> torch.nn.Module
    METHODS: Mapping[str, MethodInfo]      # canonical name -> static facts
    ARCHS: family -> arch -> ArchInfo      # torchvision / pytorchvideo architectures
    canonical_method(name) -> str          # case-insensitive, ValueError lists valid names
    module_names(method, options) -> names # what the ``layers`` option accepts
    CheckpointError                        # every checkpoint/config loading failure

Modules: :mod:`.registry` (method table), :mod:`.archs` (library architectures and their
model-card protocols), :mod:`.slow_r50` (Slow R50 backbone, the PyTorchVideo head and
the SlowFast contrastive head), :mod:`.dpc` (DPC R-2D3D + ConvGRU linear-eval context),
:mod:`.checkpoints` (reading the paper's on-disk formats), :mod:`.zoo` (torchvision,
PyTorchVideo and custom networks and their checkpoints), :mod:`.hub` (Hugging Face
checkpoint folders and ``hf://`` ids, torch-free facts per transformers class), :mod:`.hf`
(the ``transformers`` family's network and features), :mod:`.hooks` (representation
and layer features read with hooks), :mod:`.time_axes` and :mod:`.time_resolved` (which
spaces keep a time axis, and reading them), :mod:`.build` (``build_model``), :mod:`.layers`
(the layer names a model offers).

The method and arch tables are imported eagerly; everything that needs torch is imported on first
use, so the Snakefile (which reads only the table) parses without loading torch — a
second or more on every Snakemake start, and Slurm jobs start Snakemake twice.
"""

import importlib
from typing import Any

from dimcollapse.models.archs import ARCHS, ArchInfo, arch_info
from dimcollapse.models.registry import METHODS, PAPER_METHODS, HeadSpec, MethodInfo, canonical_method

_LAZY = {
    "BN_STATS_CHOICES": "build",
    "BatchStatisticsWarning": "build",
    "build_model": "build",
    "module_names": "layers",
    "CheckpointError": "checkpoints",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"dimcollapse.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dimcollapse.models' has no attribute {name!r}")


__all__ = [
    "ARCHS",
    "BN_STATS_CHOICES",
    "METHODS",
    "PAPER_METHODS",
    "ArchInfo",
    "BatchStatisticsWarning",
    "CheckpointError",
    "HeadSpec",
    "MethodInfo",
    "arch_info",
    "build_model",
    "canonical_method",
    "module_names",
]
