"""SimCLR, MoCo, SwAV, BYOL: SlowFast contrastive_ssl checkpoints in their released layout.

The fake checkpoints below reproduce the released files' layout: ``epoch`` 199,
``model_state`` with the head named ``ssl_<dim>``, every training-only entry of the
method's ``ContrastiveModel`` (momentum encoder, queue, pointers, kNN memory, SwAV
prototypes, BYOL predictor), ``optimizer_state`` and the ``cfg`` YAML string. The key
sets are pinned against the state dicts of SlowFast's own ``ContrastiveModel`` built
from ``configs/contrastive_ssl/*.yaml`` (facebookresearch/SlowFast@287ec00, run once
outside the project). Buffers whose names matter but whose sizes do not (the 65,536-entry
queue, the 239,975-entry kNN memory) are kept small.

Two kinds of files keep the tests fast: *skeleton* files, where every entry is a single
distinct number broadcast to the entry's shape (a few kilobytes on disk; they pin the
key mapping, layout and error paths), and random-weight files for the numerical checks.
Numerical checks use 4-frame 64×64 clips.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from dimcollapse.models import METHODS, CheckpointError, build_model
from dimcollapse.models.registry import HeadSpec
from dimcollapse.models.slow_r50 import MLPProjection, SlowR50SSL
from model_fixtures import randomize_

SSL_METHODS = ("SimCLR", "MoCo", "SwAV", "BYOL")
#: (number of keys, sha256 of the sorted key list, first 16 hex digits) of
#: ``ContrastiveModel(cfg).state_dict()`` in SlowFast for each contrastive_ssl config.
REAL_KEYSETS = {
    "SimCLR": (325, "f4136bcb5fa46767"),
    "MoCo": (652, "e3f2b6fd258f2bbf"),
    "SwAV": (334, "d2e0b0f8aab9c48e"),
    "BYOL": (672, "d19b45f327022ec9"),
}
FRAMES, CROP = 4, 64




def slowfast_cfg(method: str, frames: int = 8) -> str:
    """The parts of a SlowFast ``cfg.dump()`` that describe the model (values of the repo configs)."""
    info = METHODS[method]
    head = info.default_head
    cfg = {
        "TASK": "ssl",
        "MODEL": {"NUM_CLASSES": head.dim_out, "MODEL_NAME": "ContrastiveModel", "ARCH": "slow",
                  "LOSS_FUNC": "contrastive_loss", "DROPOUT_RATE": 0.0, "HEAD_ACT": "none"},
        "CONTRASTIVE": {"TYPE": info.contrastive_type, "DIM": head.dim_out, "NUM_MLP_LAYERS": head.num_layers,
                        "MLP_DIM": head.mlp_dim, "BN_MLP": head.bn, "KNN_ON": True,
                        "PREDICTOR_DEPTHS": [2] if method == "BYOL" else []},
        "DATA": {"NUM_FRAMES": frames, "SAMPLING_RATE": 64 // frames, "TRAIN_CROP_SIZE": 224, "INPUT_CHANNEL_NUM": [3]},
        "RESNET": {"DEPTH": 50, "NUM_GROUPS": 1, "WIDTH_PER_GROUP": 64, "TRANS_FUNC": "bottleneck_transform",
                   "STRIDE_1X1": False, "NUM_BLOCK_TEMP_KERNEL": [[3], [4], [6], [3]],
                   "SPATIAL_STRIDES": [[1], [2], [2], [2]], "SPATIAL_DILATIONS": [[1], [1], [1], [1]]},
        "NONLOCAL": {"LOCATION": [[[]], [[]], [[]], [[]]]},
        "BN": {"NORM_TYPE": "sync_batchnorm", "NUM_SYNC_DEVICES": 8},
        "DETECTION": {"ENABLE": False},
    }
    return yaml.safe_dump(cfg)


def contrastive_state(method: str, fill: Callable[[nn.Module], None]) -> dict[str, torch.Tensor]:
    """A ContrastiveModel state dict (current ``head`` naming) with every training-only entry.

    ``fill`` sets the weights of the modules it is given (they are created on the meta
    device when ``fill`` materialises nothing, which gives shapes only).
    """
    info = METHODS[method]
    dim = info.default_head.dim_out
    net = SlowR50SSL(method, info.default_head, info.normalize_embedding)
    fill(net)
    state = dict(net.state_dict())
    if method == "BYOL":
        predictor = MLPProjection(dim, HeadSpec(dim_out=dim, num_layers=2, mlp_dim=4096, bn=True))
        fill(predictor)
        state.update({f"backbone.head.predictors.0.{k}": v for k, v in predictor.state_dict().items()})
    if method in ("MoCo", "BYOL"):
        # the momentum encoder is a full copy; sharing storage keeps the file small
        state.update({"backbone_hist." + k[len("backbone."):]: v for k, v in list(state.items())})
        state["queue_x"] = torch.rand(64, dim)
        state["ptr"] = torch.tensor([0])
        state["iter"] = torch.tensor([5000])
    if method == "SwAV":
        state["swav_prototypes.weight"] = torch.randn(1000, dim)
    state["knn_mem.memory"] = torch.rand(16, 1, dim)
    return state


def skeleton(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Entry i becomes the number i broadcast to the entry's shape and dtype (tiny on disk)."""
    return {k: torch.tensor(i, dtype=v.dtype).expand(v.shape) for i, (k, v) in enumerate(state.items())}


