"""The ``transformers`` family: Hugging Face video and image encoders, read with hooks.

:func:`build_transformers` loads a checkpoint folder (:mod:`dimcollapse.models.hub`) with
transformers' own ``from_pretrained`` — its key renaming included, e.g. the ``q_bias`` /
``v_bias`` of published VideoMAE files — into the class that ``config.json``'s
``architectures`` names, and refuses any missing, unexpected or mis-shaped key of the
loading report. A hand-written ``load_state_dict`` would skip that renaming and silently
leave such biases at zero.

Our clips are B×3×T×H×W; the model gets B×T×3×H×W (``pixel_values`` or
``pixel_values_videos``), or, for an image encoder, the B·T frames one by one. The
``representation`` per kind (:data:`dimcollapse.models.hub.CLASSES`):

* ``…ForVideoClassification``: the classifier's input (a forward pre-hook), as for the
  other families;
* VideoMAE (a pretraining checkpoint: its encoder), V-JEPA 2 (``skip_predictor=True``):
  ``last_hidden_state`` averaged over tokens;
* TimeSformer, ViViT: the class token of ``last_hidden_state``;
* image encoders (DINOv2, DINOv2 with registers, DINOv3, SigLIP, CLIP vision, ViT; the
  vision tower of a SigLIP/CLIP dual encoder): each frame's ``pooler_output``, averaged over
  the clip's frames.

A layer (``layer.<name>``, a ``named_modules()`` name) is its output averaged over tokens,
leaving out the class and register tokens of sequences that carry them (those as long as
the embedding module's output), then, for image encoders, over frames. ``layers="all"`` is
every transformer block, so a ViT's whole depth is one layer-wise curve.

``time_resolved`` spaces also get ``<space>_time`` (B × T′ × D, :mod:`dimcollapse.models.time_axes`):
a video encoder's tokens averaged per time position (T′ = frames / tubelet), an image
encoder's per-frame vectors (T′ = frames); their mean over T′ is the pooled space.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dimcollapse.models import hub
from dimcollapse.models.checkpoints import CheckpointError
from dimcollapse.models.hooks import check_layer_names, pool_features
from dimcollapse.models.registry import layer_space, space_layer
from dimcollapse.models.time_axes import no_time_axis, time_key
from dimcollapse.models.time_resolved import SPACE_MAJOR_TOKENS, tokens_by_time

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_LIST_LIMIT = 8


def listing_command(source: str | os.PathLike[str]) -> str:
    """The shell command that prints every layer name of a transformers checkpoint."""
    return f"python -m dimcollapse.models.layers transformers --checkpoint {source}"


def _transformers_class(spec: hub.HFClass) -> type[PreTrainedModel]:
    import transformers

    return getattr(transformers, spec.name)


def meta_network(directory: Path) -> tuple[nn.Module, hub.HFClass]:
    """The checkpoint's network on the meta device (no memory, no weights): for its module names."""
    from transformers import AutoConfig

    _, spec = hub.read_config(directory)
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    with torch.device("meta"):
        return _transformers_class(spec)(config), spec


def block_names(net: nn.Module, spec: hub.HFClass) -> list[str]:
    """Names of the transformer blocks of the part that runs: its first ``layer``/``layers``
    list with one entry per block (``num_hidden_layers``)."""
    encoder = net.get_submodule(spec.encoder)
    config: Any = encoder.config  # a transformers config (torch types module attributes as Tensor | Module)
    blocks = config.num_hidden_layers
    prefix = f"{spec.encoder}." if spec.encoder else ""
    for name, module in encoder.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and name.rsplit(".", 1)[-1] in ("layer", "layers")
            and len(module) == blocks
        ):
            return [f"{prefix}{name}.{i}" for i in range(blocks)]
    raise ValueError(f"{type(net).__name__}: found no list of {blocks} transformer blocks")


