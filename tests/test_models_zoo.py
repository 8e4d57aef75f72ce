"""torchvision, PyTorchVideo and custom models: outputs equal the libraries' own forward passes.

Every arch is built twice: once directly with the library function (the reference, given
random weights that include BatchNorm statistics), once by ``build_model`` from a
checkpoint file written from the reference in the family's own format. The reference
runs its own forward pass with hooks the test registers itself; the representation must
equal the classifier's input averaged over the dimensions written out below per arch, and
each layer feature the hooked output averaged likewise. Heavy archs get one small input.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pytorchvideo.models.hub as hub
import torch
import torchvision.models.video as tvv
from torch import nn

from dimcollapse.models import ARCHS, CheckpointError, build_model, module_names
from dimcollapse.models.hooks import FeatureModel
from dimcollapse.models.zoo import ClampedAvgPool3d, library_net
from model_fixtures import TinyVideoNet, randomize_

Pool = Callable[[object], torch.Tensor]


def conv(y: object) -> torch.Tensor:  # B×C×T×H×W
    assert isinstance(y, torch.Tensor)
    return y.mean(dim=tuple(range(2, y.ndim)))


def last(y: object) -> torch.Tensor:  # B×…×C (Swin maps, PyTorchVideo's permuted head input)
    assert isinstance(y, torch.Tensor)
    return y.mean(dim=tuple(range(1, y.ndim - 1)))


def flat(y: object) -> torch.Tensor:  # already B×C
    assert isinstance(y, torch.Tensor) and y.ndim == 2
    return y


def tokens_cls(y: object) -> torch.Tensor:  # (B×(1+L)×C, thw) or B×(1+L)×C: class token dropped
    t = y[0] if isinstance(y, tuple) else y
    return t[:, 1:].mean(dim=1)


def tokens(y: object) -> torch.Tensor:  # B×L×C without class token
    assert isinstance(y, torch.Tensor)
    return y.mean(dim=1)


def pathways(y: object) -> torch.Tensor:  # [slow, fast], each B×C×T×H×W
    assert isinstance(y, list) and len(y) == 2
    return torch.cat([conv(y[0]), conv(y[1])], dim=1)


# arch: (frames, crop, batch, representation pooling, {layer: pooling}, representation dim)
CASES: dict[str, tuple[int, int, int, Pool, dict[str, Pool], int]] = {
    "r3d_18": (4, 32, 2, flat, {"layer2": conv, "layer4.1.conv2": conv}, 512),
    "mc3_18": (4, 32, 2, flat, {"layer3": conv}, 512),
    "r2plus1d_18": (4, 32, 2, flat, {"layer1.0": conv}, 512),
    "s3d": (8, 32, 2, conv, {"features.5": conv}, 1024),
    "mvit_v1_b": (16, 224, 1, flat, {"blocks.3": tokens_cls, "conv_proj": conv, "norm": tokens_cls}, 768),
    "mvit_v2_s": (16, 224, 1, flat, {"blocks.10": tokens_cls, "pos_encoding": tokens_cls}, 768),
    "swin3d_t": (2, 32, 2, flat, {"features.2": last, "patch_embed": last}, 768),
    "swin3d_s": (2, 32, 1, flat, {"features.4.1.mlp": last}, 768),
    "swin3d_b": (2, 32, 1, flat, {"norm": last}, 1024),
    "slow_r50": (2, 32, 2, last, {"blocks.3": conv, "blocks.1.res_blocks.0.branch2.conv_b": conv}, 2048),
    "slowfast_r50": (8, 32, 2, last, {"blocks.3": pathways, "blocks.0": pathways}, 2304),
    "slowfast_r101": (8, 32, 1, last, {"blocks.4": pathways}, 2304),
    "x3d_xs": (4, 160, 2, last, {"blocks.5.pool": conv, "blocks.2": conv}, 2048),
    "x3d_s": (2, 32, 1, last, {"blocks.4": conv}, 2048),
    "x3d_m": (2, 32, 1, last, {"blocks.1": conv}, 2048),
    "x3d_l": (2, 32, 1, last, {"blocks.3.res_blocks.2": conv}, 2048),
    "i3d_r50": (4, 32, 2, last, {"blocks.2": conv, "blocks.4": conv}, 2048),
    "c2d_r50": (4, 32, 1, last, {"blocks.3": conv}, 2048),
    "csn_r101": (2, 32, 1, last, {"blocks.3": conv}, 2048),
    "r2plus1d_r50": (2, 32, 1, last, {"blocks.2": conv}, 2048),
    "mvit_base_16x4": (4, 32, 2, flat, {"blocks.2": tokens_cls, "patch_embed": tokens, "norm_embed": tokens_cls}, 768),
}
#: Archs that only take 16×224×224 clips: to keep the suite fast their reference is not run
#: separately; the test's hooks sit on the library module inside the built model instead.
ONE_PASS = {"mvit_v1_b", "mvit_v2_s"}
FAMILY = {arch: family for family, table in ARCHS.items() for arch in table}
#: Measured parameter counts of the networks (library builders, default settings).
PARAMETERS = {
    "r3d_18": 33_371_472, "mc3_18": 11_695_440, "r2plus1d_18": 31_505_325, "s3d": 8_320_048,
    "mvit_v1_b": 36_610_672, "mvit_v2_s": 34_537_744, "swin3d_t": 28_158_070, "swin3d_s": 49_816_678,
    "swin3d_b": 88_048_984, "slow_r50": 32_454_096, "slowfast_r50": 34_566_488, "slowfast_r101": 62_826_968,
    "x3d_xs": 3_794_274, "x3d_s": 3_794_274, "x3d_m": 3_794_274, "x3d_l": 6_153_384, "i3d_r50": 28_043_472,
    "c2d_r50": 24_327_632, "csn_r101": 22_213_776, "r2plus1d_r50": 28_107_600, "mvit_base_16x4": 36_610_672,
}


def test_every_library_arch_is_covered() -> None:
    assert set(CASES) == set(FAMILY) == set(PARAMETERS)
    assert list(ARCHS["torchvision"]) == [
        "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b",
    ]


@pytest.mark.parametrize("arch", list(PARAMETERS))
def test_model_card_clip_parameters_and_dimension(arch: str) -> None:
    """At the model card's clip size (shapes only, on the meta device: no memory, no compute)."""
    info = ARCHS[FAMILY[arch]][arch]
    try:
        with torch.device("meta"):
            net = library_net(info, info.frames, info.crop_size)
    except RuntimeError:  # PyTorchVideo's MViT constructor reads tensor values
        net = library_net(info, info.frames, info.crop_size).to("meta")
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS[arch]
    model = FeatureModel(net, classifier=info.classifier, layout=info.layout, alpha=info.alpha,
                         input_shape=(3, info.frames, info.crop_size, info.crop_size))
    with torch.no_grad():
        out = model(torch.empty(2, 3, info.frames, info.crop_size, info.crop_size, device="meta"))
    assert out["representation"].shape == (2, CASES[arch][5])


