"""The supervised baseline against the installed PyTorchVideo ``slow_r50`` (proj = Identity)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pytorchvideo.models.hub import slow_r50
from torch import nn

from dimcollapse.models import CheckpointError, build_model
from model_fixtures import randomize_

CROP = 64  # s5 map 2×2: the hub's 7×7 pool does not fit, so both sides use (8, 2, 2)




class _FixedMap(nn.Module):
    """Stands in for the backbone: returns a given s5 feature map."""

    def __init__(self, fmap: torch.Tensor) -> None:
        super().__init__()
        self.fmap = fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fmap


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[nn.Module, Path]]:
    """PyTorchVideo's slow_r50 with random weights, and those weights as a ``SLOW_8x8_R50.pyth`` file."""
    model = slow_r50(pretrained=False)
    randomize_(model, 3)
    path = tmp_path_factory.mktemp("ptv") / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": model.state_dict()}, path)
    model.blocks[-1].proj = nn.Identity()
    yield model.eval(), path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, 3, 8, CROP, CROP, generator=torch.Generator().manual_seed(4))


@pytest.fixture(scope="module")
def ours(hub: tuple[nn.Module, Path], clip: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return build_model("supervised", hub[1], crop_size=CROP)(clip)["representation"]


def skeleton(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Entry i becomes the number i broadcast to the entry's shape and dtype (tiny on disk)."""
    return {k: torch.tensor(i, dtype=v.dtype).expand(v.shape) for i, (k, v) in enumerate(state.items())}


def hub_skeleton() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = slow_r50(pretrained=False).state_dict()
    return skeleton(shapes)


def test_matches_pytorchvideo_slow_r50(hub: tuple[nn.Module, Path], clip: torch.Tensor, ours: torch.Tensor) -> None:
    reference_model, _ = hub
    reference_model.blocks[-1].pool = nn.AvgPool3d((8, 2, 2), stride=1)
    with torch.no_grad():
        reference = reference_model(clip)
    assert ours.shape == reference.shape == (2, 2048)
    assert float((ours - reference).abs().max() / reference.abs().max()) < 1e-5
    diff, ref_diff = ours[0] - ours[1], reference[0] - reference[1]
    assert float((diff - ref_diff).abs().max() / ref_diff.abs().max()) < 1e-4


@pytest.mark.parametrize(("crop", "side", "kernel"), [(224, 7, (8, 7, 7)), (256, 8, (8, 7, 7)), (128, 4, (8, 4, 4))])
def test_head_equals_pytorchvideo_head(crop: int, side: int, kernel: tuple[int, ...], hub: tuple[nn.Module, Path]) -> None:
    """At 224 the hub's (8,7,7) pool is global; at 256 the original kernel is kept; below 224 it shrinks to the map."""
    model = build_model("supervised", crop_size=crop)
    assert tuple(model.head_pool.kernel_size) == kernel
    fmap = torch.randn(2, 2048, 8, side, side, generator=torch.Generator().manual_seed(crop))
    model.backbone = _FixedMap(fmap)
    head = hub[0].blocks[-1]
    head.pool = nn.AvgPool3d(kernel, stride=1)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.zeros(1, 3, 8, crop, crop))["representation"], head(fmap))
    if crop == 224:
        torch.testing.assert_close(head(fmap), fmap.mean(dim=(2, 3, 4)))


def test_every_pytorchvideo_key_lands_in_exactly_one_weight(tmp_path: Path) -> None:
    state = hub_skeleton()
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": state}, path)
    model = build_model("supervised", path)
    loaded = model.state_dict()
    values = sorted(int(v.flatten()[0]) for v in loaded.values())
    expected = sorted(int(v.flatten()[0]) for k, v in state.items() if not k.startswith("blocks.5.proj."))
    assert values == expected  # a bijection between file entries and model entries
    assert model.provenance["ignored"] == ["blocks.5.proj.weight", "blocks.5.proj.bias"]
    assert model.provenance["format"] == "pytorchvideo" and model.provenance["head_pool_kernel"] == [8, 7, 7]


def test_changing_one_weight_in_the_file_changes_the_output(
    hub: tuple[nn.Module, Path], clip: torch.Tensor, ours: torch.Tensor, tmp_path: Path
) -> None:
    path = tmp_path / "changed.pyth"
    raw = torch.load(hub[1], weights_only=True)
    key = "blocks.4.res_blocks.2.branch2.conv_c.weight"
    raw["model_state"][key] = raw["model_state"][key].clone()
    raw["model_state"][key][0, 0] += 1.0
    torch.save(raw, path)
    with torch.no_grad():
        changed = build_model("supervised", path, crop_size=CROP)(clip)["representation"]
    path.unlink()  # 130 MB
    assert not torch.allclose(changed, ours)


@pytest.mark.parametrize(("frames", "kernel"), [(16, (8, 7, 7)), (4, (4, 7, 7))])
def test_frames_set_the_expected_input_and_shrink_the_pool_only_where_it_does_not_fit(
    frames: int, kernel: tuple[int, ...], hub: tuple[nn.Module, Path]
) -> None:
    model = build_model("supervised", frames=frames)
    assert tuple(model.head_pool.kernel_size) == kernel
    assert model.expected_input_shape == (3, frames, 224, 224)
    with pytest.raises(ValueError, match=rf"expects input B×3×{frames}×224×224 .* got \(1, 3, 5, 224, 224\)"):
        model(torch.zeros(1, 3, 5, 224, 224))
    if frames == 16:  # the hub's own head on a 16-frame map: overlapping 8-frame windows, then the mean
        fmap = torch.randn(1, 2048, 16, 7, 7, generator=torch.Generator().manual_seed(16))
        model.backbone = _FixedMap(fmap)
        head = hub[0].blocks[-1]
        head.pool = nn.AvgPool3d(kernel, stride=1)
        with torch.no_grad():
            torch.testing.assert_close(model(torch.zeros(1, 3, 16, 224, 224))["representation"], head(fmap))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("blocks.2.res_blocks.0.branch1_norm.running_var"),
         r"missing keys \(1\): blocks\.2\.res_blocks\.0\.branch1_norm\.running_var"),
        (lambda s: s.update({"blocks.6.proj.weight": torch.zeros(2)}), r"unexpected keys \(1\): blocks\.6\.proj\.weight"),
        (lambda s: s.update({"blocks.1.res_blocks.0.branch2.conv_a.weight": torch.zeros(64, 64, 3, 1, 1)}),
         r"shape mismatches \(1\): blocks\.1\.res_blocks\.0\.branch2\.conv_a\.weight: file \(64, 64, 3, 1, 1\) "
         r"vs model \(64, 64, 1, 1, 1\)"),
    ],
)
def test_state_dict_errors_name_the_file_and_the_keys(edit, message: str, tmp_path: Path) -> None:
    state = hub_skeleton()
    edit(state)
    path = tmp_path / "SLOW_8x8_R50.pyth"
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError, match=message) as err:
        build_model("supervised", path)
    assert str(err.value).startswith(f"{path}: does not match the supervised Slow R50")


def test_slowfast_file_is_not_a_pytorchvideo_file(tmp_path: Path) -> None:
    path = tmp_path / "MoCo.pyth"
    torch.save({"model_state": {"backbone.s1.pathway0_stem.conv.weight": torch.zeros(64, 3, 1, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(265\): blocks\.0\.conv\.weight.*unexpected keys \(1\): backbone\.s1"):
        build_model("supervised", path)
