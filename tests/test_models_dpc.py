"""DPC: the linear-eval model's 256-d context from DPC ``.pth.tar`` checkpoints.

Fake checkpoints follow ``dpc/main.py``'s ``save_checkpoint`` layout: ``epoch, net,
state_dict, best_acc, optimizer, iteration``, keys prefixed ``module.``, the ConvGRU cell
under both ``agg.ConvGRUCell_00`` and ``agg.cell_list.0``, ``network_pred`` present,
``best_acc`` a numpy scalar, PyTorch's pre-1.6 serialisation. Key sets are pinned against
the state dicts of DPC's own ``DPC_RNN`` (TengdaHan/DPC, run once outside the project).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dimcollapse.models import BatchStatisticsWarning, CheckpointError, build_model
from dimcollapse.models.dpc import DPCContext
from model_fixtures import randomize_

#: (number of keys, sha256 of the sorted key list, first 16 hex digits) of DPC_RNN.state_dict()
#: (backbone built with track_running_stats=False) and of the R34 "runningStats" re-upload.
REAL_KEYSETS = {
    ("resnet18", False): (76, "65f61451715f533c"),
    ("resnet34", False): (124, "79beca5f7683e5d4"),
    ("resnet34", True): (232, "b9d4100f32882127"),
}
SIZE, NUM_SEQ, SEQ_LEN = 64, 5, 5




def skeleton(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(i, dtype=v.dtype).expand(v.shape) for i, (k, v) in enumerate(state.items())}


def pretraining_state(
    arch: str, running_stats: bool, fill: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | int
) -> dict[str, torch.Tensor]:
    """State of DPC's ``DPC_RNN`` (plus running statistics for a "runningStats" file).

    ``fill``: a seed for random weights, or a function applied to the shapes (skeleton).
    """
    predictor = nn.Sequential(nn.Conv2d(256, 256, 1), nn.ReLU(), nn.Conv2d(256, 256, 1))
    if isinstance(fill, int):
        net = DPCContext(arch, batch_stats=not running_stats)
        randomize_(net, fill)
        randomize_(predictor, fill + 1)
        base = {**net.state_dict(), **{f"network_pred.{k}": v for k, v in predictor.state_dict().items()}}
    else:
        with torch.device("meta"):
            net = DPCContext(arch, batch_stats=not running_stats)
            shapes = {**net.state_dict(), **{f"network_pred.{k}": v for k, v in predictor.to("meta").state_dict().items()}}
        base = fill(shapes)
    state = {k: v for k, v in base.items() if not k.startswith("final_bn.")}
    for key in [k for k in state if k.startswith("agg.cell_list.0.")]:
        state["agg.ConvGRUCell_00." + key[len("agg.cell_list.0."):]] = state[key]
    return state


def save_dpc(state: dict[str, torch.Tensor], path: Path, arch: str, legacy: bool = True) -> Path:
    raw = {
        "epoch": 100,
        "net": arch,
        "state_dict": {"module." + k: v for k, v in state.items()},
        "best_acc": np.float64(0.371),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "weight_decay": 1e-5, "params": [0, 1]}]},
        "iteration": 12345,
    }
    torch.save(raw, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, torch.Tensor]]]]:
    """Random-weight R18 checkpoints, without (as published) and with BN running statistics."""
    root = tmp_path_factory.mktemp("dpc")
    out = {}
    for name, stats in (("nostats", False), ("stats", True)):
        state = pretraining_state("resnet18", stats, 5)
        out[name] = (save_dpc(state, root / f"r18_{name}.pth.tar", "resnet18"), state)
    yield out
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def blocks() -> torch.Tensor:
    return torch.randn(2, NUM_SEQ, 3, SEQ_LEN, SIZE, SIZE, generator=torch.Generator().manual_seed(9))


def build(path: Path, **options) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchStatisticsWarning)
        return build_model("DPC", path, sample_size=SIZE, **options)


def lc_aggregation(feature: torch.Tensor, state: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
    """LC after the backbone, from the file's GRU weights: ReLU, temporal mean, ConvGRU, spatial mean, fresh BN."""
    x = F.relu(feature).mean(dim=2)  # the kernel ceil(seq_len/4) covers the whole remaining time axis
    x = x.reshape(batch, NUM_SEQ, *x.shape[1:])
    gate = {g: (state[f"agg.cell_list.0.{g}.weight"], state[f"agg.cell_list.0.{g}.bias"])
            for g in ("reset_gate", "update_gate", "out_gate")}
    h = torch.zeros(batch, 256, *x.shape[3:])
    for t in range(NUM_SEQ):
        z = torch.cat([x[:, t], h], dim=1)
        u = torch.sigmoid(F.conv2d(z, *gate["update_gate"]))
        r = torch.sigmoid(F.conv2d(z, *gate["reset_gate"]))
        o = torch.tanh(F.conv2d(torch.cat([x[:, t], h * r], dim=1), *gate["out_gate"]))
        h = h * (1 - u) + o * u
    return h.mean(dim=(2, 3)) / math.sqrt(1 + 1e-5)


