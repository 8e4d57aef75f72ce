"""Reading the published checkpoints in their original on-disk formats.

Three formats, all ``torch.save`` pickles of a dict:

* PyTorchVideo ``.pyth`` (``SLOW_8x8_R50.pyth``): ``{"model_state": …}`` with keys
  ``blocks.0.conv``, ``blocks.{1..4}.res_blocks.{i}.branch2.conv_a`` …, ``blocks.5.proj``.
* SlowFast ``.pyth`` (contrastive_ssl zoo): ``{"epoch", "model_state", "optimizer_state",
  "cfg" (the whole config as a YAML string)[, "scaler_state"]}``. ``model_state`` is the
  state of a ``ContrastiveModel``: ``backbone.*`` plus training-only entries (see
  :data:`SLOWFAST_TRAINING_ONLY`). The released files name the head ``ssl_<dim>``
  instead of ``head``; both namings are accepted.
* DPC ``.pth.tar``: ``{"epoch", "net", "state_dict", "best_acc", "optimizer",
  "iteration"}``, keys prefixed ``module.`` (DataParallel); the ConvGRU cell appears as
  both ``agg.ConvGRUCell_00`` and ``agg.cell_list.0``; ``best_acc`` is a numpy scalar and
  the older files use PyTorch's pre-1.6 (non-zip) serialisation.

Loading is strict: apart from a named allow-list of entries that only training uses,
every key of the file must be used by the model and every weight of the model must come
from the file, with equal shapes; anything else raises :class:`CheckpointError` listing
the keys and naming the file. The only keys a file may omit are BatchNorm
``num_batches_tracked`` counters, which do not affect evaluation.

Files are read with ``torch.load(weights_only=True)`` (no arbitrary code runs) and, for
zip-format files, ``mmap=True``, so the multi-hundred-megabyte training-only buffers
(MoCo's momentum encoder and queue, the kNN memory bank) are never read from disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from dimcollapse.errors import KnownError
from dimcollapse.models.registry import HeadSpec, MethodInfo


class CheckpointError(KnownError):
    """A checkpoint or config file that cannot be used; the message names the file and the problem."""


#: Training-only entries of SlowFast ``ContrastiveModel`` states, per ``CONTRASTIVE.TYPE``.
#: ``knn_mem.memory`` is the kNN evaluation bank (``CONTRASTIVE.KNN_ON`` defaults to True);
#: MoCo and BYOL keep a momentum encoder ``backbone_hist`` and the buffers ``queue_x``,
#: ``ptr`` and ``iter``; SwAV keeps its prototypes and, with ``SWAV_QEUE_LEN > 0``, a
#: queue; BYOL's predictor MLP sits in the online head but only feeds the training loss.
SLOWFAST_TRAINING_ONLY: Mapping[str, tuple[str, ...]] = {
    "simclr": (r"knn_mem\.memory",),
    "moco": (r"knn_mem\.memory", r"backbone_hist\..+", r"queue_x", r"ptr", r"iter"),
    "byol": (
        r"knn_mem\.memory", r"backbone_hist\..+", r"queue_x", r"ptr", r"iter", r"backbone\.head\.predictors\..+",
    ),
    "swav": (r"knn_mem\.memory", r"swav_prototypes\.weight", r"queue_swav"),
}
#: PyTorchVideo ``slow_r50``'s Kinetics classifier; the paper replaces it by identity.
PYTORCHVIDEO_UNUSED: tuple[str, ...] = (r"blocks\.5\.proj\.(weight|bias)",)
#: DPC's future-prediction network, used only by the pretraining loss.
DPC_TRAINING_ONLY: tuple[str, ...] = (r"network_pred\..+",)

_LIST_LIMIT = 12


def _numpy_safe_globals() -> list[Any]:
    """Globals that numpy scalars in old pickles (DPC's ``best_acc``) need under weights_only."""
    from numpy._core.multiarray import scalar

    dtypes = [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Unpickle a checkpoint file safely, turning every failure into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (an interrupted download?)")
    with path.open("rb") as f:
        head = f.read(64)
    if head.lstrip().startswith(b"<"):
        raise CheckpointError(
            f"{path}: is an HTML/XML page, not a PyTorch checkpoint (the download returned an error or login page); "
            "delete it and download the file again"
        )
    use_mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except Exception as err:  # torch.load raises many types for bad input; all mean the same here
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        unsupported = next((ln for ln in lines if "Unsupported global" in ln), None)
        if unsupported is not None:
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain containers, refusing to unpickle "
                f"it (weights_only): {unsupported.split('. Please use')[0]}"
            ) from err
        detail = next((ln for ln in lines if ln.startswith("Unsupported operand")), lines[0] if lines else "")
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({size} bytes; truncated or corrupt?): "
            f"{type(err).__name__}: {detail}"
        ) from err


