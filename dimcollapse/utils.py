"""Small utilities of the workflow's start that need nothing else of ours.

They run in every Snakemake process (each run, dry run and Slurm job parses the workflow),
so this module imports no package module and no third-party library.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def nvidia_gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible here, from the driver's /proc entries.

    A cheap stand-in for ``torch.cuda.is_available()`` when only a resource request
    depends on it; ``CUDA_VISIBLE_DEVICES=""`` (or ``-1``) hides the GPUs as CUDA does.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def stable_hash(obj: Any, length: int = 12) -> str:
    """Short SHA-256 of a JSON-serialisable object (key order independent)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