def test_builder_modules_are_found_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_study_models.py").write_text(
        "from torch import nn\ndef net():\n    return nn.Sequential(nn.Conv3d(3, 4, 1), nn.Flatten(1), nn.Linear(4, 2))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert module_names("custom", {"builder": "my_study_models:net"}) == ("0", "1", "2")


def test_official_weights_urls_are_the_libraries_own() -> None:
    enums = {"r3d_18": "R3D_18", "mc3_18": "MC3_18", "r2plus1d_18": "R2Plus1D_18", "s3d": "S3D",
             "mvit_v1_b": "MViT_V1_B", "mvit_v2_s": "MViT_V2_S", "swin3d_t": "Swin3D_T", "swin3d_s": "Swin3D_S",
             "swin3d_b": "Swin3D_B"}
    for arch, enum in enums.items():
        assert ARCHS["torchvision"][arch].weights_url == getattr(tvv, f"{enum}_Weights").KINETICS400_V1.url
    import pytorchvideo.models.hub.csn as csn
    import pytorchvideo.models.hub.r2plus1d as r2p1
    import pytorchvideo.models.hub.resnet as res
    import pytorchvideo.models.hub.slowfast as sf
    import pytorchvideo.models.hub.vision_transformers as vit
    import pytorchvideo.models.hub.x3d as x3d

    urls = {**csn.checkpoint_paths, **r2p1.checkpoint_paths, **res.checkpoint_paths, **sf.checkpoint_paths,
            **vit.checkpoint_paths, **x3d.checkpoint_paths}
    for arch, info in ARCHS["pytorchvideo"].items():
        assert info.weights_url == urls[arch], arch


