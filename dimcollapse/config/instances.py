"""Model instances of a study: each ``models:`` entry resolved (method, weights, sampling,
layers), checkpoint series expanded into one instance per checkpoint, and the study's choice
of datasets and instances."""

from __future__ import annotations

import functools
import glob
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dimcollapse.models.archs import ArchInfo, arch_info
from dimcollapse.models.registry import METHODS, canonical_method, instance_spaces

CHECKPOINT_DIR = "resources/checkpoints"


@dataclass(frozen=True)
class ModelInstance:
    """One configured model: a method plus the weights and sampling it runs with."""

    name: str
    method: str
    label: str
    checkpoint: str | None
    filename: str | None
    sha256: str | None
    config: str | None
    seed: int
    frames: int
    rate: int
    protocol: str
    protocol_options: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    series: str | None = None
    series_order: int | float | None = None
    series_key: str | None = None

    @property
    def family(self) -> str:
        return METHODS[self.method].family

    @property
    def model_family(self) -> str:
        """The model family that the probe correlations group instances by (ρ within each
        family and across families): the network family — ``slow_r50`` for the paper's five
        Slow R50 methods, ``dpc`` — refined where one method covers several networks:
        ``torchvision:<arch>``, ``pytorchvideo:<arch>``, ``custom:<builder function>``,
        ``transformers:<checkpoint name>`` (e.g. ``videomae-base``). Members of a checkpoint
        series share their series' family."""
        if self.family in ("torchvision", "pytorchvideo"):
            return f"{self.family}:{self.options.get('arch')}"
        if self.family == "custom":
            return "custom:" + str(self.options.get("builder", "")).rpartition(":")[2]
        if self.family == "transformers":
            name = str(self.checkpoint or "").removeprefix("hf://").split("@")[0].rstrip("/")
            return "transformers:" + posixpath.basename(name)
        return self.family

    @property
    def arch_info(self) -> ArchInfo | None:
        """The library architecture of a ``torchvision``/``pytorchvideo`` instance, else None."""
        if self.family not in ("torchvision", "pytorchvideo"):
            return None
        return arch_info(self.family, self.options.get("arch"))

    @property
    def spaces(self) -> tuple[str, ...]:
        """Feature spaces the instance writes: the method's, then ``layer.<name>`` per layer."""
        return instance_spaces(self.method, self.layers)

    @property
    def untrained(self) -> bool:
        return self.checkpoint is None

    @property
    def checkpoint_path(self) -> str | None:
        """Where the download rule puts the checkpoint (relative to the workdir)."""
        if self.checkpoint is None:
            return None
        return f"{CHECKPOINT_DIR}/{self.name}/{self.filename}"


def _default_filename(source: str) -> str:
    parsed = urlparse(source)
    if parsed.scheme == "gdrive" or source.startswith("gdrive:"):
        raise ValueError(
            f"checkpoint {source!r} is a Google Drive id: give `filename` (the original "
            "file name, e.g. k400_224_r34_dpc-rnn_runningStats.pth.tar)"
        )
    name = posixpath.basename(parsed.path if parsed.scheme else source)
    if not name:
        raise ValueError(f"cannot derive a file name from checkpoint {source!r}: give `filename`")
    return name


def model_instance(name: str, cfg: Mapping[str, Any], **series: Any) -> ModelInstance:
    """Resolve one ``models:`` entry (already schema-validated) with a single checkpoint.

    Frames, rate and protocol default to the architecture's model card for the
    ``torchvision``/``pytorchvideo`` methods, to the checkpoint's config for ``transformers``
    (rate :data:`TRANSFORMERS_RATE`), to 8 × 8 and the method's protocol otherwise.
    ``layers`` are checked against the network's module names (this imports torch, so
    only configs that name layers pay for it). ``series``: the series fields of a member
    of a checkpoint series (see :func:`model_instances`).
    """
    method = canonical_method(cfg["method"])
    options = dict(cfg.get("options") or {})
    try:
        arch = (
            arch_info(METHODS[method].family, options.get("arch"))
            if method in ("torchvision", "pytorchvideo")
            else None
        )
    except ValueError as err:
        raise ValueError(f"model {name!r}: {err}") from err
    if method == "custom" and not (isinstance(options.get("builder"), str) and ":" in options["builder"]):
        raise ValueError(f"model {name!r}: method custom needs options.builder: 'package.module:function'")
    checkpoint = cfg.get("checkpoint")
    clip: Mapping[str, Any]  # protocol settings the model implies
    filename: str | None
    if method == "transformers":
        clip = transformers_clip(name, checkpoint)  # first: it says when the checkpoint is missing
        layers = _transformers_layers(name, cfg)
        filename = _transformers_filename(name, cfg)
    else:
        layers = tuple(cfg.get("layers") or ())
        if layers == ("all",) or cfg.get("layers") == "all":
            raise ValueError(f"model {name!r}: layers: all is for method transformers; list module names")
        if layers:
            layers = _check_layers(name, method, options, layers)
        filename = cfg.get("filename") or (_default_filename(checkpoint) if checkpoint else None)
        clip = arch.protocol_overrides if arch is not None else {}
    return ModelInstance(
        name=name,
        method=method,
        label=cfg.get("label") or name,
        checkpoint=checkpoint,
        filename=filename,
        sha256=cfg.get("sha256"),
        config=cfg.get("config"),
        seed=int(cfg.get("seed", 0)),
        frames=int(cfg.get("frames", clip.get("frames", 8))),
        rate=int(cfg.get("rate", clip.get("rate", 8))),
        protocol=cfg.get("protocol") or (arch.protocol if arch is not None else METHODS[method].default_protocol),
        protocol_options=dict(cfg.get("protocol_options") or {}),
        options=options,
        layers=layers,
        **series,
    )