def skeleton_state(method: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = contrastive_state(method, lambda module: None)
    return skeleton(shapes)


def released_layout(state: dict[str, torch.Tensor], method: str, cfg: str | None = None) -> dict:
    """The dict of a released ``*_epoch_00200.pyth`` file: head renamed to ``ssl_<dim>``."""
    dim = METHODS[method].default_head.dim_out
    renamed = {}
    for key, value in state.items():
        for prefix in ("backbone.", "backbone_hist."):
            if key.startswith(prefix + "head."):
                key = prefix + f"ssl_{dim}." + key[len(prefix + "head."):]
        renamed[key] = value
    raw = {
        "epoch": 199,
        "model_state": renamed,
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]},
        "cfg": slowfast_cfg(method) if cfg is None else cfg,
    }
    if method == "MoCo":
        raw["scaler_state"] = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                               "growth_interval": 2000, "_growth_tracker": 0}
    return raw


def save(raw: dict, path: Path) -> Path:
    torch.save(raw, path)
    return path


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory for full-size (160 MB) checkpoint files, emptied after the test."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, torch.Tensor]]]]:
    """method -> (random-weight checkpoint in the released layout, its state in ``head`` naming).

    The same seed gives all four the same backbone weights (the backbone's modules come
    first), so one PyTorchVideo reference serves every method.
    """
    root = tmp_path_factory.mktemp("slowfast")
    out = {}
    for method in SSL_METHODS:
        state = contrastive_state(method, lambda module: randomize_(module, 1))
        path = save(released_layout(state, method, cfg=slowfast_cfg(method, frames=FRAMES)), root / f"{method}.pyth")
        out[method] = (path, state)
    yield out
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, 3, FRAMES, CROP, CROP, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def outputs(released: dict, clip: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    with torch.no_grad():
        return {m: build_model(m, released[m][0], crop_size=CROP)(clip) for m in SSL_METHODS}


@pytest.fixture(scope="module")
def ptv_representation(released: dict, clip: torch.Tensor) -> torch.Tensor:
    """The shared backbone run by PyTorchVideo's own ResNet (keys mapped SlowFast → PyTorchVideo)."""
    from pytorchvideo.models.resnet import create_resnet

    names = {"branch1": "branch1_conv", "branch1_bn": "branch1_norm", "branch2.a": "branch2.conv_a",
             "branch2.a_bn": "branch2.norm_a", "branch2.b": "branch2.conv_b", "branch2.b_bn": "branch2.norm_b",
             "branch2.c": "branch2.conv_c", "branch2.c_bn": "branch2.norm_c"}
    ptv_state = {}
    for key, value in released["MoCo"][1].items():
        if key.startswith("backbone.s1.pathway0_stem."):
            part, leaf = key.split(".")[3:5]
            ptv_state[f"blocks.0.{'conv' if part == 'conv' else 'norm'}.{leaf}"] = value
        elif key.startswith("backbone.s") and ".pathway0_res" in key:
            stage, block, rest = key.split(".", 3)[1:]
            module, leaf = rest.rsplit(".", 1)
            ptv_state[f"blocks.{int(stage[1]) - 1}.res_blocks.{int(block[len('pathway0_res'):])}.{names[module]}.{leaf}"] = value
    ptv = create_resnet(stem_conv_kernel_size=(1, 7, 7), head_pool_kernel_size=(FRAMES, 2, 2), model_depth=50)
    ptv.blocks[-1].proj = nn.Identity()
    missing, unexpected = ptv.load_state_dict(ptv_state, strict=False)
    assert not missing and not unexpected
    with torch.no_grad():
        return ptv.eval()(clip)


def head_from_file(representation: torch.Tensor, state: dict[str, torch.Tensor], spec: HeadSpec) -> torch.Tensor:
    """SlowFast's MLPHead recomputed from the file's tensors: Linear, then [BN1d] + ReLU between layers."""
    p = "backbone.head.projection.projection."
    x, index = representation, 0
    for layer in range(spec.num_layers):
        x = F.linear(x, state[f"{p}{index}.weight"], state.get(f"{p}{index}.bias"))
        index += 1
        if layer < spec.num_layers - 1:
            if spec.bn:
                bn = {k: state[f"{p}{index}.{k}"] for k in ("running_mean", "running_var", "weight", "bias")}
                x = F.batch_norm(x, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], False, 0.0, 1e-5)
                index += 1
            x = F.relu(x)
            index += 1
    return x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("method", SSL_METHODS)
