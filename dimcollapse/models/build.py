"""``build_model``: one entry point from (method, checkpoint, config, options) to an eval-mode module."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from dimcollapse.models import checkpoints as ck
from dimcollapse.models import zoo
from dimcollapse.models.archs import Layout, arch_info
from dimcollapse.models.checkpoints import CheckpointError
from dimcollapse.models.dpc import ARCH_BLOCKS, DEFAULT_SAMPLE_SIZE, DPCContext
from dimcollapse.models.hooks import FeatureModel, listing_command
from dimcollapse.models.registry import METHODS, MethodInfo, canonical_method, space_layer
from dimcollapse.models.slow_r50 import SlowR50SSL, SlowR50Supervised

#: Scale on He (fan-in) initialisation of convolutions for seeded random models. BN is an
#: identity in eval mode with fresh statistics, so plain He initialisation grows
#: activations about 10x per stage (pooled Slow R50 features ~1e2) and 0.5 shrinks them
#: to ~3e-2; 0.7 keeps both Slow R50 and DPC outputs O(1) (mean |x| about 0.5 at a 64
#: crop), so random-weight features differ between inputs in a measurable way.
RANDOM_CONV_SCALE = 0.7

_COMMON_OPTIONS = {"seed", "device", "layers", "cls_token", "time_resolved"}
_FAMILY_OPTIONS = {
    "slow_r50": {"frames", "crop_size"},
    "dpc": {"arch", "sample_size", "num_seq", "seq_len", "bn_stats"},
    "torchvision": {"arch", "frames", "crop_size"},
    "pytorchvideo": {"arch", "frames", "crop_size"},
    "custom": {"builder", "builder_options", "classifier", "layout", "class_token", "frames", "crop_size"},
    "transformers": {"frames", "crop_size"},
}
LAYOUTS: tuple[Layout, ...] = ("conv", "tokens", "channels_last")
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

    * ``torchvision`` / ``pytorchvideo``: ``arch`` (required; see
      :data:`~dimcollapse.models.archs.ARCHS`), ``frames`` and ``crop_size`` (default the
      arch's model-card clip). Inputs must be B×3×frames×crop×crop; SlowFast models pack
      their two pathways themselves. ``checkpoint``: a torchvision state dict (or a
      reference-training ``{"model": …}`` file) / a PyTorchVideo hub ``.pyth``.
    * ``custom``: ``builder`` (``"package.module:function"`` returning an ``nn.Module``),
      ``builder_options`` (its keyword arguments), ``classifier`` (name of the final
      classification layer; default the last ``nn.Linear``), ``layout`` (``conv``,
      ``tokens`` or ``channels_last``, see :mod:`~dimcollapse.models.hooks`),
      ``class_token`` (token sequences start with a class token), ``frames`` and
      ``crop_size`` (default 8 and 224). ``checkpoint``: a state dict, or a dict holding
      one under ``state_dict``/``model_state``/``model``.
    * ``transformers``: ``checkpoint`` is a ``save_pretrained`` folder or
      ``hf://<org>/<name>[@<revision>]`` (required); ``frames`` and ``crop_size`` default to the
      checkpoint's config; ``layers`` may also be ``"all"`` (every transformer block). See
      :mod:`dimcollapse.models.hf` for the representation of each class.
    * Every method: ``layers`` (module names of the network, ``named_modules()``; one
      ``layer.<name>`` space each, see :mod:`~dimcollapse.models.hooks`),
      ``cls_token`` (keep a transformer's class token in layer averages; default False) and
      ``time_resolved`` (spaces that also get their time-resolved ``<space>_time``,
      B × T′ × D; see :mod:`~dimcollapse.models.time_axes`).

    The returned module's ``forward(x)`` gives ``{"representation": B×2048 (Slow R50) or
    B×256 (DPC), or the classifier's pooled input}`` plus ``"embedding"`` for SimCLR,
    MoCo, SwAV and BYOL and ``"layer.<name>"`` per layer. Its ``provenance`` attribute (a
    JSON-ready dict) records what was loaded and how.
    """
    info = METHODS[canonical_method(method)]
    allowed = _COMMON_OPTIONS | _FAMILY_OPTIONS[info.family]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"build_model({info.name!r}): unknown option(s) {unknown}; valid options: {sorted(allowed)}")
    if config is not None and info.checkpoint_format != "slowfast":
        raise ValueError(
            f"build_model({info.name!r}): config is a SlowFast YAML and only applies to SimCLR, MoCo, SwAV, BYOL"
        )
    seed = options.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    device = _device(options.get("device", "cpu"))

    if info.family == "transformers":
        return _build_transformers(checkpoint, options, device)
    layers = _layers(options)
    time_spaces = _time_resolved(options)
    cls_token = options.get("cls_token", False)
    if not isinstance(cls_token, bool):
        raise ValueError(f"cls_token must be true or false, got {cls_token!r}")

    path = Path(checkpoint) if checkpoint is not None else None
    raw = ck.read_checkpoint(path) if path is not None else None
    if info.family in ("torchvision", "pytorchvideo"):
        model, provenance = _build_library(info, raw, path, seed, options, layers)
    elif info.family == "custom":
        model, provenance = _build_custom(raw, path, seed, options, layers)
    else:
        if info.name == "supervised":
            model, provenance = _build_supervised(raw, path, seed, options)
        elif info.family == "slow_r50":
            model, provenance = _build_ssl(info, raw, path, config, seed, options)
        else:
            model, provenance = _build_dpc(raw, path, seed, options)
        if layers:
            model = FeatureModel(
                model,
                classifier=None,
                layers=layers,
                cls_token=cls_token,
                name=info.name,
                listing=listing_command(info.name, options),
            )
    del raw  # drop the (memory-mapped) file before the model moves to its device
    if time_spaces:
        model = _with_time_axes(model, info, time_spaces, options)
    provenance = {"method": info.name, "checkpoint": None if path is None else str(path), **provenance}
    if layers:
        provenance["layers"] = list(layers)
    if time_spaces:
        provenance["time_resolved"] = list(time_spaces)
    if path is None:
        provenance["seed"] = seed
    model.provenance = provenance  # type: ignore[assignment]  # torch types Module.__setattr__ for tensors and modules only
    return model.eval().to(device)


