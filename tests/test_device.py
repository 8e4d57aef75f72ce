"""Model preparation and precision: CUDA's preparation of every family, run on the CPU.

``prepare_model`` decides the preparation from the model and a device *type*, so applying
``device_type="cuda"`` on the CPU runs exactly what a GPU gets (memory format, flags; only
the device differs). Converting a whole module to channels-last 3D — what the preparation
did before — fails on any rank-4 weight, on the CPU as on CUDA.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dimcollapse.extraction.device import (
    PRECISIONS,
    forward_views,
    precision_context,
    prepare_model,
    preparation_for,
    relative_error,
)
from dimcollapse.models import METHODS, build_model

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _families():
    spec = importlib.util.spec_from_file_location("families", REPO / "benchmarks" / "families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["families"] = module
    spec.loader.exec_module(module)
    return module


families = _families()
#: Architectures made of attention blocks (a 3D patch embedding at most): they stay contiguous.
TOKEN_ARCHS = {"mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b", "mvit_base_16x4"}
#: One library arch per network code path is built, prepared and run here (the others share
#: its modules; every arch's preparation is decided below, and gpu_check runs them all).
RUN = {"r3d_18", "r2plus1d_18", "s3d", "swin3d_t", "slow_r50", "slowfast_r50", "x3d_xs", "i3d_r50", "csn_r101",
       "mvit_base_16x4"}


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> list:
    return families.every_family(tmp_path_factory.mktemp("hf"))


def test_a_whole_module_conversion_fails_on_rank_4_weights(specs: list) -> None:
    """What crashed on the GPU node, reproduced on the CPU: DPC's ConvGRU and a Conv2d patch
    embedding refuse ``channels_last_3d``; the preparation converts only Conv3d weights."""
    for label in ("DPC R18-32", "TimeSformer (TimesformerModel) 4x32"):
        spec = next(s for s in specs if s.label == label)
        model = build_model(spec.method, seed=0, **spec.options)
        with pytest.raises(RuntimeError, match="rank 5"):
            copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
        prepare_model(model, CPU, device_type="cuda")  # no error


def test_every_library_arch_gets_channels_last_exactly_when_it_is_a_3d_cnn() -> None:
    from dimcollapse.models import ARCHS
    from dimcollapse.models.zoo import construct, library_net

    for table in ARCHS.values():
        for arch, info in table.items():
            net = construct(lambda: library_net(info, info.frames, info.crop_size), 0, will_load=True)  # no init
            layout = preparation_for(net, "cuda").memory_format
            assert layout == (torch.contiguous_format if arch in TOKEN_ARCHS else torch.channels_last_3d), arch


@pytest.mark.parametrize("group", ["paper", "torchvision", "pytorchvideo", "transformers", "custom"])
def test_cuda_preparation_runs_every_family_on_the_cpu(group: str, specs: list) -> None:
    """Every family and kind through CUDA's preparation: channels-last 3D exactly for the 3D
    CNNs (their Conv3d weights and 5-D inputs), contiguous elsewhere; the prepared model runs
    and, where the layout changed, gives the plain model's features to 1e-5."""
    rows = [s for s in specs if s.group == group and s.options.get("arch", "") in RUN | {"", "resnet18", "resnet34"}]
    assert rows
    for spec in rows:
        model = build_model(spec.method, seed=0, **spec.options)
        conv_net = group != "transformers" and spec.options.get("arch") not in TOKEN_ARCHS
        spaces = tuple(METHODS[spec.method].spaces)
        x = torch.randn((2, 1, *spec.clip), generator=torch.Generator().manual_seed(0))
        ref = forward_views(model, x, spaces, CPU) if conv_net else None
        prepared = prepare_model(model, CPU, device_type="cuda")
        prep = prepared.preparation
        assert prep.device_type == "cuda" and prep.cudnn_benchmark, spec.label
        assert prep.memory_format == (torch.channels_last_3d if conv_net else torch.contiguous_format), spec.label
        conv3d = [m for m in prepared.modules() if isinstance(m, torch.nn.Conv3d)]
        assert all(m.weight.is_contiguous(memory_format=prep.memory_format) for m in conv3d), spec.label
        out = forward_views(prepared, x, spaces, CPU)
        assert all(torch.isfinite(v).all() for v in out.values()), spec.label
        if ref is not None:
            assert relative_error(ref, out) <= 1e-5, spec.label


def test_the_cpu_preparation_changes_nothing() -> None:
    model = build_model("supervised", seed=0, frames=2, crop_size=32)
    prep = preparation_for(model, "cpu")
    assert prep.memory_format == torch.contiguous_format and not prep.cudnn_benchmark
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_model(model, CPU)
    assert prepared.preparation == prep
    assert all(v.is_contiguous() and torch.equal(v, weights[k]) for k, v in prepared.state_dict().items())


def test_precisions_set_tf32_and_autocast_per_call_only() -> None:
    assert set(PRECISIONS) == {"fp32", "tf32", "bf16", "fp16"}
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for name, tf32, dtype in (("fp32", False, None), ("tf32", True, None), ("bf16", True, torch.bfloat16),
                              ("fp16", True, torch.float16)):
        with precision_context(name, CPU):
            assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
            assert torch.is_autocast_enabled("cpu") is (dtype is not None)
            if dtype is not None:
                assert torch.get_autocast_dtype("cpu") == dtype
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags  # restored


def test_tf32_on_the_cpu_is_strict_fp32_and_bf16_is_not() -> None:
    model = prepare_model(build_model("DPC", seed=0, arch="resnet18", sample_size=32), CPU)
    x = torch.randn((2, 1, 5, 3, 5, 32, 32), generator=torch.Generator().manual_seed(1))
    ref = forward_views(model, x, ("representation",), CPU, "fp32")
    assert torch.equal(forward_views(model, x, ("representation",), CPU, "tf32")["representation"],
                       ref["representation"])
    assert 1e-4 < relative_error(ref, forward_views(model, x, ("representation",), CPU, "bf16")) < 0.1
