"""The transformers rows of the benchmarks: the README table's measurements and gpu_check's rows, on CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """A benchmark script as a module (``benchmarks`` is not a package), as test_benchmarks_smoke loads them."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


table = _load("transformers_models")
gpu = _load("gpu_check")


def test_the_table_measures_the_published_videomae_base(tmp_path: Path) -> None:
    videomae = next(m for m in table.PUBLISHED if m.hub_id == "MCG-NJU/videomae-base")
    facts = table.measure(videomae, tmp_path)
    assert facts.dim == 768 and 90e6 < facts.parameters < 100e6  # ViT-B encoder + the small decoder
    assert (facts.clip["frames"], facts.clip["side_size"], facts.clip["crop_size"]) == (16, 224, 224)
    line = table.table([facts])[2]
    assert "`VideoMAEForPreTraining` | 768 | 16 × 4, 224 → 224" in line and "94.2 M" in line


def test_gpu_check_times_the_transformers_rows_on_cpu(tmp_path: Path) -> None:
    specs = gpu.transformers_specs(tmp_path, quick=True)
    assert [s.label for s in specs] == ["VideoMAE-B 4x32", "V-JEPA 2 ViT-L 4x32"]
    assert all(s.method == "transformers" and s.clip == (3, 4, 32, 32) for s in specs)
    row = gpu.check_model(specs[1], 2, torch.device("cpu"), gpu.parse_args(["--device", "cpu", "--quick"]))
    assert row.error == "" and all(m.clips_per_s > 0 for m in row.results.values())
