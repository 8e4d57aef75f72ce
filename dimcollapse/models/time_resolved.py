"""Time-resolved feature spaces: a space before its average over time, B × T′ × D.

:mod:`dimcollapse.models.time_axes` says which spaces have a time axis; this module reads
them in the network's own forward pass, with hooks beside the ones that read the pooled
spaces, so the pooled numbers stay exactly what they were:

* :func:`time_steps`: a convolutional map (B×C×T×H×W, or Swin's channels-last B×T×H×W×C)
  averaged over height and width only;
* :func:`tokens_by_time`: a token sequence (B×N×D, class and register tokens already left
  out) averaged within each time position: VideoMAE, V-JEPA 2 and ViViT order their tubelet
  tokens time-major (t, h, w), TimeSformer space-major ((h, w), t) after its time
  embedding;
* :class:`TimeResolved`: wraps a built model and adds ``<space>_time`` outputs
  (:func:`~dimcollapse.models.time_axes.time_key`) read from named modules.

Image encoders run frame by frame, so their per-frame vectors are the time steps
(:mod:`dimcollapse.models.hf`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from dimcollapse.models.archs import Layout
from dimcollapse.models.hooks import channels_last
from dimcollapse.models.time_axes import time_key

#: transformers classes whose token sequences are ordered (space, time) rather than (time, space).
SPACE_MAJOR_TOKENS = frozenset({"TimesformerModel", "TimesformerForVideoClassification"})

Where = Literal["input", "output"]


def time_steps(y: Any, module: nn.Module, batch: int, layout: Layout, where: str) -> torch.Tensor:
    """A module's 5-D output (or input) averaged over height and width: B × T′ × C."""
    if isinstance(y, (tuple, list)) and len(y) > 1 and all(isinstance(e, torch.Tensor) for e in y):
        raise ValueError(f"{where}: gives {len(y)} tensors (pathways of different frame rates) with no common "
                         "time axis; choose a module of one pathway")
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
        y = y[0]
    if not isinstance(y, torch.Tensor) or y.ndim != 5 or y.shape[0] != batch:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{where}: output {shape} is not a B×C×T×H×W map, so it has no time axis to keep; "
                         "choose a convolutional layer")
    if channels_last(module, layout, y.ndim):  # B×T×H×W×C
        return y.mean(dim=(2, 3))
    return y.mean(dim=(3, 4)).transpose(1, 2)


def tokens_by_time(tokens: torch.Tensor, steps: int, space_major: bool, where: str) -> torch.Tensor:
    """B × N × D tokens (N = steps · positions) averaged per time step: B × steps × D."""
    if tokens.ndim != 3 or steps < 1 or tokens.shape[1] % steps:
        raise ValueError(f"{where}: {tuple(tokens.shape)} is not a sequence of {steps} time steps of tokens; "
                         "choose a transformer block")
    b, n, d = tokens.shape
    if space_major:
        return tokens.reshape(b, n // steps, steps, d).mean(dim=1)
    return tokens.reshape(b, steps, n // steps, d).mean(dim=2)


class TimeResolved(nn.Module):
    """``model`` with a time-resolved array beside each space in ``sources``.

    ``sources``: space → (module name in ``net``, whether the module's ``input`` or
    ``output`` holds the map before its time average). ``net``: the network ``model`` runs
    (the module names are its own). ``forward`` returns ``model``'s dict plus
    ``<space>_time`` (B × T′ × D) per source.
    """

    def __init__(self, model: nn.Module, net: nn.Module, sources: Mapping[str, tuple[str, Where]], *,
                 layout: Layout = "conv", name: str = "model") -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.spaces = tuple(sources)
        modules = dict(net.named_modules())
        self._captured: dict[str, torch.Tensor] = {}
        self._batch = 0
        for space, (module_name, where) in sources.items():
            module = modules.get(module_name)
            if module is None:
                raise ValueError(f"{name}: no module {module_name!r} for the time-resolved {space}")
            label = f"{name} {space} (module {module_name!r})"
            if where == "input":
                module.register_forward_pre_hook(self._read(space, module, layout, label, lambda args, out: args[0]))
            else:
                module.register_forward_hook(self._read(space, module, layout, label, lambda args, out: out))

    def _read(self, space: str, module: nn.Module, layout: Layout, label: str,
              pick: Callable[[Any, Any], Any]) -> Callable[..., None]:
        def hook(_: nn.Module, args: Any, output: Any = None) -> None:
            if space in self._captured:
                raise ValueError(f"{label}: runs more than once per forward pass; choose another module")
            self._captured[space] = time_steps(pick(args, output), module, self._batch, layout, label)

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._captured, self._batch = {}, x.shape[0]
        try:
            out = dict(self.model(x))
            missing = [s for s in self.spaces if s not in self._captured]
            if missing:
                raise ValueError(f"{self.name}: the modules of time-resolved {missing} did not run in the forward pass")
            out.update({time_key(s): self._captured[s] for s in self.spaces})
        finally:
            self._captured = {}
        return out


__all__ = ["SPACE_MAJOR_TOKENS", "TimeResolved", "time_steps", "tokens_by_time"]
