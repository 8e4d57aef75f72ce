"""Study configuration: model instances, their protocols and checkpoint locations.

The Snakefile validates ``config.yaml`` against ``schemas/config.schema.yaml`` (which
also fills in defaults); this module turns the validated dict into the few resolved
objects every stage needs, so the workflow and the scripts derive paths, protocols and
build options in exactly one place.
"""

from __future__ import annotations

import difflib
import functools
import glob
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dimcollapse.models import METHODS, ArchInfo, arch_info, canonical_method
from dimcollapse.data.protocols import Protocol, SlowProtocol, resolve_protocol

#: What figures, sidecars and the report say about a model without a checkpoint.
UNTRAINED = "untrained weights (demo)"
#: What the label of an untrained instance adds in a study that also has trained ones.
UNTRAINED_MARK = "untrained"

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
        return tuple(METHODS[self.method].spaces) + tuple(f"layer.{name}" for name in self.layers)

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
        arch = arch_info(METHODS[method].family, options.get("arch")) if method in ("torchvision", "pytorchvideo") else None
    except ValueError as err:
        raise ValueError(f"model {name!r}: {err}") from err
    if method == "custom" and not (isinstance(options.get("builder"), str) and ":" in options["builder"]):
        raise ValueError(f"model {name!r}: method custom needs options.builder: 'package.module:function'")
    checkpoint = cfg.get("checkpoint")
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
        raise ValueError(f"model {name!r}: method transformers needs checkpoint: a save_pretrained folder or "
                         "hf://<org>/<name>[@<revision>]")
    from dimcollapse.models.checkpoints import CheckpointError
    from dimcollapse.models.hub import checkpoint_clip

    try:
        return {"rate": TRANSFORMERS_RATE, **checkpoint_clip(_transformers_directory(checkpoint))}
    except (CheckpointError, ValueError) as err:  # the instance is what the user must fix
        raise ValueError(f"model {name!r}: {err}") from err


@functools.lru_cache(maxsize=None)
def _transformers_directory(checkpoint: str) -> Path:
    """The folder of a ``transformers`` checkpoint, for its config (a Hub snapshot's metadata only)."""
    from dimcollapse.models.hub import resolve_directory

    return resolve_directory(checkpoint, metadata_only=True)


def _transformers_filename(name: str, cfg: Mapping[str, Any]) -> str:
    from dimcollapse.models.hub import SNAPSHOT_RECORD

    for key, why in (("filename", "the download rule records the snapshot as " + SNAPSHOT_RECORD),
                     ("sha256", "pin a revision (hf://org/name@<commit>) instead; file hashes are recorded")):
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
        names, blocks = module_names(_transformers_directory(cfg["checkpoint"]))
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


def display_labels(instances: Mapping[str, ModelInstance]) -> dict[str, str]:
    """Labels of a study's instances as its tables and figures show them.

    Where trained and untrained weights are mixed, only the untrained instances are
    marked (``SimCLR (untrained)``); a study whose instances are all untrained says so
    once, in its figures' titles (:data:`UNTRAINED`), and one with none says nothing.
    """
    mixed = len({inst.untrained for inst in instances.values()}) == 2
    return {name: f"{inst.label} ({UNTRAINED_MARK})" if mixed and inst.untrained else inst.label
            for name, inst in instances.items()}


def depth_order(instance: ModelInstance) -> list[str]:
    """Spaces of a layer-wise instance from shallow to deep: its layers in network order,
    then ``representation`` (the classifier's input, the deepest feature it has)."""
    return [f"layer.{name}" for name in instance.layers] + ["representation"]


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


#: Protocol fields that are also ``build_model`` options, per model family: the model
#: must be built for exactly the input the protocol produces.
_CLIP = {"frames": "frames", "crop_size": "crop_size"}
_PROTOCOL_TO_MODEL = {
    "slow_r50": _CLIP,
    "dpc": {"input_size": "sample_size", "num_seq": "num_seq", "seq_len": "seq_len"},
    "torchvision": _CLIP,
    "pytorchvideo": _CLIP,
    "custom": _CLIP,
    "transformers": _CLIP,
}
#: Model options that set a protocol field (``sample_size`` is the DPC crop unless the
#: protocol resizes the crop with ``output_size``, as for the UCF101 R18-128 model).
_MODEL_TO_PROTOCOL = {"dpc": {"sample_size": "crop_size", "num_seq": "num_seq", "seq_len": "seq_len"}}