@pytest.mark.parametrize(("arch", "stats"), list(REAL_KEYSETS))
def test_fake_checkpoint_has_the_key_set_of_dpc(arch: str, stats: bool) -> None:
    keys = sorted(pretraining_state(arch, stats, skeleton))
    count, digest = REAL_KEYSETS[(arch, stats)]
    assert len(keys) == count
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize(("arch", "stats"), list(REAL_KEYSETS))
def test_every_weight_comes_from_its_key(arch: str, stats: bool, tmp_path: Path) -> None:
    state = pretraining_state(arch, stats, skeleton)
    path = save_dpc(state, tmp_path / f"{arch}.pth.tar", arch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_model("DPC", path)
    assert [w.category for w in caught] == ([] if stats else [BatchStatisticsWarning])
    assert model.arch == arch and model.sample_size == {"resnet18": 128, "resnet34": 224}[arch]
    assert model.provenance["bn_stats"] == ("running" if stats else "batch")
    assert model.provenance["ignored"] == ["network_pred.* (4)"]
    for key, value in model.state_dict().items():
        if key.startswith("final_bn."):
            continue
        assert torch.equal(value, state[key]), key
    bn = model.final_bn  # LC's final_bn is freshly initialised: identity up to 1/sqrt(1 + eps) in eval mode
    assert torch.equal(bn.running_mean, torch.zeros(256)) and torch.equal(bn.running_var, torch.ones(256))
    assert torch.equal(bn.weight, torch.ones(256)) and torch.equal(bn.bias, torch.zeros(256))


def test_running_statistics_context_matches_the_lc_computation(files: dict, blocks: torch.Tensor) -> None:
    path, state = files["stats"]
    model = build(path)
    captured = []
    model.backbone.register_forward_hook(lambda module, args, out: captured.append(out))
    with torch.no_grad():
        out = model(blocks)["representation"]
        alone = model(blocks[:1])["representation"]
    feature = captured[0]
    assert out.shape == (2, 256)
    assert feature.shape == (2 * NUM_SEQ, 256, 2, 2, 2)  # T: ceil(5/4) = 2, H, W: 64/32
    assert (feature < 0).any()  # the last block of layer4 has no final ReLU
    expected = lc_aggregation(feature, state, 2)
    assert float((out - expected).abs().max() / expected.abs().max()) < 1e-5
    assert float(((out[0] - out[1]) - (expected[0] - expected[1])).abs().max() / (expected[0] - expected[1]).abs().max()) < 1e-4
    torch.testing.assert_close(alone[0], out[0])  # running statistics: a clip's feature ignores its batch


def test_without_running_statistics_batch_statistics_are_used_with_a_warning(files: dict, blocks: torch.Tensor) -> None:
    path, state = files["nostats"]
    with pytest.warns(BatchStatisticsWarning, match=f"{path}: no BatchNorm running statistics"):
        model = build_model("DPC", path, sample_size=SIZE)
    assert model.provenance["bn_stats"] == "batch"
    with torch.no_grad():
        out = model(blocks)["representation"]
        other = model(torch.cat([blocks[:1], blocks[1:].flip(-1)]))["representation"]
    assert not torch.allclose(other[0], out[0])  # batch statistics: the other clip matters
    captured = []
    model.backbone.register_forward_hook(lambda module, args, result: captured.append(result))
    with torch.no_grad():
        model(blocks)
    torch.testing.assert_close(out, lc_aggregation(captured[0], state, 2), rtol=1e-5, atol=1e-6)


def test_bn_stats_option(files: dict, blocks: torch.Tensor) -> None:
    with pytest.raises(CheckpointError, match="no BatchNorm running statistics .* bn_stats='running' is impossible"):
        build_model("DPC", files["nostats"][0], bn_stats="running")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = build_model("DPC", files["nostats"][0], sample_size=SIZE, bn_stats="batch")
    with torch.no_grad():
        running = build(files["stats"][0])(blocks)["representation"]
        batch = build(files["stats"][0], bn_stats="batch")(blocks)["representation"]
    assert explicit.provenance["bn_stats"] == "batch"
    assert build(files["stats"][0], bn_stats="batch").provenance["ignored"] == [
        "BatchNorm running statistics (60)", "network_pred.* (4)"]
    assert not torch.allclose(running, batch)
    with pytest.raises(ValueError, match="bn_stats must be one of"):
        build_model("DPC", bn_stats="fresh")


def test_changing_one_weight_in_the_file_changes_the_output(files: dict, blocks: torch.Tensor, tmp_path: Path) -> None:
    path, state = files["stats"]
    key = "backbone.layer4.1.conv2.weight"
    weight = state[key].clone()
    weight[0, 0] += 1.0
    changed = save_dpc({**state, key: weight}, tmp_path / "changed.pth.tar", "resnet18")
    with torch.no_grad():
        different = not torch.allclose(build(changed)(blocks)["representation"], build(path)(blocks)["representation"])
    changed.unlink()
    assert different


def test_zip_format_loads_like_the_legacy_format(files: dict, tmp_path: Path) -> None:
    _, state = files["stats"]
    legacy = build(files["stats"][0])
    modern = build(save_dpc(state, tmp_path / "zip.pth.tar", "resnet18", legacy=False))
    (tmp_path / "zip.pth.tar").unlink()
    for (k1, v1), (k2, v2) in zip(legacy.state_dict().items(), modern.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


def test_input_layout_is_checked(files: dict) -> None:
    model = build(files["stats"][0])
    assert model.expected_input_shape == (NUM_SEQ, 3, SEQ_LEN, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"expects input B×5×3×5×64×64 .* got \(1, 5, 5, 3, 64, 64\)"):
        model(torch.zeros(1, NUM_SEQ, SEQ_LEN, 3, SIZE, SIZE))


# ----------------------------------------------------------------------------- error paths


def _skeleton_file(tmp_path: Path, edit: Callable[[dict], None] = lambda s: None, arch: str = "resnet18") -> Path:
    state = pretraining_state(arch, True, skeleton)
    edit(state)
    return save_dpc(state, tmp_path / "edited.pth.tar", arch)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("backbone.layer2.0.downsample.1.running_var"),
         r"missing keys \(1\): backbone\.layer2\.0\.downsample\.1\.running_var"),
        (lambda s: s.update({"final_fc.1.weight": torch.zeros(101, 256)}), r"unexpected keys \(1\): final_fc\.1\.weight"),
        (lambda s: s.update({"agg.cell_list.0.out_gate.weight": torch.zeros(256, 512, 3, 3),
                             "agg.ConvGRUCell_00.out_gate.weight": torch.zeros(256, 512, 3, 3)}),
         r"shape mismatches \(1\): agg\.cell_list\.0\.out_gate\.weight: file \(256, 512, 3, 3\) vs model \(256, 512, 1, 1\)"),
        (lambda s: s.update({"agg.ConvGRUCell_00.reset_gate.bias": torch.ones(256)}),
         "'agg.ConvGRUCell_00.reset_gate.bias' and 'agg.cell_list.0.reset_gate.bias' should be the same ConvGRU cell"),
    ],
)
def test_state_dict_errors_name_the_file_and_the_keys(edit, message: str, tmp_path: Path) -> None:
    path = _skeleton_file(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as err:
        build_model("DPC", path)
    assert str(err.value).startswith(str(path))


def test_partial_running_statistics_are_refused(tmp_path: Path) -> None:
    path = _skeleton_file(tmp_path, lambda s: s.pop("backbone.layer1.0.bn1.running_mean"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): backbone\.layer1\.0\.bn1\.running_mean"):
        build_model("DPC", path)


def test_arch_must_match_the_file(tmp_path: Path) -> None:
    path = _skeleton_file(tmp_path)
    with pytest.raises(CheckpointError, match="holds a DPC resnet18 backbone, but arch='resnet34' was requested"):
        build_model("DPC", path, arch="resnet34")
    raw = torch.load(path, weights_only=False)
    raw["net"] = "resnet34"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="'net' says 'resnet34' but the weights are a resnet18"):
        build_model("DPC", path)


def test_slowfast_file_is_not_a_dpc_file(tmp_path: Path) -> None:
    path = tmp_path / "MoCo.pyth"
    torch.save({"epoch": 199, "model_state": {}, "cfg": ""}, path)
    with pytest.raises(CheckpointError, match=r"not a DPC checkpoint: no 'state_dict' entry .* SlowFast/PyTorchVideo"):
        build_model("DPC", path)