def test_fake_checkpoint_has_the_key_set_of_slowfast(method: str) -> None:
    keys = sorted(skeleton_state(method))
    count, digest = REAL_KEYSETS[method]
    assert len(keys) == count
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("method", SSL_METHODS)
def test_released_layout_loads_every_weight_from_its_key(method: str, tmp_path: Path) -> None:
    state = skeleton_state(method)
    path = save(released_layout(state, method), tmp_path / f"{method}_SlowR50_8x8_T2_epoch_00200.pyth")
    model = build_model(method, path, crop_size=CROP)
    assert not model.training
    loaded = model.state_dict()
    assert set(loaded) == {k for k in state if k.startswith("backbone.") and ".predictors." not in k}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    prov = model.provenance
    assert prov["epoch"] == 199 and prov["format"] == "slowfast" and prov["frames"] == 8
    assert prov["head"] == {**METHODS[method].default_head.__dict__, "source": "checkpoint cfg"}
    expected_ignored = {"SimCLR": {"knn_mem"}, "SwAV": {"knn_mem", "swav_prototypes"},
                        "MoCo": {"knn_mem", "backbone_hist", "queue_x", "ptr", "iter"},
                        "BYOL": {"knn_mem", "backbone_hist", "queue_x", "ptr", "iter", "backbone.head.predictors"}}
    assert {entry.split(".*")[0] for entry in prov["ignored"]} == expected_ignored[method]


@pytest.mark.parametrize("method", SSL_METHODS)
def test_outputs_match_an_independent_computation(
    method: str, released: dict, outputs: dict, ptv_representation: torch.Tensor
) -> None:
    out, (_, state), info = outputs[method], released[method], METHODS[method]
    assert out["representation"].shape == (2, 2048)
    assert out["embedding"].shape == (2, info.default_head.dim_out)
    rep, ref = out["representation"], ptv_representation
    assert _rel(rep, ref) < 1e-5
    assert _rel(rep[0] - rep[1], ref[0] - ref[1]) < 1e-4

    projection = head_from_file(rep, state, info.default_head)
    norms = out["embedding"].norm(dim=1)
    if method in ("SimCLR", "SwAV"):
        torch.testing.assert_close(norms, torch.ones(2))
        expected = projection / projection.norm(dim=1, keepdim=True)
    else:
        assert (norms - 1).abs().min() > 0.1  # the raw projection, not normalised
        expected = projection
    assert _rel(out["embedding"], expected) < 1e-5
    assert _rel(out["embedding"][0] - out["embedding"][1], expected[0] - expected[1]) < 1e-3


@pytest.mark.parametrize("method", SSL_METHODS)
def test_changing_one_head_weight_in_the_file_changes_only_the_embedding(
    method: str, released: dict, outputs: dict, clip: torch.Tensor, scratch: Path
) -> None:
    _, state = released[method]
    spec = METHODS[method].default_head
    bias = f"backbone.head.projection.projection.{3 * (spec.num_layers - 1) if spec.bn else 2 * (spec.num_layers - 1)}.bias"
    changed = {**state, bias: state[bias] + torch.linspace(0.0, 1.0, spec.dim_out)}
    path = save(released_layout(changed, method, cfg=slowfast_cfg(method, frames=FRAMES)), scratch / "head.pyth")
    with torch.no_grad():
        after = build_model(method, path, crop_size=CROP)(clip)
    torch.testing.assert_close(after["representation"], outputs[method]["representation"], rtol=0, atol=0)
    assert not torch.allclose(after["embedding"], outputs[method]["embedding"])


