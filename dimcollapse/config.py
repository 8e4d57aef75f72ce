"""Study configuration: model instances, their protocols and checkpoint locations.

The Snakefile validates ``config.yaml`` against ``schemas/config.schema.yaml`` (which
also fills in defaults); this module turns the validated dict into the few resolved
objects every stage needs, so the workflow and the scripts derive paths, protocols and
build options in exactly one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dimcollapse.models import METHODS, canonical_method
from dimcollapse.data.protocols import Protocol, resolve_protocol

#: What figures, sidecars and the report say about a model without a checkpoint.
UNTRAINED = "untrained weights (demo)"

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

    @property
    def family(self) -> str:
        return METHODS[self.method].family

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(METHODS[self.method].spaces)

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


def model_instance(name: str, cfg: Mapping[str, Any]) -> ModelInstance:
    """Resolve one ``models:`` entry (already schema-validated)."""
    method = canonical_method(cfg["method"])
    checkpoint = cfg.get("checkpoint")
    filename = cfg.get("filename") or (_default_filename(checkpoint) if checkpoint else None)
    return ModelInstance(
        name=name,
        method=method,
        label=cfg.get("label") or name,
        checkpoint=checkpoint,
        filename=filename,
        sha256=cfg.get("sha256"),
        config=cfg.get("config"),
        seed=int(cfg.get("seed", 0)),
        frames=int(cfg.get("frames", 8)),
        rate=int(cfg.get("rate", 8)),
        protocol=cfg.get("protocol") or METHODS[method].default_protocol,
        protocol_options=dict(cfg.get("protocol_options") or {}),
        options=dict(cfg.get("options") or {}),
    )


def model_instances(config: Mapping[str, Any]) -> dict[str, ModelInstance]:
    """All configured model instances by name, in config order."""
    return {name: model_instance(name, cfg) for name, cfg in config["models"].items()}


def study_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets the study runs, checked against the configured ones."""
    chosen = list(config.get("study", {}).get("datasets") or config["datasets"])
    _check_known("study.datasets", chosen, config["datasets"])
    return chosen


def study_models(config: Mapping[str, Any]) -> list[str]:
    """Model instances the study runs, checked against the configured ones."""
    chosen = list(config.get("study", {}).get("models") or config["models"])
    _check_known("study.models", chosen, config["models"])
    return chosen


def _check_known(key: str, chosen: Iterable[str], known: Mapping[str, Any]) -> None:
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ValueError(f"config key {key}: unknown names {unknown}; configured: {sorted(known)}")


#: Protocol fields that are also ``build_model`` options, per model family: the model
#: must be built for exactly the input the protocol produces.
_PROTOCOL_TO_MODEL = {
    "slow_r50": {"frames": "frames", "crop_size": "crop_size"},
    "dpc": {"input_size": "sample_size", "num_seq": "num_seq", "seq_len": "seq_len"},
}
#: Model options that set a protocol field (``sample_size`` is the DPC crop unless the
#: protocol resizes the crop with ``output_size``, as for the UCF101 R18-128 model).
_MODEL_TO_PROTOCOL = {"dpc": {"sample_size": "crop_size", "num_seq": "num_seq", "seq_len": "seq_len"}}


def job_protocol(config: Mapping[str, Any], dataset: str, model: ModelInstance) -> Protocol:
    """The sampling protocol of one (dataset, model instance) job.

    Overrides apply from general to specific: the model's frames × rate, then the
    study-wide ``protocols:`` entry, then the dataset's, then (for DPC) the instance's
    ``sample_size``/``num_seq``/``seq_len`` options, then its ``protocol_options``.
    """
    overrides: dict[str, Any] = {}
    if model.family == "slow_r50":
        overrides.update(frames=model.frames, rate=model.rate)
    overrides.update(config.get("protocols", {}).get(model.protocol, {}))
    overrides.update(config["datasets"][dataset].get("protocols", {}).get(model.protocol, {}))
    if model.family == "dpc":
        to_protocol = _MODEL_TO_PROTOCOL["dpc"]
        overrides.update({to_protocol[k]: v for k, v in model.options.items() if k in to_protocol})
    overrides.update(model.protocol_options)
    try:
        return resolve_protocol(model.protocol, **overrides)
    except ValueError as err:
        raise ValueError(f"model {model.name!r} on dataset {dataset!r}: {err}") from err


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
    if model.checkpoint is None:
        opts["seed"] = model.seed
    return opts


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