def job_protocol(config: Mapping[str, Any], dataset: str, model: ModelInstance) -> Protocol:
    """The sampling protocol of one (dataset, model instance) job.

    Overrides apply from general to specific: the architecture's model-card clip
    (``torchvision``/``pytorchvideo``: size, frame rate, mean/std) or the checkpoint's
    (``transformers``: its config and preprocessor config), the model's
    frames × rate, then the study-wide ``protocols:`` entry, then the dataset's, then
    (for DPC) the instance's ``sample_size``/``num_seq``/``seq_len`` options, then its
    ``protocol_options``.
    """
    overrides: dict[str, Any] = {}
    arch = model.arch_info
    if arch is not None:
        overrides.update(arch.protocol_overrides)
    if model.family == "transformers":
        overrides.update(transformers_clip(model.name, model.checkpoint))
    if model.family != "dpc":
        overrides.update(frames=model.frames, rate=model.rate)
    overrides.update(config.get("protocols", {}).get(model.protocol, {}))
    overrides.update(config["datasets"][dataset].get("protocols", {}).get(model.protocol, {}))
    if model.family == "dpc":
        to_protocol = _MODEL_TO_PROTOCOL["dpc"]
        overrides.update({to_protocol[k]: v for k, v in model.options.items() if k in to_protocol})
    overrides.update(model.protocol_options)
    try:
        protocol = resolve_protocol(model.protocol, **overrides)
    except ValueError as err:
        raise ValueError(f"model {model.name!r} on dataset {dataset!r}: {err}") from err
    fixed = arch.fixed_input if arch is not None else None
    if fixed is not None and (not isinstance(protocol, SlowProtocol) or (protocol.frames, protocol.crop_size) != fixed):
        frames, crop = fixed
        given = (f"frames={protocol.frames}, crop_size={protocol.crop_size}" if isinstance(protocol, SlowProtocol)
                 else f"{protocol.family} clips")
        raise ValueError(
            f"model {model.name!r} on dataset {dataset!r}: {arch.family} {arch.name} only accepts {frames}-frame "
            f"clips of {crop}×{crop}, but the protocol gives {given}"
        )
    if model.family == "transformers":
        _check_transformers_clip(model, dataset, protocol)
    return protocol


def _check_transformers_clip(model: ModelInstance, dataset: str, protocol: Protocol) -> None:
    """Refuse, before anything runs, a clip that the checkpoint's class cannot take."""
    from dimcollapse.models.hub import clip_problem, read_config

    config, spec = read_config(_transformers_directory(str(model.checkpoint)))
    problem = (clip_problem(config, spec, protocol.frames, protocol.crop_size) if isinstance(protocol, SlowProtocol)
               else f"{spec.name} takes T×H×W clips, not {protocol.family} clips")
    if problem is not None:
        raise ValueError(f"model {model.name!r} on dataset {dataset!r}: {problem}; set protocol_options (or frames) "
                         "to a clip it accepts")


def sampling_protocols(config: Mapping[str, Any], dataset: str) -> dict[str, Protocol]:
    """One protocol per clip cache of a dataset, keyed by ``Protocol.sampling_key``.

    Protocols that decode the same frames share a cache; the first study model (in
    config order) with a given sampling key supplies the representative protocol. Its
    crop and normalisation do not matter: the cache stores frames before them.
    """
    instances = model_instances(config)
    out: dict[str, Protocol] = {}
    for name in study_models(config):
        proto = job_protocol(config, dataset, instances[name])
        out.setdefault(proto.sampling_key, proto)
    return out


def build_options(model: ModelInstance, protocol: Protocol) -> dict[str, Any]:
    """Keyword options for ``build_model`` that match the protocol's input."""
    opts = dict(model.options)
    for name, opt in _PROTOCOL_TO_MODEL[model.family].items():
        opts[opt] = getattr(protocol, name)
    if model.layers:
        opts["layers"] = list(model.layers)
    if model.checkpoint is None:
        opts["seed"] = model.seed
    return opts