def module_names(source: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(every module name, the transformer blocks) of a checkpoint, in network order."""
    net, spec = meta_network(hub.resolve_directory(source, metadata_only=True))
    return [n for n, _ in net.named_modules() if n], block_names(net, spec)


def load_pretrained(directory: Path, spec: hub.HFClass) -> nn.Module:
    """``from_pretrained`` of the folder, strict: any key the loading report lists is an error."""
    files = hub.weight_files(directory)
    try:
        # with output_loading_info it returns (model, report), which its annotation does not say
        loaded: Any = _transformers_class(spec).from_pretrained(
            directory, output_loading_info=True, dtype=torch.float32, local_files_only=True
        )
        net, info = loaded
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise CheckpointError(
            f"{directory}: transformers cannot load it as {spec.name} ({', '.join(files)}): {first}"
        ) from err
    problems = []
    for kind in ("missing_keys", "unexpected_keys"):
        keys = sorted(info.get(kind) or ())
        if keys:
            modules = sorted({k.rsplit(".", 1)[0] for k in keys})
            problems.append(f"{len(keys)} {kind.replace('_', ' ')} {_short(keys)} (modules {_short(modules)})")
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched:
        problems.append(
            f"{len(mismatched)} mis-shaped keys {_short([f'{k}: file {a}, model {b}' for k, a, b in mismatched])}"
        )
    errors = [e for e in info.get("error_msgs") or () if e]
    if errors:
        problems.append(f"errors {_short(errors)}")
    if problems:
        raise CheckpointError(
            f"{directory} ({', '.join(files)}): {spec.name} does not match the weights: {'; '.join(problems)}"
        )
    return net


def _short(items: Sequence[str]) -> str:
    shown = ", ".join(map(str, items[:_LIST_LIMIT]))
    return f"[{shown}{', …' if len(items) > _LIST_LIMIT else ''}]"


class TransformersFeatures(nn.Module):
    """Runs a transformers encoder once per batch of B×3×T×H×W clips; returns its feature spaces."""

    def __init__(
        self,
        net: nn.Module,
        spec: hub.HFClass,
        *,
        frames: int,
        crop_size: int,
        layers: Sequence[str] = (),
        cls_token: bool = False,
        name: str = "transformers",
        listing: str = "",
        time_resolved: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.net, self.spec, self.name = net, spec, name
        self.input_shape = (3, frames, crop_size, crop_size)
        self.layers = tuple(layers)
        self.encoder = net.get_submodule(spec.encoder)  # what runs: the network, or its encoder / vision tower
        config: Any = self.encoder.config  # a transformers config, not a Tensor | Module
        for space in time_resolved:
            if (reason := no_time_axis("transformers", space, spec.representation)) is not None:
                raise ValueError(f"{name}: time_resolved: {space} has no time axis ({reason})")
            if (layer := space_layer(space)) is not None and layer not in self.layers:
                raise ValueError(f"{name}: time_resolved: {space} is not one of its layers")
        self.time_resolved = tuple(time_resolved)
        tubelet = getattr(config, "tubelet_size", 1)
        self.steps = frames // (tubelet[0] if isinstance(tubelet, (list, tuple)) else int(tubelet))
        registers = int(config.num_register_tokens) if spec.registers else 0
        self.prefix = 0 if cls_token else int(spec.class_token) + registers  # leading tokens left out of layers
        modules = dict(net.named_modules())
        check_layer_names(self.layers, modules, name, listing)
        self._captured: dict[str, torch.Tensor] = {}
        self._batch = 0
        self._sequence = -1
        embeddings = next(m for n, m in self.encoder.named_modules() if n.rsplit(".", 1)[-1] == "embeddings")
        embeddings.register_forward_hook(self._sequence_length)  # runs before any layer hook
        if spec.representation == "classifier":
            modules["classifier"].register_forward_pre_hook(self._classifier_input)
        for layer in self.layers:
            modules[layer].register_forward_hook(self._layer_output(layer, modules[layer]))

    def _sequence_length(self, _: nn.Module, args: Any, output: Any) -> None:
        self._sequence = output.shape[1] if isinstance(output, torch.Tensor) and output.ndim == 3 else -1

    def _classifier_input(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        where = f"{self.name} classifier input"
        self._captured["representation"] = pool_features(args[0], module, self._batch, "tokens", False, where)

    def _layer_output(self, layer: str, module: nn.Module) -> Callable[..., None]:
        where = f"{self.name} layer {layer!r}"

        def hook(_: nn.Module, args: Any, output: Any) -> None:
            if layer_space(layer) in self._captured:
                raise ValueError(f"{where}: runs more than once per forward pass; choose another module")
            y = (
                output[0]
                if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor)
                else output
            )
            sequence = isinstance(y, torch.Tensor) and y.ndim == 3 and y.shape[1] == self._sequence
            if sequence:
                y = y[:, self.prefix :]  # class and register tokens summarise; the mean is over positions
            self._captured[layer_space(layer)] = pool_features(y, module, self._batch, "tokens", False, where)
            if layer_space(layer) in self.time_resolved and not self.spec.image:
                if not sequence:
                    raise ValueError(
                        f"{where}: gives {tuple(getattr(y, 'shape', ()))}, not the token sequence, so "
                        "its time positions are unknown; choose a transformer block"
                    )
                self._captured[time_key(layer_space(layer))] = self._by_time(y, where)

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 5 or tuple(x.shape[1:]) != self.input_shape:
            _, t, h, w = self.input_shape
            raise ValueError(
                f"{self.name} expects input B×3×{t}×{h}×{w} (batch, RGB, frames, height, width), got "
                f"{tuple(x.shape)}; rebuild the model with matching frames/crop_size options"
            )
        b, _, t, h, w = x.shape
        video = x.transpose(1, 2)  # B×T×3×H×W
        pixels = video.reshape(b * t, 3, h, w) if self.spec.image else video
        extra = {"skip_predictor": True} if self.spec.name == "VJEPA2Model" else {}
        self._captured, self._batch = {}, pixels.shape[0]
        try:
            out = self.encoder(**{self.spec.input: pixels}, **extra)
            spaces = {"representation": self._representation(out, b, t)}
            missing = [n for n in self.layers if layer_space(n) not in self._captured]
            if missing:
                raise ValueError(
                    f"{self.name}: layer(s) {missing} did not run in the forward pass; choose modules that run"
                )
            for n in self.layers:
                y = self._captured[layer_space(n)]
                spaces[layer_space(n)] = y.reshape(b, t, -1).mean(1) if self.spec.image else y
            spaces.update(self._time_resolved(out, b, t))
        finally:
            self._captured = {}
        return spaces

    def _by_time(self, tokens: torch.Tensor, where: str) -> torch.Tensor:
        return tokens_by_time(tokens, self.steps, self.spec.name in SPACE_MAJOR_TOKENS, where)

    def _time_resolved(self, out: Any, b: int, t: int) -> dict[str, torch.Tensor]:
        """``<space>_time`` of every time-resolved space: per frame (image encoders) or per time position."""
        resolved = {}
        for space in self.time_resolved:
            if self.spec.image:
                per_frame = out.pooler_output if space == "representation" else self._captured[space]
                resolved[time_key(space)] = per_frame.reshape(b, t, -1)
            elif space == "representation":  # token_mean: the mean of every token
                resolved[time_key(space)] = self._by_time(out.last_hidden_state, f"{self.name} representation")
            else:
                resolved[time_key(space)] = self._captured[time_key(space)]
        return resolved

    def _representation(self, out: Any, b: int, t: int) -> torch.Tensor:
        kind = self.spec.representation
        if kind == "classifier":
            return self._captured["representation"]
        if kind == "token_mean":
            return out.last_hidden_state.mean(1)
        if kind == "class_token":
            return out.last_hidden_state[:, 0]
        if out.pooler_output is None:
            raise ValueError(f"{self.name}: the model has no pooling head (pooler_output is None)")
        return out.pooler_output.reshape(b, t, -1).mean(1)


def build_transformers(
    checkpoint: str | os.PathLike[str] | None,
    *,
    frames: int | None,
    crop_size: int | None,
    layers: Sequence[str] | str,
    cls_token: bool = False,
    time_resolved: Sequence[str] = (),
) -> tuple[TransformersFeatures, dict[str, Any]]:
    """The eval-mode :class:`TransformersFeatures` of a checkpoint folder or ``hf://`` id, and its provenance.

    ``frames``/``crop_size`` default to the checkpoint's configured clip; a clip the class's
    forward cannot take is refused here. ``layers``: module names, or ``"all"`` (every block).
    ``cls_token``: keep the class and register tokens in layer averages. ``time_resolved``:
    spaces that also get ``<space>_time``.
    """
    if checkpoint is None:
        raise ValueError("method transformers needs a checkpoint: a save_pretrained folder or hf://<org>/<name>")
    directory = hub.resolve_directory(checkpoint)
    config, spec = hub.read_config(directory)
    want_frames, want_size = hub.frames_and_size(config, spec)
    frames = frames if frames is not None else want_frames or 8
    crop_size = crop_size if crop_size is not None else want_size
    problem = hub.clip_problem(config, spec, frames, crop_size)
    if problem is not None:
        raise ValueError(f"{directory}: {problem}")
    net = load_pretrained(directory, spec)
    if layers == "all":
        layers = block_names(net, spec)
    elif isinstance(layers, str):
        raise ValueError(f"layers must be a list of module names or 'all', got {layers!r}")
    model = TransformersFeatures(
        net,
        spec,
        frames=frames,
        crop_size=crop_size,
        layers=layers,
        cls_token=cls_token,
        name=f"transformers {spec.name}",
        listing=listing_command(checkpoint),
        time_resolved=time_resolved,
    )
    provenance = {
        "class": spec.name,
        "directory": str(directory),
        "frames": frames,
        "crop_size": crop_size,
        "representation": spec.representation,
        "init": "from_pretrained (strict)",
    }
    return model, provenance


__all__ = [
    "TransformersFeatures",
    "block_names",
    "build_transformers",
    "listing_command",
    "load_pretrained",
    "meta_network",
    "module_names",
]
