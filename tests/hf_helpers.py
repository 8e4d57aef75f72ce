"""Tiny Hugging Face transformers checkpoints for tests, and a Hub cache to hold them offline."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import transformers

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8)
FRAMES, SIZE = 4, 32


def tiny_config(name: str, **overrides: Any) -> Any:
    """A tiny random config of class ``name`` (REFERENCE §13), with three labels for classifiers;
    ``overrides`` replace entries of :data:`TINY` (not for V-JEPA 2)."""
    tiny = {**TINY, **overrides}
    labels = {"num_labels": 3} if "Classification" in name else {}
    if name.startswith("VideoMAE"):
        return transformers.VideoMAEConfig(**tiny, num_frames=FRAMES, tubelet_size=2, **labels,
                                           decoder_hidden_size=32, decoder_num_hidden_layers=1,
                                           decoder_num_attention_heads=4, decoder_intermediate_size=64)
    if name.startswith("VJEPA2"):
        return transformers.VJEPA2Config(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2.0, crop_size=SIZE, patch_size=8,
            frames_per_clip=FRAMES, tubelet_size=2, pred_hidden_size=32, pred_num_hidden_layers=1,
            pred_num_attention_heads=4, num_pooler_layers=1, **labels)
    if name.startswith("Timesformer"):
        return transformers.TimesformerConfig(**tiny, num_frames=FRAMES, **labels)
    if name.startswith("Vivit"):
        patch = tiny.pop("patch_size")
        return transformers.VivitConfig(**tiny, num_frames=FRAMES, tubelet_size=[2, patch, patch], **labels)
    if name in ("SiglipModel", "CLIPModel"):
        text = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128, vocab_size=99)
        config = transformers.SiglipConfig if name == "SiglipModel" else transformers.CLIPConfig
        extra = {} if name == "SiglipModel" else {"projection_dim": 32}
        return config(text_config=text, vision_config=tiny, **extra)
    configs = {
        "Dinov2Model": transformers.Dinov2Config, "Dinov2WithRegistersModel": transformers.Dinov2WithRegistersConfig,
        "DINOv3ViTModel": transformers.DINOv3ViTConfig, "SiglipVisionModel": transformers.SiglipVisionConfig,
        "CLIPVisionModel": transformers.CLIPVisionConfig, "ViTModel": transformers.ViTConfig,
    }
    extra = {"num_register_tokens": 2} if "Registers" in name or "DINOv3" in name else {}
    return configs[name](**tiny, **extra)


def save_tiny(name: str, directory: Path, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """Save a seeded random ``name`` with every parameter non-zero (biases too) and return it."""
    torch.manual_seed(seed)
    net = getattr(transformers, name)(tiny_config(name, **overrides)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net.save_pretrained(directory)
    return net



def hub_snapshot(home: Path, repo_id: str, folder: Path, commit: str = "0123456789abcdef" * 2 + "01234567") -> Path:
    """Put ``folder`` into the Hub cache under ``home`` (``HF_HOME``) as ``repo_id`` at ``commit``,
    in huggingface_hub's layout (``hub/models--org--name/snapshots/<commit>/``, ``refs/main``)."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
