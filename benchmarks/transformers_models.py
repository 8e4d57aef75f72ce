"""The README's table of ``transformers`` models, measured on their published configurations.

For each model, the configuration of the published checkpoint (hyperparameters and the
preprocessor's clip, written here from the model cards and ``config.json`` files) is saved as
a checkpoint folder would hold it; then, with the code the workflow runs:

* the default protocol comes from :func:`dimcollapse.config.transformers_clip` (what an
  instance of that checkpoint samples unless ``protocol_options`` say otherwise);
* the network is built on the meta device (no memory, no weights) and its parameters counted;
* the representation dimension is the width of what :class:`dimcollapse.models.hf.TransformersFeatures`
  returns for one clip of the default size, run on the meta device.

:func:`random_checkpoint` writes a folder with random weights of one of these configurations
(what ``gpu_check.py`` times).

    python benchmarks/transformers_models.py          # prints the Markdown table (seconds, no weights)
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dimcollapse.config.instances import transformers_clip  # noqa: E402
from dimcollapse.models.hf import TransformersFeatures, meta_network  # noqa: E402

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
CLIP_NORM = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


def _pre(short: int, crop: int, norm: Mapping[str, Any] = IMAGENET, **extra: Any) -> dict[str, Any]:
    return {"size": {"shortest_edge": short}, "crop_size": {"height": crop, "width": crop}, **norm, **extra}


@dataclass(frozen=True)
class Published:
    """A published checkpoint's configuration: its Hub id, ``config.json`` and preprocessor config."""

    label: str
    hub_id: str
    config: Mapping[str, Any]
    preprocessor: Mapping[str, Any]
    preprocessor_file: str = "preprocessor_config.json"

    @property
    def architecture(self) -> str:
        return self.config["architectures"][0]


_VIT_B = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
_K400 = {"num_labels": 400}
_VJEPA = {"model_type": "vjepa2", "architectures": ["VJEPA2Model"], "crop_size": 256, "frames_per_clip": 64,
          "patch_size": 16, "tubelet_size": 2}
_VJEPA_PRE = "video_preprocessor_config.json"