def _reference(arch: str, frames: int, crop: int) -> nn.Module:
    info = ARCHS[FAMILY[arch]][arch]
    if info.family == "torchvision":
        return getattr(tvv, arch)(weights=None).eval()
    sizes = {"temporal_size": frames, "spatial_size": crop} if info.size_kwargs else {}
    return getattr(hub, arch)(pretrained=False, **sizes).eval()


def _fit_head_pools(net: nn.Module) -> None:
    """Set each head pool's kernel to min(kernel, map) on first use: the network the library
    builds for a smaller input (PyTorchVideo's head_pool_kernel_size), as plain nn.AvgPool3d."""
    def fit(module: nn.Module, args: tuple) -> None:
        module.kernel_size = tuple(min(int(k), s) for k, s in zip(module.kernel_size, args[0].shape[-3:]))
    for m in net.modules():
        if type(m) is nn.AvgPool3d:
            m.register_forward_pre_hook(fit)


def _copy(y: object) -> object:
    if isinstance(y, torch.Tensor):
        return y.clone()
    return type(y)(_copy(e) for e in y) if isinstance(y, (tuple, list)) else y


def _save(net: nn.Module, arch: str, path: Path) -> None:
    state = net.state_dict()
    torch.save({"model_state": state, "epoch": 7} if FAMILY[arch] == "pytorchvideo" else state, path)


