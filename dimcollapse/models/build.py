"""``build_model``: one entry point from (method, checkpoint, config, options) to an eval-mode module."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dimcollapse.models import checkpoints as ck
from dimcollapse.models.checkpoints import CheckpointError
from dimcollapse.models.dpc import ARCH_BLOCKS, DEFAULT_SAMPLE_SIZE, DPCContext
from dimcollapse.models.registry import METHODS, MethodInfo, canonical_method
from dimcollapse.models.slow_r50 import SlowR50SSL, SlowR50Supervised

#: Scale on He (fan-in) initialisation of convolutions for seeded random models. BN is an
#: identity in eval mode with fresh statistics, so plain He initialisation grows
#: activations about 10x per stage (pooled Slow R50 features ~1e2) and 0.5 shrinks them
#: to ~3e-2; 0.7 keeps both Slow R50 and DPC outputs O(1) (mean |x| about 0.5 at a 64
#: crop), so random-weight features differ between inputs in a measurable way.
RANDOM_CONV_SCALE = 0.7

_COMMON_OPTIONS = {"seed", "device"}
_FAMILY_OPTIONS = {
    "slow_r50": {"frames", "crop_size"},
    "dpc": {"arch", "sample_size", "num_seq", "seq_len", "bn_stats"},
}
BN_STATS_CHOICES = ("auto", "running", "batch")


class BatchStatisticsWarning(UserWarning):
    """A DPC checkpoint without BatchNorm running statistics is evaluated with batch statistics."""


def build_model(
    method: str,
    checkpoint: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    **options: Any,
) -> nn.Module:
    """Build the network of ``method``, load ``checkpoint`` into it and return it in eval mode.

    ``method``: one of :data:`~dimcollapse.models.registry.METHODS` (case-insensitive).
    ``checkpoint``: a file in the method's original format (PyTorchVideo / SlowFast
    ``.pyth``, DPC ``.pth.tar``), or None for a seeded random initialisation (demo, tests).
    ``config``: optional SlowFast YAML (``configs/contrastive_ssl/*.yaml``) for the four
    contrastive methods; the head is taken from it, else from the checkpoint's own
    ``cfg`` string, else from the state-dict shapes, else from the released models' head.
    The checkpoint's ``cfg`` is also checked against the method (``CONTRASTIVE.TYPE``) and
    the Slow R50 architecture; passing ``config`` makes the config file authoritative, as
    in the paper's script, and turns disagreements of the embedded ``cfg`` into warnings.

    Options (all keyword):

    * ``seed`` (int, default 0): seed of the random initialisation used when no
      checkpoint is given; the same seed gives the same weights on every machine.
    * ``device`` (default ``"cpu"``): CUDA is used only when asked for.
    * Slow R50 methods: ``frames`` (clip length T; default the checkpoint config's
      ``DATA.NUM_FRAMES`` if there is one, else 8; 16 for BYOL 16×4) and ``crop_size``
      (default 224). Inputs must be B×3×frames×crop×crop. For the supervised model they
      also set the head's pool kernel (see :class:`SlowR50Supervised`).
    * DPC: ``arch`` (``resnet18``/``resnet34``, default from the checkpoint, else
      ``resnet34``), ``sample_size`` (default 224 for resnet34, 128 for resnet18, the
      published training sizes), ``num_seq`` (default 5), ``seq_len`` (default 5), and
      ``bn_stats``: ``"running"`` uses the checkpoint's BatchNorm running statistics
      and refuses a file without them; ``"batch"`` normalises with batch statistics as
      DPC's pretraining did (``track_running_stats=False``); ``"auto"`` (default) uses
      running statistics when the file has them and batch statistics otherwise, with a
      :class:`BatchStatisticsWarning`. DPC's own LC code would run such files on fresh
      0/1 statistics, which matches neither how the weights were trained nor DPC's own evaluations,
      so it is not offered. Inputs must be B×num_seq×3×seq_len×sample×sample.

    The returned module's ``forward(x)`` gives ``{"representation": B×2048 (Slow R50) or
    B×256 (DPC)}`` plus ``"embedding"`` for SimCLR, MoCo, SwAV and BYOL. Its
    ``provenance`` attribute (a JSON-ready dict) records what was loaded and how.
    """
    info = METHODS[canonical_method(method)]
    allowed = _COMMON_OPTIONS | _FAMILY_OPTIONS[info.family]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"build_model({info.name!r}): unknown option(s) {unknown}; valid options: {sorted(allowed)}")
    if config is not None and info.checkpoint_format != "slowfast":
        raise ValueError(f"build_model({info.name!r}): config is a SlowFast YAML and only applies to SimCLR, MoCo, SwAV, BYOL")
    seed = options.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = _device(options.get("device", "cpu"))

    path = Path(checkpoint) if checkpoint is not None else None
    raw = ck.read_checkpoint(path) if path is not None else None
    if info.name == "supervised":
        model, provenance = _build_supervised(raw, path, seed, options)
    elif info.family == "slow_r50":
        model, provenance = _build_ssl(info, raw, path, config, seed, options)
    else:
        model, provenance = _build_dpc(raw, path, seed, options)
    del raw  # drop the (memory-mapped) file before the model moves to its device
    provenance = {"method": info.name, "checkpoint": None if path is None else str(path), **provenance}
    if path is None:
        provenance["seed"] = seed
    model.provenance = provenance
    return model.eval().to(device)


def _device(value: Any) -> torch.device:
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {value!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {value!r} requested but CUDA is not available on this machine")
    return device


def _positive_int(options: dict[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _crop_size(options: dict[str, Any]) -> int:
    crop = _positive_int(options, "crop_size", 224)
    if crop < 32:
        raise ValueError(f"crop_size must be at least 32 (the network downsamples by 32), got {crop}")
    return crop


def _build_supervised(
    raw: Any, path: Path | None, seed: int, options: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    frames = _positive_int(options, "frames", 8)
    crop_size = _crop_size(options)
    model = _allocate(lambda: SlowR50Supervised(frames=frames, crop_size=crop_size))
    loaded = ck.load_pytorchvideo(model, raw, path) if path is not None else seeded_init_(model, seed)
    pool = list(model.head_pool.kernel_size)
    return model, {**loaded, "frames": frames, "crop_size": model.crop_size, "head_pool_kernel": pool}


def _build_ssl(
    info: MethodInfo, raw: Any, path: Path | None, config: str | os.PathLike[str] | None, seed: int, options: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    assert info.default_head is not None and info.contrastive_type is not None
    state = ck.slowfast_state(raw, path) if path is not None else None
    cfg = None
    if config is not None:
        config_path = Path(config)
        try:
            text = config_path.read_text()
        except OSError as err:
            raise CheckpointError(f"{config_path}: cannot read the SlowFast config: {err}") from err
        cfg = ck.parse_slowfast_config(text, str(config_path))
    embedded = ck.embedded_slowfast_config(raw, path, authoritative=cfg is None) if path is not None else None
    for source in (cfg, embedded):
        if source is None or source.contrastive_type == info.contrastive_type:
            continue
        message = (
            f"{source.source}: CONTRASTIVE.TYPE is {source.contrastive_type!r}, "
            f"but method {info.name} ({info.contrastive_type!r}) was requested"
        )
        if source is embedded and cfg is not None:
            warnings.warn(f"{message}; following the config file {cfg.source}", stacklevel=3)
        elif source is embedded:
            raise CheckpointError(f"{message}; if the file is right, pass its configs/contrastive_ssl YAML as config=")
        else:
            raise CheckpointError(message)
    if cfg is not None:
        head, head_source = cfg.head, "config"
    elif embedded is not None:
        head, head_source = embedded.head, "checkpoint cfg"
    elif state is not None:
        head, head_source = ck.head_from_state(state, path), "state-dict shapes"
    else:
        head, head_source = info.default_head, "released model default"

    config_frames = next((c.frames for c in (cfg, embedded) if c is not None), None)
    frames = _positive_int(options, "frames", config_frames or 8)
    if config_frames is not None and frames != config_frames:
        warnings.warn(
            f"{info.name}: frames={frames} differs from DATA.NUM_FRAMES={config_frames} of the model's config",
            stacklevel=3,
        )
    crop_size = _crop_size(options)
    model = _allocate(
        lambda: SlowR50SSL(info.name, head, info.normalize_embedding, info.normalize_eps, frames, crop_size)
    )
    loaded = ck.load_slowfast(model, state, raw, path, info) if state is not None else seeded_init_(model, seed)
    return model, {
        **loaded,
        "frames": frames,
        "crop_size": model.crop_size,
        "head": {**dataclasses.asdict(head), "source": head_source},
    }


def _build_dpc(raw: Any, path: Path | None, seed: int, options: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    arch = options.get("arch")
    if arch is not None and arch not in ARCH_BLOCKS:
        raise ValueError(f"DPC arch must be one of {sorted(ARCH_BLOCKS)}, got {arch!r}")
    bn_stats = options.get("bn_stats", "auto")
    if bn_stats not in BN_STATS_CHOICES:
        raise ValueError(f"bn_stats must be one of {BN_STATS_CHOICES}, got {bn_stats!r}")
    state = ck.dpc_state(raw, path) if path is not None else None
    if state is not None:
        file_arch = ck.dpc_arch(state, path)
        net = raw.get("net")
        if isinstance(net, str) and net != file_arch:
            raise CheckpointError(f"{path}: 'net' says {net!r} but the weights are a {file_arch}")
        if arch is not None and arch != file_arch:
            raise CheckpointError(f"{path}: holds a DPC {file_arch} backbone, but arch={arch!r} was requested")
        arch = file_arch
    arch = arch or "resnet34"
    has_stats = state is None or ck.dpc_has_running_stats(state)
    if bn_stats == "running" and not has_stats:
        raise CheckpointError(
            f"{path}: has no BatchNorm running statistics (DPC trained with track_running_stats=False), "
            "so bn_stats='running' is impossible; use bn_stats='batch' (or the R34 'runningStats' checkpoint)"
        )
    batch_stats = bn_stats == "batch" or (bn_stats == "auto" and not has_stats)
    if bn_stats == "auto" and batch_stats:
        warnings.warn(
            f"{path}: no BatchNorm running statistics in this DPC checkpoint (trained with "
            "track_running_stats=False); normalising with batch statistics as DPC did in training, so each "
            "clip's feature depends on the other clips of its batch. Pass bn_stats='batch' to accept this "
            "explicitly or bn_stats='running' to refuse such files.",
            BatchStatisticsWarning,
            stacklevel=3,
        )
    sizes = {
        "sample_size": _positive_int(options, "sample_size", DEFAULT_SAMPLE_SIZE[arch]),
        "num_seq": _positive_int(options, "num_seq", 5),
        "seq_len": _positive_int(options, "seq_len", 5),
    }
    model = _allocate(lambda: DPCContext(arch, batch_stats=batch_stats, **sizes))
    loaded = ck.load_dpc(model, state, raw, path, batch_stats) if state is not None else seeded_init_(model, seed)
    return model, {
        **loaded,
        "arch": arch,
        "sample_size": model.sample_size,
        "num_seq": model.num_seq,
        "seq_len": model.seq_len,
        "bn_stats": "batch" if batch_stats else "running",
    }


def _allocate(factory: Callable[[], nn.Module]) -> nn.Module:
    """Construct a model without PyTorch's default initialisation, which would be thrown away.

    Weights are allocated uninitialised; every one is then set either by the strict
    checkpoint loader or by :func:`seeded_init_`. BatchNorm layers are reset here, which
    gives the entries a checkpoint never holds (``num_batches_tracked``, DPC's
    ``final_bn``) the fresh state the original code starts from.
    """
    with torch.device("meta"):
        model = factory()
    model = model.to_empty(device="cpu")
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
    return model


@torch.no_grad()
def seeded_init_(model: nn.Module, seed: int) -> dict[str, Any]:
    """Deterministic random weights from ``seed`` (CPU generator, independent of global RNG state).

    Only used without a checkpoint: a loaded checkpoint sets every weight (the strict
    loader guarantees it), and the entries it never holds (BN ``num_batches_tracked``,
    DPC's ``final_bn``) keep their constructor state, which is the fresh state the
    original code has. Returns the provenance entry. Convolutions: He normal (fan-in) times :data:`RANDOM_CONV_SCALE`; Linear layers:
    normal with std 1/sqrt(fan_in); biases 0; BatchNorm: weight 1, bias 0, running
    statistics 0/1. Not meant to match any original training initialisation.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
            module.weight.mul_(RANDOM_CONV_SCALE)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(module.in_features), generator=generator)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
            continue
        elif next(module.parameters(recurse=False), None) is not None:
            raise TypeError(f"seeded_init_ does not know how to initialise {type(module).__name__}")
        else:
            continue
        if module.bias is not None:
            module.bias.zero_()
    return {"init": "seeded random", "conv_scale": RANDOM_CONV_SCALE}


__all__ = ["BN_STATS_CHOICES", "BatchStatisticsWarning", "build_model", "seeded_init_"]
