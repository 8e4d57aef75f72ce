"""The ``transformers`` family against transformers' own forward, on tiny random configs.

Each supported class is saved with ``save_pretrained`` (the Hub's folder layout), built
with ``build_model("transformers", …)`` and compared with the same checkpoint loaded and
run by transformers itself: the representation as the README pins it per kind and one
layer (block 0, tokens averaged without class/register tokens), ≤ 1e-5 relative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

from dimcollapse.models import CheckpointError, build_model  # noqa: E402
from dimcollapse.models import hub  # noqa: E402
from hf_helpers import FRAMES, SIZE, save_tiny  # noqa: E402

BATCH = 2

def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return a.shape == b.shape and float((a - b).norm() / b.norm().clamp_min(1e-12)) <= rel


def reference(name: str, net: Any, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(representation, block-0 feature) computed with transformers' own forward, as the README pins them."""
    spec = hub.CLASSES[name]
    video = clip.transpose(1, 2)  # B×T×3×H×W
    b, t = video.shape[:2]
    with torch.no_grad():
        if spec.image:
            net = net.get_submodule(spec.encoder)
            out = net(pixel_values=video.reshape(b * t, *video.shape[2:]), output_hidden_states=True)
            prefix = 1 + getattr(net.config, "num_register_tokens", 0) * spec.registers if spec.class_token else 0
            block0 = out.hidden_states[1][:, prefix:].mean(1).reshape(b, t, -1).mean(1)
            return out.pooler_output.reshape(b, t, -1).mean(1), block0
        prefix = {"VideoMAE": "videomae", "VJEPA2": "vjepa2", "Timesformer": "timesformer", "Vivit": "vivit"}
        base = net if name.endswith("Model") else getattr(net, next(v for k, v in prefix.items() if name.startswith(k)))
        kwargs = {"skip_predictor": True} if name.startswith("VJEPA2") else {}
        out = base(**{spec.input: video}, output_hidden_states=True, **kwargs)
        block0 = out.hidden_states[1][:, int(spec.class_token):].mean(1)
        last = out.last_hidden_state
        if name == "VideoMAEForVideoClassification":
            rep = net.fc_norm(last.mean(1))
        elif name == "VJEPA2ForVideoClassification":
            rep = net.pooler(last)
        elif spec.class_token:
            rep = last[:, 0]
        else:
            rep = last.mean(1)
        if spec.representation == "classifier":  # it is what the classifier reads
            assert close(net.classifier(rep), net(**{spec.input: video}).logits)
        return rep, block0


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(BATCH, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(hub.CLASSES))
def test_every_class_equals_transformers_forward(name: str, tmp_path: Path, clip: torch.Tensor) -> None:
    net = save_tiny(name, tmp_path)
    want_rep, want_block0 = reference(name, net, clip)
    model = build_model("transformers", checkpoint=tmp_path, layers="all", frames=FRAMES)
    with torch.no_grad():
        got = model(clip)
    block0, block1 = model.layers
    assert block0.endswith(".0") and block1.endswith(".1")
    assert set(got) == {"representation", f"layer.{block0}", f"layer.{block1}"}
    assert close(got["representation"], want_rep), name
    assert close(got[f"layer.{block0}"], want_block0), name
    assert model.provenance["class"] == name


def test_clip_defaults_come_from_the_checkpoint(tmp_path: Path, clip: torch.Tensor) -> None:
    save_tiny("VideoMAEModel", tmp_path)
    model = build_model("transformers", checkpoint=str(tmp_path))
    assert (model.provenance["frames"], model.provenance["crop_size"]) == (FRAMES, SIZE)
    with pytest.raises(ValueError, match="position embeddings for 4 frames only"):
        build_model("transformers", checkpoint=tmp_path, frames=8)


def test_published_videomae_layout_with_q_and_v_bias_loads(tmp_path: Path, clip: torch.Tensor) -> None:
    """A file with the original VideoMAE key names (``q_bias``/``v_bias``, ``videomae.`` prefix,
    written by hand, not by save_pretrained) loads through from_pretrained's renaming."""
    net = save_tiny("VideoMAEModel", tmp_path / "saved")
    state = {}
    for key, value in net.state_dict().items():
        key = key.replace("attention.attention.query.bias", "attention.attention.q_bias")
        key = key.replace("attention.attention.value.bias", "attention.attention.v_bias")
        state[f"videomae.{key}"] = value.clone().contiguous()
    assert sum(k.endswith(("q_bias", "v_bias")) for k in state) == 4
    published = tmp_path / "published"
    published.mkdir()
    save_file(state, published / "model.safetensors", metadata={"format": "pt"})
    (published / "config.json").write_text((tmp_path / "saved" / "config.json").read_text())
    model = build_model("transformers", checkpoint=published)
    with torch.no_grad():
        got = model(clip)["representation"]
    assert float(net.encoder.layer[0].attention.attention.query.bias.detach().abs().min()) > 0
    assert close(got, reference("VideoMAEModel", net, clip)[0])


def test_a_missing_tensor_names_the_directory_and_module(tmp_path: Path) -> None:
    save_tiny("VideoMAEModel", tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["encoder.layer.1.output.dense.weight"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        build_model("transformers", checkpoint=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "model.safetensors" in message
    assert "missing keys" in message and "encoder.layer.1.output.dense" in message


def test_bad_folders_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no config.json"):
        build_model("transformers", checkpoint=tmp_path)
    transformers.BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                            architectures=["BertForMaskedLM"]).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="BertForMaskedLM .* not a video or image encoder"):
        build_model("transformers", checkpoint=tmp_path)
    sharded = tmp_path / "sharded"
    save_tiny("ViTModel", sharded)
    index = {"metadata": {}, "weight_map": {k: f"model-0000{1 + i % 2}-of-00002.safetensors"
                                           for i, k in enumerate(load_file(sharded / "model.safetensors"))}}
    (sharded / "model.safetensors").unlink()
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"shard\(s\) .*model-00001-of-00002.safetensors.* missing"):
        build_model("transformers", checkpoint=sharded)


def test_sharded_and_bin_folders_load(tmp_path: Path, clip: torch.Tensor) -> None:
    net = save_tiny("ViTModel", tmp_path / "a")
    net.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    torch.save(net.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
    want = reference("ViTModel", net, clip)[0]
    for folder in ("sharded", "bin"):
        model = build_model("transformers", checkpoint=tmp_path / folder, frames=FRAMES)
        with torch.no_grad():
            assert close(model(clip)["representation"], want)


def test_cls_token_keeps_class_and_register_tokens_in_layers(tmp_path: Path, clip: torch.Tensor) -> None:
    net = save_tiny("Dinov2WithRegistersModel", tmp_path)
    model = build_model("transformers", checkpoint=tmp_path, layers=["encoder.layer.0"], frames=FRAMES, cls_token=True)
    video = clip.transpose(1, 2).reshape(BATCH * FRAMES, 3, SIZE, SIZE)
    with torch.no_grad():
        want = net(pixel_values=video, output_hidden_states=True).hidden_states[1].mean(1)
        got = model(clip)["layer.encoder.layer.0"]
    assert close(got, want.reshape(BATCH, FRAMES, -1).mean(1))