@pytest.mark.parametrize("arch", list(CASES))
def test_outputs_equal_the_library_forward_pass(arch: str, tmp_path: Path) -> None:
    frames, crop, batch, rep_pool, layer_pools, dim = CASES[arch]
    info = ARCHS[FAMILY[arch]][arch]
    ref = _reference(arch, frames, crop)
    randomize_(ref, seed=11)
    path = tmp_path / f"{arch}.pth"
    _save(ref, arch, path)
    if arch != "x3d_xs":  # x3d_xs runs at the size its own head pool is built for: no fitting at all
        _fit_head_pools(ref)
    model = build_model(FAMILY[arch], path, arch=arch, frames=frames, crop_size=crop, layers=list(layer_pools))
    if arch in ONE_PASS:  # the library's own module, with the reference's weights
        assert type(model.net) is type(ref)
        loaded = model.net.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in ref.state_dict().items())
        ref = model.net

    seen: dict[str, object] = {}
    modules = dict(ref.named_modules())
    modules[info.classifier].register_forward_pre_hook(lambda m, a: seen.__setitem__("classifier_in", a[0]))
    modules[info.classifier].register_forward_hook(lambda m, a, o: seen.__setitem__("classifier_out", o))
    for name in layer_pools:  # copies: later in-place ops (ReLU(inplace), +=) overwrite outputs
        modules[name].register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, _copy(o)))

    x = torch.randn(batch, 3, frames, crop, crop, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        if arch not in ONE_PASS:
            slow = torch.linspace(0, frames - 1, frames // 4).long()  # PackPathway, alpha 4
            ref([x[:, :, slow], x] if info.alpha == 4 else x)
        out = model(x)

    assert list(out) == ["representation", *(f"layer.{n}" for n in layer_pools)]
    rep = out["representation"]
    assert rep.shape == (batch, dim)
    torch.testing.assert_close(rep, rep_pool(seen["classifier_in"]), rtol=1e-5, atol=1e-6)
    # what the classifier sees: its output averaged over positions is the classifier of the representation
    head, logits = modules[info.classifier], seen["classifier_out"]
    with torch.no_grad():
        if isinstance(head, nn.Conv3d):
            torch.testing.assert_close(head(rep[:, :, None, None, None]).flatten(1), conv(logits), rtol=1e-4, atol=1e-5)
        else:
            torch.testing.assert_close(head(rep), logits if logits.ndim == 2 else last(logits), rtol=1e-4, atol=1e-5)
    for name, pool in layer_pools.items():
        torch.testing.assert_close(out[f"layer.{name}"], pool(seen[name]), rtol=1e-5, atol=1e-6)
    if batch > 1:  # inputs matter (REFERENCE §8): the rows differ
        assert float((rep[0] - rep[1]).norm() / rep[0].norm()) > 1e-4
    assert model.provenance["arch"] == arch and model.provenance["format"] == FAMILY[arch]


def test_clamped_head_pool_is_the_pool_or_the_global_average() -> None:
    pool = ClampedAvgPool3d((2, 3, 3), stride=1)
    big = torch.randn(2, 4, 3, 5, 5)
    torch.testing.assert_close(pool(big), nn.AvgPool3d((2, 3, 3), stride=1)(big))  # unchanged where it works
    small = torch.randn(2, 4, 1, 2, 2)
    with pytest.raises(RuntimeError):
        nn.AvgPool3d((2, 3, 3), stride=1)(small)
    torch.testing.assert_close(pool(small).flatten(1), small.mean(dim=(2, 3, 4)))


def test_slowfast_packs_its_pathways_like_packpathway() -> None:
    model = build_model("pytorchvideo", arch="slowfast_r50", frames=8, crop_size=32)
    x = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(1, 3, 8, 32, 32)
    slow, fast = model.pack(x)
    assert slow[0, 0, :, 0, 0].tolist() == [0.0, 7.0] and fast is x  # linspace(0, 7, 8 // 4).long()
    x16 = torch.arange(16.0).view(1, 1, 16, 1, 1).expand(1, 3, 16, 32, 32)
    assert model.pack(x16)[0][0, 0, :, 0, 0].tolist() == [0.0, 5.0, 10.0, 15.0]


def test_torchvision_checkpoint_formats(tmp_path: Path) -> None:
    ref = tvv.mc3_18(weights=None)
    randomize_(ref, seed=2)
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    seen = {}
    ref.fc.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0]))
    with torch.no_grad():
        ref.eval()(x)
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "checkpoint_3.pth"
    torch.save(ref.state_dict(), plain)
    torch.save({"model": ref.state_dict(), "optimizer": {}, "epoch": 3}, wrapped)  # torchvision references
    for path, entry, epoch in ((plain, None, None), (wrapped, "model", 3)):
        model = build_model("torchvision", path, arch="mc3_18", frames=4, crop_size=32)
        with torch.no_grad():
            torch.testing.assert_close(model(x)["representation"], seen["in"])
        assert (model.provenance["entry"], model.provenance["epoch"], model.provenance["checkpoint"]) == (entry, epoch, str(path))
    state = ref.state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, bad := tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(bad))}: does not match the torchvision mc3_18: missing keys \(1\): fc.bias; unexpected keys \(1\): extra.weight"):
        build_model("torchvision", bad, arch="mc3_18")
    torch.save({"model_state": ref.state_dict()}, ptv := tmp_path / "ptv.pyth")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(ptv))}: not a torchvision checkpoint.*model_state"):
        build_model("torchvision", ptv, arch="mc3_18")
    with pytest.raises(CheckpointError, match=r"does not match the torchvision r3d_18: .*shape mismatches"):
        build_model("torchvision", plain, arch="r3d_18")