def _take_state(raw: Any, key: str, path: Path, fmt: str) -> dict[str, torch.Tensor]:
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: expected a {fmt} checkpoint (a dict with {key!r}), got {type(raw).__name__}")
    if key not in raw:
        hint = _format_hint(raw)
        raise CheckpointError(
            f"{path}: not a {fmt} checkpoint: no {key!r} entry (top-level keys: {_short(sorted(map(str, raw)))}){hint}"
        )
    state = raw[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: {key!r} is a {type(state).__name__}, expected a state dict")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {key!r} has entries that are not tensors: {_short(map(str, bad))}")
    return dict(state)


def _format_hint(raw: Mapping[str, Any]) -> str:
    if "state_dict" in raw:
        return " — this looks like a DPC checkpoint (use method DPC)"
    if "model_state" in raw:
        return " — this looks like a SlowFast/PyTorchVideo checkpoint"
    return ""


def _short(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", … ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(re.fullmatch(p, key) for p in patterns)


def load_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: Path,
    what: str,
    *,
    ignore: Iterable[str] = (),
    keep_fresh: Callable[[str], bool] = lambda key: False,
    file_key: Callable[[str], str] = lambda key: key,
) -> list[str]:
    """Load ``state`` into ``model`` under the strict rule of the module docstring.

    ``ignore``: regular expressions of file entries that are training-only (skipped).
    ``keep_fresh``: model entries that the format never stores (kept as initialised).
    ``file_key``: the name under which the file stores a model entry; comparisons and
    error messages use the file's naming. Returns the ignored file keys.
    """
    ignore = tuple(ignore)
    model_state = model.state_dict()
    expected = {file_key(k): k for k in model_state}
    ignored = [k for k in state if k not in expected and _matches(k, ignore)]
    skipped = set(ignored)
    unexpected = [k for k in state if k not in expected and k not in skipped]
    missing = [
        f for f, k in expected.items()
        if f not in state and not k.endswith("num_batches_tracked") and not keep_fresh(k)
    ]
    mismatched = [
        f"{f}: file {tuple(state[f].shape)} vs model {tuple(model_state[k].shape)}"
        for f, k in expected.items()
        if f in state and state[f].shape != model_state[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {_short(mismatched)}")
        raise CheckpointError(f"{path}: does not match the {what}: " + "; ".join(parts))
    merged = dict(model_state)
    merged.update({k: state[f] for f, k in expected.items() if f in state})
    model.load_state_dict(merged, strict=True)
    return ignored


# --------------------------------------------------------------------------- PyTorchVideo

_PTV_NAMES = {
    "branch1": "branch1_conv", "branch1_bn": "branch1_norm",
    "branch2.a": "branch2.conv_a", "branch2.a_bn": "branch2.norm_a",
    "branch2.b": "branch2.conv_b", "branch2.b_bn": "branch2.norm_b",
    "branch2.c": "branch2.conv_c", "branch2.c_bn": "branch2.norm_c",
}


def pytorchvideo_key(key: str) -> str:
    """The PyTorchVideo ``slow_r50`` name of a :class:`SlowR50Supervised` entry.

    ``s1.pathway0_stem.conv/bn`` → ``blocks.0.conv/norm``; ``s{k}.pathway0_res{i}`` →
    ``blocks.{k-1}.res_blocks.{i}``; ``branch1/branch1_bn`` → ``branch1_conv/branch1_norm``;
    ``branch2.a/a_bn/b/b_bn/c/c_bn`` → ``branch2.conv_a/norm_a/conv_b/norm_b/conv_c/norm_c``.
    """
    m = re.fullmatch(r"backbone\.s1\.pathway0_stem\.(conv|bn)\.(\w+)", key)
    if m:
        return f"blocks.0.{'conv' if m[1] == 'conv' else 'norm'}.{m[2]}"
    m = re.fullmatch(r"backbone\.s([2-5])\.pathway0_res(\d+)\.(.+)\.(\w+)", key)
    if m and m[3] in _PTV_NAMES:
        return f"blocks.{int(m[1]) - 1}.res_blocks.{m[2]}.{_PTV_NAMES[m[3]]}.{m[4]}"
    raise ValueError(f"no PyTorchVideo name for {key!r}")


def load_pytorchvideo(model: nn.Module, raw: Any, path: Path) -> dict[str, Any]:
    """Load a PyTorchVideo ``slow_r50`` checkpoint into :class:`SlowR50Supervised`."""
    state = _take_state(raw, "model_state", path, "PyTorchVideo")
    ignored = load_strict(
        model, state, path, "supervised Slow R50 (PyTorchVideo slow_r50)",
        ignore=PYTORCHVIDEO_UNUSED, file_key=pytorchvideo_key,
    )
    return {"format": "pytorchvideo", "epoch": _epoch(raw), "ignored": ignored}


# --------------------------------------------------------------------------- SlowFast

_SSL_PREFIX = re.compile(r"^(backbone|backbone_hist)\.ssl_\d+\.")


def slowfast_state(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """``model_state`` of a SlowFast checkpoint with ``ssl_<dim>`` renamed to ``head``."""
    state = _take_state(raw, "model_state", path, "SlowFast")
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = _SSL_PREFIX.sub(r"\1.head.", key)
        if new in renamed:
            raise CheckpointError(f"{path}: holds both {origin[new]!r} and {key!r}, one entry under two head namings")
        renamed[new], origin[new] = value, key
    return renamed


#: SlowFast backbone settings of the Slow R50 of :mod:`dimcollapse.models.slow_r50`; they
#: are also SlowFast's defaults, so a YAML file may omit them.
_SLOW_R50_BACKBONE: dict[tuple[str, str], Any] = {
    ("RESNET", "DEPTH"): 50,
    ("RESNET", "NUM_GROUPS"): 1,
    ("RESNET", "WIDTH_PER_GROUP"): 64,
    ("RESNET", "TRANS_FUNC"): "bottleneck_transform",
    ("RESNET", "STRIDE_1X1"): False,
    ("RESNET", "NUM_BLOCK_TEMP_KERNEL"): [[3], [4], [6], [3]],
    ("RESNET", "SPATIAL_STRIDES"): [[1], [2], [2], [2]],
    ("RESNET", "SPATIAL_DILATIONS"): [[1], [1], [1], [1]],
    ("NONLOCAL", "LOCATION"): [[[]], [[]], [[]], [[]]],
    ("DETECTION", "ENABLE"): False,
}
#: SlowFast ``config/defaults.py`` values of the keys read here, for YAML files that omit them.
_SLOWFAST_DEFAULTS: dict[tuple[str, str], Any] = {
    ("MODEL", "NUM_CLASSES"): 400,
    ("MODEL", "ARCH"): "slowfast",
    ("MODEL", "MODEL_NAME"): "SlowFast",
    ("MODEL", "HEAD_ACT"): "softmax",
    ("CONTRASTIVE", "TYPE"): "mem",
    ("CONTRASTIVE", "NUM_MLP_LAYERS"): 1,
    ("CONTRASTIVE", "MLP_DIM"): 2048,
    ("CONTRASTIVE", "BN_MLP"): False,
    ("DATA", "NUM_FRAMES"): 8,
    **_SLOW_R50_BACKBONE,
}
#: Settings under which SlowFast builds exactly the network of :mod:`dimcollapse.models.slow_r50`.
_SLOWFAST_REQUIRED: dict[tuple[str, str], Any] = {
    ("MODEL", "ARCH"): "slow",
    ("MODEL", "MODEL_NAME"): "ContrastiveModel",
    ("MODEL", "HEAD_ACT"): "none",
    **_SLOW_R50_BACKBONE,
}


@dataclass(frozen=True)
class SlowFastConfig:
    """What a SlowFast config says about the model: head, contrastive type, clip length."""

    head: HeadSpec
    contrastive_type: str
    frames: int
    source: str


def parse_slowfast_config(text: str, source: str) -> SlowFastConfig:
    """Read the keys that determine the model from a SlowFast YAML config.

    Keys the YAML omits take SlowFast's defaults (as ``fvcore`` merges a YAML file into
    ``config/defaults.py``). A config describing a different network (not Slow R50, a
    non-local block, a head activation) is refused rather than silently mis-built.
    """
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CheckpointError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source}: not a SlowFast config (expected a YAML mapping)")
    if "_BASE_" in cfg:
        raise CheckpointError(f"{source}: uses _BASE_ inheritance, which is not supported; pass the merged config")

    def get(section: str, key: str) -> Any:
        node = cfg.get(section)
        if isinstance(node, dict) and key in node:
            return node[key]
        return _SLOWFAST_DEFAULTS[(section, key)]

    wrong = [
        f"{s}.{k} is {get(s, k)!r} (need {v!r})" for (s, k), v in _SLOWFAST_REQUIRED.items() if get(s, k) != v
    ]
    if wrong:
        raise CheckpointError(f"{source}: describes a model other than the contrastive Slow R50: {'; '.join(wrong)}")
    try:
        head = HeadSpec(
            dim_out=int(get("MODEL", "NUM_CLASSES")),
            num_layers=int(get("CONTRASTIVE", "NUM_MLP_LAYERS")),
            mlp_dim=int(get("CONTRASTIVE", "MLP_DIM")),
            bn=bool(get("CONTRASTIVE", "BN_MLP")),
        )
        frames = int(get("DATA", "NUM_FRAMES"))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: invalid head or clip setting: {err}") from err
    return SlowFastConfig(head, str(get("CONTRASTIVE", "TYPE")), frames, source)


def head_from_state(state: Mapping[str, torch.Tensor], path: Path) -> HeadSpec:
    """Infer the projection head from the shapes of ``backbone.head.projection.*``."""
    prefix = "backbone.head.projection."
    single = state.get(prefix + "weight")
    if single is not None and single.ndim == 2:
        return HeadSpec(dim_out=single.shape[0], num_layers=1, mlp_dim=2048, bn=False)
    layers: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(re.escape(prefix) + r"projection\.(\d+)\.weight", key)
        if m:
            layers[int(m[1])] = value
    linears = [layers[i] for i in sorted(layers) if layers[i].ndim == 2]
    if not linears:
        raise CheckpointError(
            f"{path}: no projection head found (expected backbone.head.projection.* or backbone.ssl_<dim>.projection.*)"
        )
    has_bn = any(v.ndim == 1 for v in layers.values())
    return HeadSpec(dim_out=linears[-1].shape[0], num_layers=len(linears), mlp_dim=linears[0].shape[0], bn=has_bn)


def load_slowfast(
    model: nn.Module, state: Mapping[str, torch.Tensor], raw: Any, path: Path, info: MethodInfo
) -> dict[str, Any]:
    """Load a (renamed) SlowFast ContrastiveModel state into :class:`SlowR50SSL`."""
    assert info.contrastive_type is not None
    ignored = load_strict(
        model,
        state,
        path,
        f"{info.name} Slow R50 (SlowFast ContrastiveModel, CONTRASTIVE.TYPE {info.contrastive_type})",
        ignore=SLOWFAST_TRAINING_ONLY[info.contrastive_type],
    )
    return {"format": "slowfast", "epoch": _epoch(raw), "ignored": _summarise(ignored)}


def embedded_slowfast_config(raw: Any, path: Path, authoritative: bool) -> SlowFastConfig | None:
    """The checkpoint's own ``cfg`` YAML string, parsed; None when absent or unreadable (warned).

    With ``authoritative`` (no config file was given) a cfg describing another network is
    an error; otherwise the config file decides, as in the paper's script, which builds
    the model from the repository YAML, and a disagreeing embedded cfg is only warned about.
    """
    text = raw.get("cfg") if isinstance(raw, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        return parse_slowfast_config(text, f"{path} (embedded cfg)")
    except CheckpointError as err:
        if authoritative and "describes a model other than" in str(err):
            raise CheckpointError(
                f"{err}; pass the matching configs/contrastive_ssl YAML as config= to override it"
            ) from err
        warnings.warn(f"ignoring the embedded config: {err}", stacklevel=3)
        return None


# --------------------------------------------------------------------------- DPC


def dpc_state(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """``state_dict`` without DataParallel's ``module.`` prefix and with the ConvGRU duplicate folded."""
    state = _take_state(raw, "state_dict", path, "DPC")
    stripped = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    folded: dict[str, torch.Tensor] = {}
    for key, value in stripped.items():
        m = re.fullmatch(r"agg\.ConvGRUCell_(\d+)\.(.+)", key)
        if not m:
            folded.setdefault(key, value)
            continue
        twin = f"agg.cell_list.{int(m[1])}.{m[2]}"
        if twin in stripped and not (stripped[twin].shape == value.shape and torch.equal(stripped[twin], value)):
            raise CheckpointError(f"{path}: {key!r} and {twin!r} should be the same ConvGRU cell but differ")
        folded[twin] = stripped.get(twin, value)
    return folded


def dpc_arch(state: Mapping[str, torch.Tensor], path: Path) -> str:
    """``resnet18`` or ``resnet34`` from the number of blocks in ``backbone.layer3``."""
    blocks = {int(m[1]) for k in state if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    arch = {2: "resnet18", 6: "resnet34"}.get(len(blocks))
    if arch is None:
        raise CheckpointError(
            f"{path}: cannot tell the DPC backbone: backbone.layer3 has {len(blocks)} blocks "
            "(2 for resnet18, 6 for resnet34)"
        )
    return arch


def dpc_has_running_stats(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("backbone.") and k.endswith(".running_mean") for k in state)


def load_dpc(
    model: nn.Module, state: Mapping[str, torch.Tensor], raw: Any, path: Path, batch_stats: bool
) -> dict[str, Any]:
    """Load a DPC pretraining state into :class:`DPCContext` (``final_bn`` stays fresh, as in LC)."""
    ignore = DPC_TRAINING_ONLY
    if batch_stats:
        ignore += (r"backbone\..+\.(running_mean|running_var|num_batches_tracked)",)
    ignored = load_strict(
        model,
        state,
        path,
        f"DPC {model.arch} linear-eval model",
        ignore=ignore,
        keep_fresh=lambda key: key.startswith("final_bn."),
    )
    return {"format": "dpc", "epoch": _epoch(raw), "ignored": _summarise(ignored)}


# --------------------------------------------------------------------------- helpers


def _epoch(raw: Any) -> int | None:
    epoch = raw.get("epoch") if isinstance(raw, Mapping) else None
    with contextlib.suppress(TypeError, ValueError):
        return int(epoch) if epoch is not None else None
    return None


def _summarise(keys: list[str]) -> list[str]:
    """Ignored keys grouped (``backbone_hist.* (320)`` instead of 320 names)."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        if key.startswith("backbone.head.predictors."):
            label = "backbone.head.predictors.*"
        elif key.startswith("backbone.") and re.search(r"\.(running_mean|running_var|num_batches_tracked)$", key):
            label = "BatchNorm running statistics"
        else:
            label = key.split(".")[0] + (".*" if "." in key else "")
        groups.setdefault(label, []).append(key)
    return [label if members == [label] else f"{label} ({len(members)})" for label, members in groups.items()]