def test_changing_one_backbone_weight_in_the_file_changes_both_outputs(
    released: dict, outputs: dict, clip: torch.Tensor, scratch: Path
) -> None:
    _, state = released["MoCo"]
    key = "backbone.s5.pathway0_res2.branch2.c.weight"
    weight = state[key].clone()
    weight[0, 0] += 1.0
    path = save(released_layout({**state, key: weight}, "MoCo", cfg=slowfast_cfg("MoCo", FRAMES)), scratch / "b.pyth")
    with torch.no_grad():
        after = build_model("MoCo", path, crop_size=CROP)(clip)
    for space in ("representation", "embedding"):
        assert not torch.allclose(after[space], outputs["MoCo"][space])


@pytest.mark.parametrize("method", ["MoCo", "BYOL"])
def test_current_head_naming_and_missing_cfg_load_the_same_weights(method: str, tmp_path: Path) -> None:
    """``backbone.head.`` (current SlowFast) equals ``backbone.ssl_<dim>.``; without ``cfg`` the head comes from shapes."""
    state = skeleton_state(method)
    released_model = build_model(method, save(released_layout(state, method), tmp_path / "r.pyth"))
    current = build_model(method, save({"epoch": 199, "model_state": state}, tmp_path / "c.pyth"))
    assert current.provenance["head"]["source"] == "state-dict shapes"
    assert current.provenance["head"]["dim_out"] == METHODS[method].default_head.dim_out
    for (k1, v1), (k2, v2) in zip(released_model.state_dict().items(), current.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


def test_head_comes_from_the_config_file_first(tmp_path: Path) -> None:
    path = save(released_layout(skeleton_state("SwAV"), "SwAV", cfg="not: [valid yaml"), tmp_path / "s.pyth")
    config = tmp_path / "SwAV_Slow_R50_8x8.yaml"
    config.write_text(slowfast_cfg("SwAV"))
    with pytest.warns(UserWarning, match=r"ignoring the embedded config: .*s\.pyth \(embedded cfg\): not valid YAML"):
        model = build_model("SwAV", path, config=config)
    assert model.provenance["head"] == {"dim_out": 128, "num_layers": 3, "mlp_dim": 2048, "bn": True, "source": "config"}
    head = model.backbone.head.projection.projection
    assert [type(m).__name__ for m in head] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert [m.bias is not None for m in head if isinstance(m, nn.Linear)] == [False, False, True]


def test_byol_16x4_frames_come_from_the_checkpoint_cfg(tmp_path: Path) -> None:
    raw = released_layout(skeleton_state("BYOL"), "BYOL", cfg=slowfast_cfg("BYOL", frames=16))
    path = save(raw, tmp_path / "BYOL_SlowR50_16x4_T4_epoch_00200.pyth")
    model = build_model("BYOL", path)
    assert model.frames == 16 and model.expected_input_shape == (3, 16, 224, 224)
    with pytest.raises(ValueError, match=r"B×3×16×224×224"):
        model(torch.zeros(1, 3, 8, 224, 224))
    with pytest.warns(UserWarning, match="frames=8 differs from DATA.NUM_FRAMES=16"):
        build_model("BYOL", path, frames=8)


def test_num_batches_tracked_may_be_absent(tmp_path: Path) -> None:
    state = {k: v for k, v in skeleton_state("SimCLR").items() if not k.endswith("num_batches_tracked")}
    build_model("SimCLR", save(released_layout(state, "SimCLR"), tmp_path / "old_torch.pyth"))


# ----------------------------------------------------------------------------- error paths


def test_missing_key_is_listed_with_the_file_name(tmp_path: Path) -> None:
    state = {k: v for k, v in skeleton_state("SimCLR").items() if k != "backbone.s3.pathway0_res1.branch2.b.weight"}
    path = save(released_layout(state, "SimCLR"), tmp_path / "missing.pyth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): backbone\.s3\.pathway0_res1\.branch2\.b\.weight") as err:
        build_model("SimCLR", path)
    assert str(err.value).startswith(str(path))


def test_unexpected_key_is_listed(tmp_path: Path) -> None:
    state = {**skeleton_state("SimCLR"), "backbone.s5.pathway0_nonlocal1.conv_theta.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): backbone\.s5\.pathway0_nonlocal1"):
        build_model("SimCLR", save(released_layout(state, "SimCLR"), tmp_path / "extra.pyth"))


def test_shape_mismatch_is_listed(tmp_path: Path) -> None:
    path = save(released_layout(skeleton_state("SimCLR"), "SimCLR"), tmp_path / "simclr.pyth")
    config = tmp_path / "narrow.yaml"
    config.write_text(slowfast_cfg("SimCLR").replace("NUM_CLASSES: 128", "NUM_CLASSES: 64"))
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches \(2\): backbone\.head\.projection\.projection\.4\.weight: file \(128, 2048\) vs model \(64, 2048\)",
    ):
        build_model("SimCLR", path, config=config)


