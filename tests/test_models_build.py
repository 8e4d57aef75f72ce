"""build_model's contract: method table, options, seeded initialisation, unreadable files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from dimcollapse.models import METHODS, PAPER_METHODS, CheckpointError, MethodInfo, build_model, canonical_method

#: Parameter counts of the modules build_model returns. Supervised: PyTorchVideo slow_r50's
#: 32,454,096 minus its 400×2048 classifier; SSL: the same backbone plus the projection
#: MLP; DPC: the R-2D3D backbone, the ConvGRU and final_bn (512 affine parameters).
PARAMETERS = {
    "supervised": 31_634_496,
    "SimCLR": 40_289_472,
    "MoCo": 40_289_472,
    "SwAV": 40_293_568,
    "BYOL": 41_080_128,
    "DPC": 32_816_704,  # resnet34
}
EMBEDDING_DIM = {"SimCLR": 128, "MoCo": 128, "SwAV": 128, "BYOL": 256}


def test_method_table() -> None:
    assert list(METHODS) == ["supervised", "SimCLR", "MoCo", "SwAV", "BYOL", "DPC", "torchvision", "pytorchvideo", "custom",
                             "transformers"]
    assert PAPER_METHODS == tuple(METHODS)[:6]
    for name in ("torchvision", "pytorchvideo", "custom"):
        assert METHODS[name].family == name and METHODS[name].spaces == ("representation",)
    for name in PAPER_METHODS:
        info = METHODS[name]
        assert isinstance(info, MethodInfo) and info.name == name
        ssl = name in EMBEDDING_DIM
        assert info.family == ("dpc" if name == "DPC" else "slow_r50")
        assert info.spaces == (("representation", "embedding") if ssl else ("representation",))
        assert info.checkpoint_format == {"supervised": "pytorchvideo", "DPC": "dpc"}.get(name, "slowfast")
        assert info.default_protocol == ("dpc" if name == "DPC" else "paper")
        assert info.embedding_dim == EMBEDDING_DIM.get(name)
        assert info.normalize_embedding == (name in ("SimCLR", "SwAV"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["MoCo"].family = "dpc"
    with pytest.raises(TypeError):
        METHODS["x"] = METHODS["MoCo"]


def test_canonical_method_is_case_insensitive_and_lists_valid_names() -> None:
    assert canonical_method("moco") == "MoCo" and canonical_method(" SIMCLR ") == "SimCLR"
    assert canonical_method("Supervised") == "supervised"
    with pytest.raises(ValueError, match="unknown method 'VICReg'; valid methods: supervised, SimCLR, MoCo, SwAV, BYOL, DPC, torchvision, pytorchvideo, custom"):
        canonical_method("VICReg")
    with pytest.raises(ValueError, match="valid methods"):
        build_model("dino")


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_random_model_outputs_and_parameter_count(method: str) -> None:
    if method == "DPC":
        model = build_model(method, sample_size=32)
        x = torch.randn(2, 5, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0))
    else:
        model = build_model(method, crop_size=32)
        x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[method]
    with torch.no_grad():
        out = model(x)
    assert tuple(out) == METHODS[method].spaces
    assert out["representation"].shape == (2, 256 if method == "DPC" else 2048)
    if method in EMBEDDING_DIM:
        assert out["embedding"].shape == (2, EMBEDDING_DIM[method])
    rep = out["representation"]
    assert torch.isfinite(rep).all() and 0.01 < float(rep.abs().mean()) < 100  # O(1) activations
    assert float((rep[0] - rep[1]).norm() / rep[0].norm()) > 1e-3  # inputs still matter
    assert model.provenance == {**model.provenance, "method": method, "checkpoint": None, "seed": 0}


def test_seeded_initialisation_is_deterministic() -> None:
    first = build_model("DPC", arch="resnet18", seed=3).state_dict()
    again = build_model("DPC", arch="resnet18", seed=3).state_dict()
    other = build_model("DPC", arch="resnet18", seed=4).state_dict()
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["backbone.conv1.weight"], other["backbone.conv1.weight"])
    assert torch.equal(first["backbone.bn1.running_var"], torch.ones(64))


def test_dpc_defaults_follow_the_architecture() -> None:
    r18 = build_model("DPC", arch="resnet18")
    r34 = build_model("DPC")
    assert (r18.arch, r18.sample_size, r18.num_seq, r18.seq_len) == ("resnet18", 128, 5, 5)
    assert (r34.arch, r34.sample_size) == ("resnet34", 224)
    assert r34.expected_input_shape == (5, 3, 5, 224, 224)


@pytest.mark.parametrize(
    ("method", "options", "error", "message"),
    [
        ("MoCo", {"arch": "resnet18"}, TypeError, r"unknown option\(s\) \['arch'\]; valid options: \['cls_token', 'crop_size', 'device', 'frames', 'layers', 'seed', 'time_resolved'\]"),
        ("DPC", {"crop_size": 224}, TypeError, r"unknown option\(s\) \['crop_size'\]"),
        ("DPC", {"arch": "resnet50"}, ValueError, "DPC arch must be one of"),
        ("MoCo", {"crop_size": 16}, ValueError, "crop_size must be at least 32"),
        ("supervised", {"frames": 0}, ValueError, "frames must be a positive integer"),
        ("DPC", {"seq_len": "5"}, ValueError, "seq_len must be a positive integer"),
        ("MoCo", {"seed": 1.5}, ValueError, "seed must be an integer"),
        ("MoCo", {"device": "tpu:0"}, ValueError, "invalid device"),
    ],
)
def test_invalid_options(method: str, options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build_model(method, **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_only_when_available() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_model("DPC", arch="resnet18", device="cuda")


def test_config_only_for_slowfast_methods(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config is a SlowFast YAML and only applies to SimCLR, MoCo, SwAV, BYOL"):
        build_model("supervised", config=tmp_path / "x.yaml")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'absent.yaml'}: cannot read the SlowFast config"):
        build_model("MoCo", config=tmp_path / "absent.yaml")


def _truncated(path: Path) -> None:
    torch.save({"model_state": {"w": torch.zeros(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class Opaque:
    """Not a tensor or plain container: weights_only unpickling must refuse it."""


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>"), "is an HTML/XML page"),
        (lambda p: p.write_bytes(b""), "checkpoint file is empty"),
        (_truncated, r"not a readable PyTorch checkpoint \(\d+ bytes; truncated or corrupt\?\)"),
        (lambda p: p.write_bytes(os.urandom(4096)), "not a readable PyTorch checkpoint"),
        (lambda p: torch.save({"model_state": Opaque()}, p), "refusing to unpickle it .*Opaque"),
        (lambda p: torch.save([torch.zeros(1)], p), "expected a SlowFast checkpoint .* got list"),
        (lambda p: torch.save({"model_state": {"w": [1, 2]}}, p), "'model_state' has entries that are not tensors: w"),
        (lambda p: None, "checkpoint file not found"),
    ],
)
def test_unreadable_checkpoints_get_a_clear_error(make, message: str, tmp_path: Path) -> None:
    path = tmp_path / "MoCo_SlowR50_8x8_T2_epoch_00200.pyth"
    make(path)
    with pytest.raises(CheckpointError, match=message) as err:
        build_model("MoCo", path)
    assert str(err.value).startswith(str(path))