def _build_transformers(
    checkpoint: str | os.PathLike[str] | None, options: Mapping[str, Any], device: torch.device
) -> nn.Module:
    from dimcollapse.models.hf import build_transformers

    layers = options.get("layers") or ()
    frames, crop = (
        None if options.get(k) is None else _positive_int(dict(options), k, 1) for k in ("frames", "crop_size")
    )
    cls_token = options.get("cls_token", False)
    if not isinstance(cls_token, bool):
        raise ValueError(f"cls_token must be true or false, got {cls_token!r}")
    model, provenance = build_transformers(
        checkpoint,
        frames=frames,
        crop_size=crop,
        cls_token=cls_token,
        layers=layers if layers == "all" else _layers(options),
        time_resolved=_time_resolved(options),
    )
    model.provenance = {  # type: ignore[assignment]  # as above: a plain attribute, which torch's typing omits
        "method": "transformers",
        "checkpoint": str(checkpoint),
        **provenance,
        "layers": list(model.layers),
    }
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
    pool = list(model.head_pool_kernel)
    return model, {**loaded, "frames": frames, "crop_size": model.crop_size, "head_pool_kernel": pool}


def _build_ssl(
    info: MethodInfo,
    raw: Any,
    path: Path | None,
    config: str | os.PathLike[str] | None,
    seed: int,
    options: dict[str, Any],
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
    elif state is not None and path is not None:  # (a state always comes from a file)
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
    loaded = (
        ck.load_slowfast(model, state, raw, path, info)
        if state is not None and path is not None
        else seeded_init_(model, seed)
    )
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
    if state is not None and path is not None:  # (a state always comes from a file)
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
    loaded = (
        ck.load_dpc(model, state, raw, path, batch_stats)
        if state is not None and path is not None
        else seeded_init_(model, seed)
    )
    return model, {
        **loaded,
        "arch": arch,
        "sample_size": model.sample_size,
        "num_seq": model.num_seq,
        "seq_len": model.seq_len,
        "bn_stats": "batch" if batch_stats else "running",
    }


def _layers(options: Mapping[str, Any]) -> tuple[str, ...]:
    layers = options.get("layers") or ()
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"layers must be a list of module names, got {layers!r}")
    return tuple(layers)


def _time_resolved(options: Mapping[str, Any]) -> tuple[str, ...]:
    spaces = options.get("time_resolved") or ()
    if isinstance(spaces, str) or not isinstance(spaces, Sequence) or not all(isinstance(s, str) for s in spaces):
        raise ValueError(f"time_resolved must be a list of space names, got {spaces!r}")
    return tuple(spaces)