def test_pytorchvideo_hub_format(tmp_path: Path) -> None:
    ref = hub.x3d_xs(pretrained=False)
    torch.save(ref.state_dict(), plain := tmp_path / "X3D_XS.pyth")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(plain))}: not a PyTorchVideo hub checkpoint: no 'model_state' entry"):
        build_model("pytorchvideo", plain, arch="x3d_xs")
    torch.save({"model_state": ref.state_dict(), "epoch": 1}, good := tmp_path / "good.pyth")
    model = build_model("pytorchvideo", good, arch="x3d_xs", frames=4, crop_size=32)
    assert model.provenance["epoch"] == 1 and model.provenance["entry"] == "model_state"
    with pytest.raises(CheckpointError, match="does not match the pytorchvideo x3d_l"):
        build_model("pytorchvideo", good, arch="x3d_l")


@pytest.mark.parametrize("entry", [None, "state_dict", "model_state", "model"])
def test_custom_builder_and_its_checkpoint(entry: str | None, tmp_path: Path) -> None:
    ref = TinyVideoNet(width=4)
    randomize_(ref, seed=5)
    state = ref.state_dict()
    torch.save(state if entry is None else {entry: state, "epoch": 9}, path := tmp_path / "mine.pt")
    model = build_model("custom", path, builder="model_fixtures:tiny_video_net", builder_options={"width": 4},
                        frames=4, crop_size=32, layers=["stage1"])
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    seen = {}
    ref.classifier.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0]))
    ref.stage1.register_forward_hook(lambda m, a, o: seen.__setitem__("stage1", o.mean(dim=(2, 3, 4))))
    with torch.no_grad():
        ref.eval()(x)
        out = model(x)
    torch.testing.assert_close(out["representation"], seen["in"])
    torch.testing.assert_close(out["layer.stage1"], seen["stage1"])
    assert model.provenance["classifier"] == "classifier" and model.provenance["entry"] == entry
    assert model.provenance["builder_options"] == {"width": 4}


def test_custom_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the builder option"):
        build_model("custom")
    with pytest.raises(ValueError, match=r"builder must be 'package.module:function', got 'model_fixtures.tiny'"):
        build_model("custom", builder="model_fixtures.tiny")
    with pytest.raises(ValueError, match="cannot import module 'no_such_package'"):
        build_model("custom", builder="no_such_package:f")
    with pytest.raises(ValueError, match="module 'model_fixtures' has no function 'nope'"):
        build_model("custom", builder="model_fixtures:nope")
    with pytest.raises(ValueError, match="returned a str, not a torch.nn.Module"):
        build_model("custom", builder="model_fixtures:not_a_module")
    with pytest.raises(ValueError, match=r"no module named 'head' \(the classifier\)"):
        build_model("custom", builder="model_fixtures:tiny_video_net", classifier="head")
    torch.save({"weights": {}}, odd := tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(odd))}: not a state dict, and no state_dict / model_state / model entry"):
        build_model("custom", odd, builder="model_fixtures:tiny_video_net")
    model = build_model("custom", builder="model_fixtures:tiny_video_net", frames=4, crop_size=32)
    with pytest.raises(ValueError, match=r"expects input B×3×4×32×32 .* got \(1, 3, 8, 32, 32\)"):
        model(torch.zeros(1, 3, 8, 32, 32))