#: Frame sampling rate of ``transformers`` instances (checkpoints do not record one): VideoMAE's
#: Kinetics-400 sample rate, at the protocol's 30 fps.
TRANSFORMERS_RATE = 4


def transformers_clip(name: str, checkpoint: str | None) -> dict[str, Any]:
    """The clip a ``transformers`` checkpoint was made for (frames, size, crop, mean, std) and its rate."""
    if not checkpoint:
        raise ValueError(
            f"model {name!r}: method transformers needs checkpoint: a save_pretrained folder or "
            "hf://<org>/<name>[@<revision>]"
        )
    from dimcollapse.models.checkpoints import CheckpointError
    from dimcollapse.models.hub import checkpoint_clip

    try:
        return {"rate": TRANSFORMERS_RATE, **checkpoint_clip(transformers_directory(checkpoint))}
    except (CheckpointError, ValueError) as err:  # the instance is what the user must fix
        raise ValueError(f"model {name!r}: {err}") from err


@functools.cache
def transformers_directory(checkpoint: str) -> Path:
    """The folder of a ``transformers`` checkpoint, for its config (a Hub snapshot's metadata only)."""
    from dimcollapse.models.hub import resolve_directory

    return resolve_directory(checkpoint, metadata_only=True)


def _transformers_filename(name: str, cfg: Mapping[str, Any]) -> str:
    from dimcollapse.models.hub import SNAPSHOT_RECORD

    for key, why in (
        ("filename", "the download rule records the snapshot as " + SNAPSHOT_RECORD),
        ("sha256", "pin a revision (hf://org/name@<commit>) instead; file hashes are recorded"),
    ):
        if cfg.get(key) is not None:
            raise ValueError(f"model {name!r}: `{key}` does not apply to method transformers ({why})")
    return SNAPSHOT_RECORD


