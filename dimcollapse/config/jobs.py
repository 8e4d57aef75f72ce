"""The jobs of a study: each (dataset, model instance)'s sampling protocol, the clip caches
they share, the model's build options and the extract rule's job, derived in one place for
the workflow and for ``dimcollapse store``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dimcollapse.config.instances import (
    ModelInstance,
    model_instances,
    study_models,
    transformers_clip,
    transformers_directory,
)
from dimcollapse.data.protocols import Protocol, SlowProtocol, resolve_protocol

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
    given_input = (protocol.frames, protocol.crop_size) if isinstance(protocol, SlowProtocol) else None
    if arch is not None and arch.fixed_input is not None and given_input != arch.fixed_input:
        frames, crop = arch.fixed_input
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

    config, spec = read_config(transformers_directory(str(model.checkpoint)))
    problem = (clip_problem(config, spec, protocol.frames, protocol.crop_size) if isinstance(protocol, SlowProtocol)
               else f"{spec.name} takes T×H×W clips, not {protocol.family} clips")
    if problem is not None:
        raise ValueError(f"model {model.name!r} on dataset {dataset!r}: {problem}; set protocol_options (or frames) "
                         "to a clip it accepts")


def sampling_protocols(config: Mapping[str, Any], dataset: str) -> dict[str, Protocol]:
    """The clip caches of a dataset: ``{sampling key: Protocol.cache_protocol()}``.

    Protocols that decode the same frames share a cache, described by their common
    sampling with a neutral crop and normalisation (the cache stores frames before them).
    """
    instances = model_instances(config)
    out: dict[str, Protocol] = {}
    for name in study_models(config):
        proto = job_protocol(config, dataset, instances[name])
        out.setdefault(proto.sampling_key, proto.cache_protocol())
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
    changes float rounding, see README): it reaches the job as one of its resources, with
    how else it runs (``EXTRACTION_RUN`` in ``rules/common.smk``).

    ``dimcollapse store prune`` derives the feature store keys a config uses from it too.
    """
    return {
        "model": {k: v for k, v in vars(model).items() if k != "label"},
        "protocol": protocol.to_dict(),
        "build_options": build_options(model, protocol),
        "precision": config["extraction"]["precision"],
        "keep_views": config["extraction"]["keep_views"],
    }
