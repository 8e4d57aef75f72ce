"""Networks of the ``torchvision``, ``pytorchvideo`` and ``custom`` methods and their checkpoints.

Each network is the library's (or the user's) own module, built by its own function, so
its forward pass is exactly the library's; :class:`~dimcollapse.models.hooks.FeatureModel`
reads the feature spaces off it with hooks.

Checkpoint formats (read with :func:`~dimcollapse.models.checkpoints.read_checkpoint`,
loaded under the strict rule of :func:`~dimcollapse.models.checkpoints.load_strict`):

* ``torchvision``: a state dict, as ``torch.save(model.state_dict())`` writes it and as
  the official ``*_Weights`` files are; or a torchvision reference-training checkpoint,
  a dict holding the state dict under ``"model"`` (with ``optimizer``, ``epoch`` …).
* ``pytorchvideo``: the hub's ``.pyth`` format, ``{"model_state": state dict, …}``.
* ``custom``: a state dict, or a dict holding it under ``state_dict``, ``model_state`` or
  ``model`` (the usual training-checkpoint keys); nothing else in the file is used.

Without a checkpoint the network keeps the initialisation its own constructor gives it,
drawn from a generator seeded with ``seed`` (the global RNG state is restored afterwards).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dimcollapse.models.archs import ArchInfo
from dimcollapse.models.checkpoints import CheckpointError, _epoch, _short, _take_state, load_strict

#: Keys under which training checkpoints commonly hold a model's state dict (custom models).
STATE_KEYS = ("state_dict", "model_state", "model")


class ClampedAvgPool3d(nn.AvgPool3d):
    """``nn.AvgPool3d`` whose kernel shrinks to the input where the input is smaller.

    Library heads pool with a kernel fixed for the training input size (PyTorchVideo's
    ``head_pool_kernel_size``, torchvision S3D's (2, 7, 7)); a smaller clip makes the
    original raise. There the kernel becomes the whole map, i.e. the global average the
    kernel stands for, which is exactly the network the library builds for that input
    size. Inputs at least as large as the kernel are pooled exactly as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = tuple(min(k, s) for k, s in zip(_triple(self.kernel_size), x.shape[-3:]))
        return F.avg_pool3d(
            x, kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override
        )


def _triple(value: Any) -> tuple[int, int, int]:
    if isinstance(value, (tuple, list)):
        t, h, w = (int(v) for v in value)
        return t, h, w
    return (int(value),) * 3


def clamp_head_pools_(net: nn.Module) -> list[str]:
    """Replace every unpadded ``AvgPool3d`` of ``net`` by :class:`ClampedAvgPool3d`; return their names."""
    replaced = []
    for name, module in list(net.named_modules()):
        if type(module) is nn.AvgPool3d and _triple(module.padding) == (0, 0, 0) and not module.ceil_mode:
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name)
            clamped = ClampedAvgPool3d(
                module.kernel_size, module.stride, 0, False, module.count_include_pad, module.divisor_override
            )
            setattr(parent, child, clamped)
            replaced.append(name)
    return replaced


def seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """Run a constructor with the global RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def construct(make: Callable[[], nn.Module], seed: int, will_load: bool) -> nn.Module:
    """The network, initialised by its constructor from ``seed``, or empty when a checkpoint will fill it.

    With ``will_load`` the constructor runs on the meta device and the weights are only
    allocated (initialising 88 M Swin-B weights that the checkpoint replaces takes seconds);
    the strict loader then sets every entry except BatchNorm ``num_batches_tracked``, which
    is reset here. Constructors that need real tensors, and networks with non-persistent
    buffers (a checkpoint would not restore them), are built normally instead.
    """
    if will_load:
        try:
            with torch.device("meta"):
                net = make()
        except (RuntimeError, NotImplementedError):
            net = None
        if net is not None and set(dict(net.named_buffers())) <= set(net.state_dict()):
            net = net.to_empty(device="cpu")
            for module in net.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_parameters()
            return net
    return seeded(seed, make)


def library_net(info: ArchInfo, frames: int, crop_size: int) -> nn.Module:
    """The library's own network for ``info`` (untrained), sized for frames × crop_size clips."""
    kwargs: dict[str, Any] = {"pretrained": False} if info.family == "pytorchvideo" else {"weights": None}
    sizes = {"frames": frames, "crop_size": crop_size}
    kwargs.update({kw: sizes[field] for kw, field in info.size_kwargs.items()})
    net = import_builder(info.builder)(**kwargs)
    clamp_head_pools_(net)
    return net


def import_builder(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function; ValueError names what is missing.

    The module is imported from the installed packages and ``PYTHONPATH``, else from the
    current directory (the study's working directory in a workflow run), as ``python -m``
    would find it.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"builder must be 'package.module:function', got {spec!r}")
    module_name, function = spec.split(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if os.getcwd() in sys.path:
                raise
            sys.path.append(os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"builder {spec!r}: cannot import module {module_name!r}: {err}") from err
    target = getattr(module, function, None)
    if not callable(target):
        raise ValueError(f"builder {spec!r}: module {module_name!r} has no function {function!r}")
    return target


def custom_net(builder: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the user's builder and check it returned a module."""
    net = import_builder(builder)(**dict(kwargs))
    if not isinstance(net, nn.Module):
        raise ValueError(f"builder {builder!r} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def _all_tensors(raw: Any) -> bool:
    return (
        isinstance(raw, Mapping)
        and bool(raw)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items())
    )


def load_library(net: nn.Module, info: ArchInfo, raw: Any, path: Path) -> dict[str, Any]:
    """Load a torchvision state dict / PyTorchVideo hub ``.pyth`` into the library network."""
    what = f"{info.family} {info.name}"
    if info.family == "pytorchvideo":
        state, entry = _take_state(raw, "model_state", path, "PyTorchVideo hub"), "model_state"
    elif _all_tensors(raw):
        state, entry = dict(raw), None
    elif isinstance(raw, Mapping) and "model" in raw:
        state, entry = _take_state(raw, "model", path, "torchvision"), "model"
    else:
        keys = _short(sorted(map(str, raw))) if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(
            f"{path}: not a torchvision checkpoint: expected a state dict or a dict with a 'model' "
            f"state dict, got {keys}"
        )
    load_strict(net, state, path, what)
    return {"format": info.family, "entry": entry, "epoch": _epoch(raw)}


def load_custom(net: nn.Module, raw: Any, path: Path, builder: str) -> dict[str, Any]:
    """Load a plain or wrapped state dict into the user's network."""
    if _all_tensors(raw):
        state, entry = dict(raw), None
    else:
        entry = next((k for k in STATE_KEYS if isinstance(raw, Mapping) and k in raw), None)
        if entry is None:
            keys = _short(sorted(map(str, raw))) if isinstance(raw, Mapping) else type(raw).__name__
            raise CheckpointError(
                f"{path}: not a state dict, and no {' / '.join(STATE_KEYS)} entry holding one (found: {keys})"
            )
        state = _take_state(raw, entry, path, "model")
    load_strict(net, state, path, f"model of builder {builder}")
    return {"format": "state_dict", "entry": entry, "epoch": _epoch(raw)}