def test_seeded_library_models_are_deterministic() -> None:
    a = build_model("torchvision", arch="r2plus1d_18", seed=4).state_dict()
    torch.manual_seed(99)
    b = build_model("torchvision", arch="r2plus1d_18", seed=4).state_dict()
    c = build_model("torchvision", arch="r2plus1d_18", seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.fc.weight"], c["net.fc.weight"])


def test_bad_layer_names_list_close_matches() -> None:
    with pytest.raises(ValueError, match=r"no layer named 'layer5'; did you mean 'layer4', 'layer3', 'layer2', 'layer1'.*91 in all; list them with `python -m dimcollapse.models.layers torchvision --arch r3d_18`"):
        build_model("torchvision", arch="r3d_18", layers=["layer5"])
    with pytest.raises(ValueError, match="layers must be a list of module names"):
        build_model("torchvision", arch="r3d_18", layers="layer4")
    with pytest.raises(ValueError, match="valid archs: r3d_18, mc3_18"):
        build_model("torchvision", arch="r4d")


def test_module_names_are_the_networks_own() -> None:
    assert module_names("torchvision", {"arch": "r3d_18"}) == tuple(n for n, _ in tvv.r3d_18().named_modules() if n)
    names = module_names("pytorchvideo", {"arch": "mvit_base_16x4"})  # built on CPU: its constructor reads tensors
    assert "blocks.15.attn" in names and "head.proj" in names
    assert module_names("custom", {"builder": "model_fixtures:tiny_video_net"})[:2] == ("stem", "stem.0")
    assert "backbone.s4.pathway0_res5" in module_names("moco")


def test_layer_features_of_paper_models_keep_their_outputs() -> None:
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = build_model("MoCo", crop_size=32, seed=1)
    s3 = "backbone.s3.pathway0_res3"
    layered = build_model("MoCo", crop_size=32, seed=1, layers=[s3, "backbone.head.projection"])
    seen = {}
    plain.get_submodule(s3).register_forward_hook(lambda m, a, o: seen.__setitem__("s3", o.mean(dim=(2, 3, 4))))
    with torch.no_grad():
        expected, out = plain(x), layered(x)
    assert list(out) == ["representation", "embedding", f"layer.{s3}", "layer.backbone.head.projection"]
    torch.testing.assert_close(out["representation"], expected["representation"])
    torch.testing.assert_close(out["embedding"], expected["embedding"])
    torch.testing.assert_close(out[f"layer.{s3}"], seen["s3"])
    assert layered.provenance["layers"] == [s3, "backbone.head.projection"]


def test_layers_that_do_not_give_one_row_per_clip_are_refused() -> None:
    x = torch.zeros(2, 5, 3, 5, 32, 32)
    folded = build_model("DPC", arch="resnet18", sample_size=32, layers=["backbone.layer1"])
    with pytest.raises(ValueError, match=r"layer 'backbone.layer1': output shape \(10, 64, 5, 8, 8\) does not start with the batch dimension 2"):
        folded(x)
    container = build_model("DPC", arch="resnet18", sample_size=32, layers=["agg.cell_list"])  # a ModuleList
    with pytest.raises(ValueError, match=r"layer\(s\) \['agg.cell_list'\] did not run in the forward pass"):
        container(x)


def test_class_token_is_kept_when_asked() -> None:
    """(Dropping it, the default, is checked against the library above: mvit ``tokens_cls``.)"""
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    model = build_model("pytorchvideo", arch="mvit_base_16x4", frames=4, crop_size=32, layers=["blocks.0", "patch_embed"],
                        cls_token=True)
    seen = {}
    model.net.blocks[0].register_forward_hook(lambda m, a, o: seen.__setitem__("t", o[0].clone()))
    with torch.no_grad():
        out = model(x)
    assert seen["t"].shape[1] == 1 + 2 * 8 * 8  # class token + T/2 × H/4 × W/4 patches
    torch.testing.assert_close(out["layer.blocks.0"], seen["t"].mean(dim=1))


def test_fixed_input_archs_say_so() -> None:
    with pytest.raises(ValueError, match=r"torchvision mvit_v1_b only accepts 16-frame clips of 224×224 .* crop_size=128"):
        build_model("torchvision", arch="mvit_v1_b", crop_size=128)


def test_layer_names_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from dimcollapse.models.layers import main

    main(["torchvision", "--arch", "mc3_18"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["stem", "stem.0"] and "layer4.1.conv2" in lines and lines[-1] == "fc"