def _with_time_axes(
    model: nn.Module, info: MethodInfo, spaces: tuple[str, ...], options: Mapping[str, Any]
) -> nn.Module:
    """``model`` with ``<space>_time`` outputs (:class:`~dimcollapse.models.time_resolved.TimeResolved`)."""
    from dimcollapse.models.time_axes import no_time_axis
    from dimcollapse.models.time_resolved import TimeResolved

    for space in spaces:
        if (reason := no_time_axis(info.family, space)) is not None:
            raise ValueError(f"{info.name}: time_resolved: {space} has no time axis ({reason})")
    net = model.net if isinstance(model, FeatureModel) else model
    sources: dict[str, tuple[str, Any]] = {}
    for space in spaces:
        if (layer := space_layer(space)) is not None:
            sources[space] = (layer, "output")
        elif info.name == "supervised":  # the s5 map, before the head's pool
            sources[space] = ("backbone", "output")
        else:  # SlowFast's contrastive head pools its input map: what the paper hooks
            sources[space] = ("backbone.head.pathway0_avgpool", "input")
    if info.family in ("torchvision", "pytorchvideo"):
        layout: Layout = arch_info(info.family, options.get("arch")).layout
    else:
        layout = options.get("layout", "conv") if info.family == "custom" else "conv"
    return TimeResolved(model, net, sources, layout=layout, name=info.name)


def _clip_size(options: Mapping[str, Any], frames: int, crop_size: int) -> tuple[int, int]:
    return _positive_int(dict(options), "frames", frames), _positive_int(dict(options), "crop_size", crop_size)


def _build_library(
    info: MethodInfo, raw: Any, path: Path | None, seed: int, options: Mapping[str, Any], layers: tuple[str, ...]
) -> tuple[nn.Module, dict[str, Any]]:
    arch = arch_info(info.family, options.get("arch"))
    frames, crop_size = _clip_size(options, arch.frames, arch.crop_size)
    if arch.fixed_input is not None and (frames, crop_size) != arch.fixed_input:
        raise ValueError(
            f"{info.family} {arch.name} only accepts {arch.fixed_input[0]}-frame clips of "
            f"{arch.fixed_input[1]}×{arch.fixed_input[1]} (its builder fixes the size), got frames={frames}, "
            f"crop_size={crop_size}"
        )
    net = zoo.construct(lambda: zoo.library_net(arch, frames, crop_size), seed, will_load=path is not None)
    loaded = zoo.load_library(net, arch, raw, path) if path is not None else {"init": "library default, seeded"}
    model = FeatureModel(
        net,
        classifier=arch.classifier,
        layers=layers,
        layout=arch.layout,
        class_token=arch.class_token,
        no_class_token=arch.no_class_token,
        cls_token=options.get("cls_token", False),
        alpha=arch.alpha,
        input_shape=(3, frames, crop_size, crop_size),
        name=f"{info.family} {arch.name}",
        listing=listing_command(info.name, options),
    )
    return model, {**loaded, "arch": arch.name, "frames": frames, "crop_size": crop_size, "classifier": arch.classifier}


def _build_custom(
    raw: Any, path: Path | None, seed: int, options: Mapping[str, Any], layers: tuple[str, ...]
) -> tuple[nn.Module, dict[str, Any]]:
    builder = options.get("builder")
    if builder is None:
        raise ValueError("method custom needs the builder option ('package.module:function' returning an nn.Module)")
    kwargs = options.get("builder_options") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"builder_options must be a mapping of keyword arguments, got {kwargs!r}")
    layout = options.get("layout", "conv")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    class_token = options.get("class_token", False)
    if not isinstance(class_token, bool):
        raise ValueError(f"class_token must be true or false, got {class_token!r}")
    frames, crop_size = _clip_size(options, 8, 224)
    net = zoo.construct(lambda: zoo.custom_net(builder, kwargs), seed, will_load=path is not None)
    classifier = options.get("classifier") or _last_linear(net, builder)
    loaded = zoo.load_custom(net, raw, path, builder) if path is not None else {"init": "builder default, seeded"}
    model = FeatureModel(
        net,
        classifier=classifier,
        layers=layers,
        layout=layout,
        class_token=class_token,
        cls_token=options.get("cls_token", False),
        input_shape=(3, frames, crop_size, crop_size),
        name=f"custom {builder}",
        listing=listing_command("custom", options),
    )
    provenance = {**loaded, "builder": builder, "builder_options": json.loads(json.dumps(dict(kwargs), default=str))}
    return model, {**provenance, "frames": frames, "crop_size": crop_size, "classifier": classifier}


def _last_linear(net: nn.Module, builder: str) -> str:
    linears = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"builder {builder!r}: the model has no nn.Linear; name its classifier with the classifier option"
        )
    return linears[-1]


_Net = TypeVar("_Net", bound=nn.Module)


def _allocate(factory: Callable[[], _Net]) -> _Net:
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
    original code has. Returns the provenance entry. Convolutions: He normal (fan-in) times
    :data:`RANDOM_CONV_SCALE`; Linear layers:
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