def extraction_job(config: Mapping[str, Any], model: ModelInstance, protocol: Protocol) -> dict[str, Any]:
    """The extract rule's ``job``: everything that changes the numbers of one instance's
    features on one dataset, and nothing else (so that e.g. a new loader worker count,
    device or sharding does not rerun extraction). ``device`` is not here (it only
    changes float rounding, see README); extraction jobs read it from the config.

    ``dimcollapse store prune`` derives the feature store keys a config uses from it too.
    """
    return {
        "model": {k: v for k, v in vars(model).items() if k != "label"},
        "protocol": protocol.to_dict(),
        "build_options": build_options(model, protocol),
        "precision": config["extraction"]["precision"],
        "keep_views": config["extraction"]["keep_views"],
    }


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A study config file as the workflow sees it: unknown keys refused, schema defaults filled in.

    For tools that run outside Snakemake (``dimcollapse store prune``).
    """
    import yaml
    from snakemake.utils import validate

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the config: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a config (a YAML mapping of keys)")
    schema = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
    if problems := unknown_keys_message(config, schema, [path]):
        raise ValueError(problems)
    try:
        validate(config, str(schema), set_default=True)
    except Exception as err:  # snakemake's WorkflowError: the schema's message
        raise ValueError(f"{path}: {err}") from err
    return config


def unknown_keys_message(
    config: Mapping[str, Any], schema_path: str | os.PathLike[str], config_files: Iterable[str | os.PathLike[str]]
) -> str | None:
    """One line per config key the schema does not allow, or None when there is none.

    Runs before schema validation, whose report of a misspelt key is the whole schema
    (hundreds of lines). Each line names the key as a dotted path, the config file that
    sets it (or ``--config`` for a command-line value) and the closest allowed key.
    Keys are checked wherever the schema lists them (``additionalProperties: false`` or
    an enum of property names), at every depth.
    """
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    files = list(dict.fromkeys(Path(f).resolve() for f in config_files))
    contents = [(f, _load_yaml(f)) for f in files]
    lines = []
    for path, allowed in _unknown_keys(config, schema, schema, ()):
        where = next((str(f) for f, data in contents if _has_path(data, path)), "--config")
        dotted = ".".join(path)
        close = difflib.get_close_matches(path[-1], allowed, n=1, cutoff=0.6)
        hint = f"did you mean {'.'.join((*path[:-1], close[0]))!r}?" if close else f"allowed: {', '.join(allowed)}"
        lines.append(f"{where}: unknown config key {dotted!r} ({hint})")
    return "\n".join(lines) or None


def _unknown_keys(
    value: Any, node: Mapping[str, Any], root: Mapping[str, Any], path: tuple[str, ...]
) -> Iterable[tuple[tuple[str, ...], list[str]]]:
    """``(key path, allowed keys)`` of every key of ``value`` that ``node`` does not allow."""
    while "$ref" in node:  # local references only ("#/$defs/...")
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    if not isinstance(value, Mapping):
        return
    props = node.get("properties") or {}
    extra = node.get("additionalProperties", True)
    names = (node.get("propertyNames") or {}).get("enum")
    allowed = list(names) if names is not None else list(props) if extra is False else None
    for key, item in value.items():
        if allowed is not None and key not in allowed:
            yield (*path, str(key)), allowed
        elif key in props:
            yield from _unknown_keys(item, props[key], root, (*path, str(key)))
        elif isinstance(extra, Mapping):
            yield from _unknown_keys(item, extra, root, (*path, str(key)))


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _has_path(data: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def nvidia_gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible here, from the driver's /proc entries.

    A cheap stand-in for ``torch.cuda.is_available()`` when only a resource request
    depends on it; ``CUDA_VISIBLE_DEVICES=""`` (or ``-1``) hides the GPUs as CUDA does.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def stable_hash(obj: Any, length: int = 12) -> str:
    """Short SHA-256 of a JSON-serialisable object (key order independent)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def code_version(*modules: str) -> str:
    """Hash of package source files, so Snakemake reruns rules whose code changed.

    Snakemake tracks the ``script:`` file but not the modules it imports; rules carry
    this value as a param. ``modules`` are paths relative to the package directory
    (a directory means every ``.py`` file below it).
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for mod in sorted(modules):
        target = root / mod
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]