def test_training_entries_of_another_method_are_not_ignored(tmp_path: Path) -> None:
    state = skeleton_state("MoCo")
    moco = save(released_layout(state, "MoCo"), tmp_path / "moco.pyth")
    with pytest.raises(CheckpointError, match=r"\(embedded cfg\): CONTRASTIVE.TYPE is 'moco', but method SimCLR .* config="):
        build_model("SimCLR", moco)
    config = tmp_path / "SimCLR_SlowR50_8x8.yaml"
    config.write_text(slowfast_cfg("SimCLR"))
    with pytest.warns(UserWarning, match="CONTRASTIVE.TYPE is 'moco'.*following the config file"):
        with pytest.raises(CheckpointError, match=r"unexpected keys \(327\): backbone_hist\."):
            build_model("SimCLR", moco, config=config)
    without_cfg = save({"epoch": 199, "model_state": state}, tmp_path / "moco_without_cfg.pyth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(327\): backbone_hist\.s1\.pathway0_stem\.conv\.weight"):
        build_model("SimCLR", without_cfg)


def test_config_type_must_match_the_method(tmp_path: Path) -> None:
    config = tmp_path / "MoCo_SlowR50_8x8.yaml"
    config.write_text(slowfast_cfg("MoCo"))
    path = save(released_layout(skeleton_state("SimCLR"), "SimCLR"), tmp_path / "simclr.pyth")
    with pytest.raises(CheckpointError, match=f"{config}: CONTRASTIVE.TYPE is 'moco'"):
        build_model("SimCLR", path, config=config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("ARCH: slow", "ARCH: slowfast"), "MODEL.ARCH is 'slowfast'"),
        (lambda s: s.replace("HEAD_ACT: none", "HEAD_ACT: softmax"), "MODEL.HEAD_ACT is 'softmax'"),
        (lambda s: s.replace("DEPTH: 50", "DEPTH: 101"), "RESNET.DEPTH is 101"),
        (lambda s: "_BASE_: ../base.yaml\n" + s, "_BASE_ inheritance"),
        (lambda s: "MODEL: [unclosed", "not valid YAML"),
    ],
)
def test_config_describing_another_network_is_refused(edit, message: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(edit(slowfast_cfg("SimCLR")))
    with pytest.raises(CheckpointError, match=message):
        build_model("SimCLR", config=config)


def test_embedded_cfg_describing_another_network_is_refused_unless_a_config_is_given(tmp_path: Path) -> None:
    cfg = slowfast_cfg("SimCLR").replace("ARCH: slow", "ARCH: i3d")
    path = save(released_layout(skeleton_state("SimCLR"), "SimCLR", cfg=cfg), tmp_path / "i3d.pyth")
    with pytest.raises(CheckpointError, match=r"\(embedded cfg\): describes a model other than .* MODEL.ARCH is 'i3d'"):
        build_model("SimCLR", path)
    config = tmp_path / "SimCLR_SlowR50_8x8.yaml"
    config.write_text(slowfast_cfg("SimCLR"))
    with pytest.warns(UserWarning, match="ignoring the embedded config: .*MODEL.ARCH is 'i3d'"):
        model = build_model("SimCLR", path, config=config)
    assert model.provenance["head"]["source"] == "config"


def test_both_head_namings_in_one_file_are_refused(tmp_path: Path) -> None:
    state = skeleton_state("SimCLR")
    raw = released_layout(state, "SimCLR")
    raw["model_state"].update({k: v for k, v in state.items() if k.startswith("backbone.head.")})
    with pytest.raises(CheckpointError, match="holds both 'backbone.ssl_128.projection.projection.0.weight' and 'backbone.head.projection.projection.0.weight'"):
        build_model("SimCLR", save(raw, tmp_path / "both.pyth"))


def test_file_without_model_state_is_refused(tmp_path: Path) -> None:
    path = save({"epoch": 1, "state_dict": {}}, tmp_path / "dpc.pth.tar")
    with pytest.raises(CheckpointError, match=r"no 'model_state' entry .* looks like a DPC checkpoint"):
        build_model("MoCo", path)
