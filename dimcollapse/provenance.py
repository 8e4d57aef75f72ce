"""Provenance: what code, packages, configuration and machine produced the results.

``results/provenance.json`` is written once per run by its own rule; every feature
sidecar embeds the package versions and refers to that file, so a number in a table can
be traced back to a commit, a configuration hash and the software that computed it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dimcollapse.utils import stable_hash

PACKAGES = (
    "dimcollapse", "torch", "torchvision", "pytorchvideo", "av", "numpy", "scipy", "snakemake",
    "transformers", "huggingface_hub", "safetensors",  # method transformers: loading and its key renaming
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers (``python`` included)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: str | Path) -> str:
    """Commit of the workflow's repository (with ``-dirty`` if modified), or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def device_description() -> str:
    """The accelerator a job would use, e.g. ``cuda: NVIDIA H100`` or ``cpu: x86_64``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.machine()} ({platform.processor() or 'unknown'})"


def provenance(config: Mapping[str, Any], repo: str | Path) -> dict[str, Any]:
    """The record written to ``results/provenance.json``."""
    return {
        "git_commit": git_commit(repo),
        "versions": package_versions(),
        "config_hash": stable_hash(config, length=16),
        "host": socket.gethostname(),
        "device": device_description(),
        "command": " ".join(sys.argv),
    }