PUBLISHED: tuple[Published, ...] = (
    Published("VideoMAE-B (self-supervised)", "MCG-NJU/videomae-base",
              {"model_type": "videomae", "architectures": ["VideoMAEForPreTraining"], **_VIT_B, "image_size": 224,
               "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "qkv_bias": True, "use_mean_pooling": False,
               "decoder_hidden_size": 384, "decoder_num_hidden_layers": 4, "decoder_num_attention_heads": 6,
               "decoder_intermediate_size": 1536}, _pre(224, 224)),
    Published("VideoMAE-B K400", "MCG-NJU/videomae-base-finetuned-kinetics",
              {"model_type": "videomae", "architectures": ["VideoMAEForVideoClassification"], **_VIT_B, **_K400,
               "image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2, "use_mean_pooling": True},
              _pre(224, 224)),
    Published("V-JEPA 2 ViT-L", "facebook/vjepa2-vitl-fpc64-256",
              {**_VJEPA, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "mlp_ratio": 4.0},
              _pre(292, 256), _VJEPA_PRE),
    Published("V-JEPA 2 ViT-H", "facebook/vjepa2-vith-fpc64-256",
              {**_VJEPA, "hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "mlp_ratio": 4.0},
              _pre(292, 256), _VJEPA_PRE),
    Published("V-JEPA 2 ViT-g", "facebook/vjepa2-vitg-fpc64-256",
              {**_VJEPA, "hidden_size": 1408, "num_hidden_layers": 40, "num_attention_heads": 22,
               "mlp_ratio": 48 / 11}, _pre(292, 256), _VJEPA_PRE),
    Published("TimeSformer-B K400", "facebook/timesformer-base-finetuned-k400",
              {"model_type": "timesformer", "architectures": ["TimesformerForVideoClassification"], **_VIT_B, **_K400,
               "image_size": 224, "patch_size": 16, "num_frames": 8}, _pre(224, 224)),
    Published("ViViT-B 16x2 K400", "google/vivit-b-16x2-kinetics400",
              {"model_type": "vivit", "architectures": ["VivitForVideoClassification"], **_VIT_B, **_K400,
               "image_size": 224, "num_frames": 32, "tubelet_size": [2, 16, 16]},
              _pre(256, 224, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}, rescale_factor=1 / 127.5,
                   offset=True)),
    Published("DINOv2-B", "facebook/dinov2-base",
              {"model_type": "dinov2", "architectures": ["Dinov2Model"], **_VIT_B, "image_size": 518, "patch_size": 14},
              _pre(256, 224)),
    Published("DINOv2-B with registers", "facebook/dinov2-with-registers-base",
              {"model_type": "dinov2_with_registers", "architectures": ["Dinov2WithRegistersModel"], **_VIT_B,
               "image_size": 518, "patch_size": 14, "num_register_tokens": 4}, _pre(256, 224)),
    Published("DINOv3 ViT-B/16", "facebook/dinov3-vitb16-pretrain-lvd1689m",
              {"model_type": "dinov3_vit", "architectures": ["DINOv3ViTModel"], **_VIT_B, "image_size": 224,
               "patch_size": 16, "num_register_tokens": 4, "layerscale_value": 1.0},
              {"size": {"height": 224, "width": 224}, **IMAGENET}),
    Published("SigLIP B/16-224", "google/siglip-base-patch16-224",
              {"model_type": "siglip", "architectures": ["SiglipModel"],
               "text_config": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                               "intermediate_size": 3072},
               "vision_config": {**_VIT_B, "image_size": 224, "patch_size": 16}},
              {"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}),
    Published("CLIP ViT-B/16", "openai/clip-vit-base-patch16",
              {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": 512,
               "text_config": {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
                               "intermediate_size": 2048},
               "vision_config": {**_VIT_B, "image_size": 224, "patch_size": 16}}, _pre(224, 224, CLIP_NORM)),
    Published("ViT-B/16 (IN-21k)", "google/vit-base-patch16-224-in21k",
              {"model_type": "vit", "architectures": ["ViTModel"], **_VIT_B, "image_size": 224, "patch_size": 16},
              {"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}),
)


def write_config(model: Published, folder: Path) -> Path:
    """``config.json`` and the preprocessor config of ``model`` in ``folder`` (no weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config))
    (folder / model.preprocessor_file).write_text(json.dumps(model.preprocessor))
    return folder


def random_checkpoint(model: Published, folder: Path, seed: int = 0) -> Path:
    """A checkpoint folder of ``model``'s configuration with seeded random weights (transformers' init)."""
    write_config(model, folder)
    net, _ = meta_network(folder)
    torch.manual_seed(seed)
    type(net)(net.config).save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class Facts:
    """What the table says about one published model."""

    model: Published
    clip: Mapping[str, Any]
    dim: int
    parameters: int


def measure(model: Published, folder: Path) -> Facts:
    clip = transformers_clip(model.label, str(write_config(model, folder)))
    net, spec = meta_network(folder)
    features = TransformersFeatures(net, spec, frames=clip["frames"], crop_size=clip["crop_size"])
    with torch.device("meta"):
        rep = features(torch.empty(1, 3, clip["frames"], clip["crop_size"], clip["crop_size"]))["representation"]
    return Facts(model, clip, int(rep.shape[1]), sum(p.numel() for p in net.parameters()))


def table(facts: list[Facts]) -> list[str]:
    lines = ["| model (Hub id) | class | representation dim | default protocol (frames × rate, short side → crop, mean / std) | parameters |",
             "|---|---|---|---|---|"]
    for f in facts:
        c = f.clip
        norm = "/".join(f"{m:.3g}" for m in c["mean"]) + " / " + "/".join(f"{s:.3g}" for s in c["std"])
        lines.append(f"| {f.model.label} (`{f.model.hub_id}`) | `{f.model.architecture}` | {f.dim} | "
                     f"{c['frames']} × {c['rate']}, {c['side_size']} → {c['crop_size']}, {norm} | "
                     f"{f.parameters / 1e6:.1f} M |")
    return lines


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        facts = [measure(m, Path(tmp) / str(i)) for i, m in enumerate(PUBLISHED)]
    print("\n".join(table(facts)))


if __name__ == "__main__":
    main()
