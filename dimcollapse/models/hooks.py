"""Feature spaces read off any network with hooks: the representation and named layers.

``representation`` is defined once for every model that is not one of the paper's:
the input of the network's final classification layer, averaged over every position the
layer is applied to (time, height, width, tokens), B×C. A forward pre-hook on that layer
reads it, so the network runs exactly its own forward pass.

A layer feature (``layer.<name>``, ``<name>`` from ``named_modules()``) is the module's
output averaged over all dimensions except batch and channels, read in the same forward
pass by a forward hook. Where the channels are depends on how the network lays out its
activations (:data:`dimcollapse.models.archs.Layout`): channels first for convolutional
maps, last for token sequences (B×N×C), Swin's B×T×H×W×C maps and the outputs of
``Linear``/``LayerNorm`` modules. A class token (the first token of a ViT-style sequence)
is left out of the average unless ``cls_token=True``, since it summarises the others rather
than being a position. Modules that return a tuple of a tensor and sizes (MViT blocks
return ``(tokens, thw)``) contribute the tensor; modules that return a list of tensors
(SlowFast's ``[slow, fast]`` pathways) contribute their pooled features concatenated, as
SlowFast's head concatenates its pathways. Outputs whose first dimension is not the batch (e.g. Swin's
attention windows, DPC's B·N blocks) are refused with the module's name and shape.

:mod:`dimcollapse.models.layers` lists the valid layer names of a model
(``python -m dimcollapse.models.layers <method> [--arch A | --builder M:F]``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dimcollapse.models.archs import Layout
from dimcollapse.models.registry import layer_space

_CHANNELS_LAST_MODULES = (nn.Linear, nn.LayerNorm)


def pool_features(
    y: Any, module: nn.Module, batch: int, layout: Layout, class_token: bool, where: str
) -> torch.Tensor:
    """Average ``y`` (a module's input or output) over every non-channel dimension: B×C.

    ``class_token``: a 3-D token sequence starts with a class token, which is dropped.
    """
    if isinstance(y, (tuple, list)) and y and all(isinstance(e, torch.Tensor) for e in y):
        return torch.cat([pool_features(e, module, batch, layout, class_token, where) for e in y], dim=1)
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
        y = y[0]
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{where}: gives a {type(y).__name__}, not a tensor; choose another module")
    if y.ndim < 2 or y.shape[0] != batch:
        raise ValueError(
            f"{where}: output shape {tuple(y.shape)} does not start with the batch dimension {batch} "
            "(e.g. attention windows or folded sequences); choose an enclosing module"
        )
    if y.ndim == 2:
        return y
    if not channels_last(module, layout, y.ndim):
        if layout == "tokens" and y.ndim != 5:
            raise ValueError(f"{where}: cannot tell the channel dimension of an output of shape {tuple(y.shape)}")
        return y.mean(dim=tuple(range(2, y.ndim)))
    if class_token and y.ndim == 3:
        y = y[:, 1:]
    return y.mean(dim=tuple(range(1, y.ndim - 1)))


def channels_last(module: nn.Module, layout: Layout, ndim: int) -> bool:
    """Whether ``module``'s ``ndim``-dimensional output has its channels last (else second)."""
    return isinstance(module, _CHANNELS_LAST_MODULES) or layout == "channels_last" or (layout == "tokens" and ndim == 3)


class FeatureModel(nn.Module):
    """Runs ``net`` once per batch and returns its feature spaces as a dict of B×D tensors.

    ``classifier``: name of the final classification layer whose pooled input is the
    ``representation``; None when ``net`` itself returns a dict of spaces (the paper's
    models). ``layers``: module names whose pooled outputs become ``layer.<name>``.
    ``alpha``: pack a B×3×T×H×W clip into SlowFast's ``[slow, fast]`` pathways, the slow
    one taking frames ``linspace(0, T-1, T // alpha)`` (PyTorchVideo's ``PackPathway``).
    ``input_shape``: (3, T, H, W) that ``forward`` insists on, or None.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        classifier: str | None,
        layers: Sequence[str] = (),
        layout: Layout = "conv",
        class_token: bool = False,
        no_class_token: Sequence[str] = (),
        cls_token: bool = False,
        alpha: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        name: str = "model",
        listing: str = "",
    ) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.layers = tuple(layers)
        self.alpha = alpha
        self.input_shape = input_shape
        modules = dict(net.named_modules())
        check_layer_names(self.layers, modules, name, listing)
        self._captured: dict[str, torch.Tensor] = {}
        self._batch = 0
        if classifier is not None:
            if classifier not in modules:
                raise ValueError(
                    f"{name}: no module named {classifier!r} (the classifier){_suggest(classifier, modules)}"
                )
            head = modules[classifier]
            modules[classifier].register_forward_pre_hook(self._capture_input("representation", head, layout))
        self.classifier = classifier
        for layer in self.layers:
            drops = class_token and not cls_token and not layer.startswith(tuple(no_class_token))
            modules[layer].register_forward_hook(self._capture_output(layer, modules[layer], layout, drops))

    def _capture_input(self, key: str, module: nn.Module, layout: Layout) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...]) -> None:
            self._store(
                key,
                pool_features(
                    args[0], module, self._batch, layout, False, f"{self.name} classifier {self.classifier!r} input"
                ),
            )

        return hook

    def _capture_output(self, layer: str, module: nn.Module, layout: Layout, class_token: bool) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            self._store(
                layer_space(layer),
                pool_features(output, module, self._batch, layout, class_token, f"{self.name} layer {layer!r}"),
            )

        return hook

    def _store(self, key: str, value: torch.Tensor) -> None:
        if key in self._captured:
            raise ValueError(f"{self.name}: module behind {key!r} runs more than once per forward pass; choose another")
        self._captured[key] = value

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.input_shape is not None and (x.ndim != 5 or tuple(x.shape[1:]) != self.input_shape):
            _, t, h, w = self.input_shape
            raise ValueError(
                f"{self.name} expects input B×3×{t}×{h}×{w} (batch, RGB, frames, height, width), got "
                f"{tuple(x.shape)}; rebuild the model with matching frames/crop_size options"
            )
        self._captured, self._batch = {}, x.shape[0]
        try:
            out = self.net(self.pack(x))
            spaces = dict(out) if self.classifier is None else {"representation": self._captured["representation"]}
            missing = [n for n in self.layers if layer_space(n) not in self._captured]
            if missing:
                raise ValueError(
                    f"{self.name}: layer(s) {missing} did not run in the forward pass (a container whose "
                    "children are called one by one, or an unused module); choose a module that runs, "
                    "e.g. its last child"
                )
            spaces.update({layer_space(n): self._captured[layer_space(n)] for n in self.layers})
        finally:
            self._captured = {}
        return spaces

    def pack(self, x: torch.Tensor) -> Any:
        """The network's input: the clip itself, or ``[slow, fast]`` for two-pathway models."""
        if self.alpha is None:
            return x
        frames = x.shape[2]
        index = torch.linspace(0, frames - 1, frames // self.alpha, device=x.device).long()
        return [x.index_select(2, index), x]


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=5, cutoff=0.6)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def listing_command(method: str, options: Mapping[str, Any]) -> str:
    """The shell command that prints every valid layer name of a model."""
    extra = "".join(f" --{k} {options[k]}" for k in ("arch", "builder") if options.get(k) is not None)
    return f"python -m dimcollapse.models.layers {method}{extra}"


def check_layer_names(layers: Sequence[str], modules: Iterable[str], model: str, listing: str = "") -> None:
    """Raise ValueError for a layer name that is not a submodule, with close matches and where to look."""
    valid = [m for m in modules if m]
    listing = listing or "python -m dimcollapse.models.layers <method> [--arch A | --builder M:F]"
    for layer in layers:
        if not isinstance(layer, str) or layer not in valid:
            raise ValueError(
                f"{model}: no layer named {layer!r}{_suggest(str(layer), valid)} "
                f"(valid names start {', '.join(valid[:6])}, … {len(valid)} in all; list them with `{listing}`)"
            )
    if len(set(layers)) != len(layers):
        raise ValueError(f"{model}: layer names repeat: {list(layers)}")