def _transformers_layers(name: str, cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """A ``transformers`` instance's layers, ``all`` expanded to every transformer block, in network order."""
    layers = cfg.get("layers") or ()
    if not layers:
        return ()
    from dimcollapse.models.checkpoints import CheckpointError
    from dimcollapse.models.hf import listing_command, module_names
    from dimcollapse.models.hooks import check_layer_names

    try:
        names, blocks = module_names(transformers_directory(cfg["checkpoint"]))
    except (CheckpointError, ValueError, OSError) as err:
        raise ValueError(f"model {name!r}: {err}") from err
    if layers == "all":
        return tuple(blocks)
    check_layer_names(layers, names, f"model {name!r} (transformers)", listing_command(cfg["checkpoint"]))
    position = {n: i for i, n in enumerate(names)}
    return tuple(sorted(layers, key=position.__getitem__))


def _check_layers(name: str, method: str, options: Mapping[str, Any], layers: tuple[str, ...]) -> tuple[str, ...]:
    """Check ``layers`` against the network's module names; return them in network order.

    Network (``named_modules``) order is the order the layer-wise figure plots them in,
    shallow to deep, whatever order the config lists them in; duplicates are dropped.
    """
    from dimcollapse.models.hooks import check_layer_names, listing_command
    from dimcollapse.models.layers import module_names

    names = module_names(method, options)
    check_layer_names(layers, names, f"model {name!r} ({method})", listing_command(method, options))
    position = {n: i for i, n in enumerate(names)}
    return tuple(sorted(layers, key=position.__getitem__))


#: Default ordering key of a checkpoint series: the last number in the checkpoint's path.
DEFAULT_SERIES_ORDER = r"(\d+)(?!.*\d)"


def series_members(name: str, cfg: Mapping[str, Any]) -> list[tuple[str, str, int | float]]:
    """``(member name, checkpoint, order value)`` of a ``checkpoints:`` series, in training order.

    ``checkpoints`` is a list of sources (paths or URLs) or a glob of local files
    (relative to the working directory); ``order`` is a regular expression searched in
    each source whose first group (or whole match) is the number that orders the series,
    e.g. ``epoch_(\\d+)``; by default the last number in the source. Members are named
    ``<name>@<value>``.
    """
    for key in ("checkpoint", "sha256", "filename"):
        if cfg.get(key) is not None:
            raise ValueError(f"model {name!r}: give `checkpoints` (a series) or `{key}`, not both")
    spec = cfg["checkpoints"]
    if isinstance(spec, str):
        sources = sorted(glob.glob(spec))
        if not sources:
            raise ValueError(f"model {name!r}: checkpoints glob {spec!r} matches no file (relative to {os.getcwd()})")
    else:
        sources = list(spec)
    pattern = cfg.get("order") or DEFAULT_SERIES_ORDER
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"model {name!r}: order `{pattern}` is not a regular expression: {err}") from err
    members: dict[int | float, str] = {}
    for source in sources:
        match = regex.search(source)
        text = (match.group(1) if regex.groups else match.group(0)) if match else None
        value = _number(text)
        if value is None:
            raise ValueError(
                f"model {name!r}: cannot read the order of checkpoint {source!r} with order `{pattern}` "
                f"(found {text!r}; the first group must be a number)"
            )
        if value in members:
            raise ValueError(f"model {name!r}: checkpoints {members[value]!r} and {source!r} both have order {value}")
        members[value] = source
    return [(f"{name}@{value}", members[value], value) for value in sorted(members)]


def _number(text: str | None) -> int | float | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _series_key(cfg: Mapping[str, Any]) -> str:
    """What the series' order counts, for axis labels: the regex's group name or leading word."""
    pattern = cfg.get("order") or DEFAULT_SERIES_ORDER
    named = list(re.compile(pattern).groupindex)
    if named:
        return named[0]
    word = re.match(r"[A-Za-z]+", pattern)
    return word.group(0) if word else "checkpoint"


def model_instances(config: Mapping[str, Any]) -> dict[str, ModelInstance]:
    """All configured model instances by name, in config order; a series gives one per checkpoint."""
    out: dict[str, ModelInstance] = {}
    for name, cfg in config["models"].items():
        if cfg.get("checkpoints") is None:
            out[name] = model_instance(name, cfg)
            continue
        members = series_members(name, cfg)  # checks the order pattern first
        label, key = cfg.get("label") or name, _series_key(cfg)
        for member, source, value in members:
            member_cfg = {**cfg, "checkpoint": source, "label": f"{label} ({key} {value})"}
            out[member] = model_instance(member, member_cfg, series=name, series_order=value, series_key=key)
    return out


def model_series(instances: Mapping[str, ModelInstance]) -> dict[str, list[str]]:
    """Members of each checkpoint series (by series name), in training order."""
    series: dict[str, list[str]] = {}
    for name, inst in instances.items():
        if inst.series is not None:
            series.setdefault(inst.series, []).append(name)
    return series


def study_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets the study runs, checked against the configured ones."""
    chosen = list(config.get("study", {}).get("datasets") or config["datasets"])
    _check_known("study.datasets", chosen, config["datasets"])
    return chosen


def study_models(config: Mapping[str, Any]) -> list[str]:
    """Model instances the study runs, checked against the configured ones.

    Naming a checkpoint series selects all its members (``<series>@<order>``, in order);
    a single member can also be named.
    """
    chosen = list(config.get("study", {}).get("models") or config["models"])
    instances = model_instances(config)
    series = model_series(instances)
    _check_known("study.models", chosen, {**instances, **series})
    out: list[str] = []
    for name in chosen:
        out.extend(series.get(name, [name]))
    return list(dict.fromkeys(out))


def _check_known(key: str, chosen: Iterable[str], known: Mapping[str, Any]) -> None:
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ValueError(f"config key {key}: unknown names {unknown}; configured: {sorted(known)}")
