"""Hugging Face ``transformers`` checkpoints as static facts: where they are, what they hold.

The ``transformers`` method reads a folder as ``save_pretrained`` writes it or as a Hub
snapshot holds it (``config.json`` plus ``model.safetensors``, a sharded
``model.safetensors.index.json`` or ``pytorch_model.bin``, and a ``(video_)preprocessor_config.json``),
named either by its local path or by ``hf://<org>/<name>[@<revision>]``. Hub ids resolve
through ``huggingface_hub`` (its cache, ``HF_HOME``, ``HF_HUB_OFFLINE=1``), so a snapshot
is downloaded once and every later run, online or not, reads the cached copy.

This module imports neither torch nor transformers: the workflow reads a checkpoint's
default clip (:func:`checkpoint_clip`) and checks the configured clip against what the
class accepts (:func:`clip_problem`) while parsing. :mod:`dimcollapse.models.hf` builds the
network. The per-class facts (:data:`CLASSES`) were checked against transformers 5.24.0:

* which input keyword the class takes (and, for ``VideoMAEForPreTraining``, the published
  self-supervised VideoMAE files, that only its encoder runs) (``pixel_values`` or ``pixel_values_videos``);
* how its ``representation`` is read (the ``classifier``'s input, the mean of
  ``last_hidden_state``, its class token, or the per-frame ``pooler_output`` of an image
  encoder averaged over the clip);
* how many leading tokens are class/register tokens (left out of layer averages);
* which clip sizes its default forward accepts: ``fixed`` position embeddings need the
  configured frames/size exactly (VideoMAE, ViViT, CLIP, SigLIP, ViT); TimeSformer and
  DINOv2 interpolate them and V-JEPA 2 and DINOv3 use rotary embeddings, so they take any
  multiple of the patch (and V-JEPA 2 of its tubelet) size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dimcollapse.models.checkpoints import CheckpointError

HF_SCHEME = "hf://"
#: What the download rule writes for a ``transformers`` instance: the resolved folder and the
#: hashes of its files, as JSON (the feature store's key uses the hashes, never the path); no ``.json``
#: suffix, which the rule's sidecar pattern ``<file>.json`` would claim.
SNAPSHOT_RECORD = "hf_snapshot"
CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PREPROCESSORS = ("video_preprocessor_config.json", "preprocessor_config.json")
#: The files a snapshot needs for the workflow to choose its protocol (fetched while parsing).
METADATA_PATTERNS = [CONFIG, *PREPROCESSORS]

Representation = Literal["classifier", "token_mean", "class_token", "pooler"]
SizeRule = Literal["fixed", "patch"]


@dataclass(frozen=True)
class HFClass:
    """Facts about one transformers class (see the module docstring).

    ``registers``: the config has ``num_register_tokens`` register tokens after the class
    token. ``frames``: ``fixed`` (position embeddings per frame), ``tubelet`` (a multiple of
    the tubelet length) or ``any``; ``None`` for image encoders, which see one frame at a time.
    ``encoder``: the submodule to run instead of the whole network (a pretraining checkpoint's
    encoder: its decoder is loaded, so that the file is checked whole, but never run).
    """

    name: str
    input: Literal["pixel_values", "pixel_values_videos"]
    representation: Representation
    class_token: bool
    size: SizeRule
    frames: Literal["fixed", "tubelet", "any"] | None
    registers: bool = False
    encoder: str = ""

    @property
    def image(self) -> bool:
        return self.frames is None


def _video(
    name: str,
    input_: Literal["pixel_values", "pixel_values_videos"],
    rep: Representation,
    cls: bool,
    size: SizeRule,
    frames: Literal["fixed", "tubelet", "any"],
) -> HFClass:
    return HFClass(name, input_, rep, cls, size, frames)


def _image(name: str, cls: bool, size: SizeRule, registers: bool = False) -> HFClass:
    return HFClass(name, "pixel_values", "pooler", cls, size, None, registers)


CLASSES: Mapping[str, HFClass] = {
    c.name: c
    for c in (
        _video("VideoMAEModel", "pixel_values", "token_mean", False, "fixed", "fixed"),
        HFClass("VideoMAEForPreTraining", "pixel_values", "token_mean", False, "fixed", "fixed", encoder="videomae"),
        _video("VideoMAEForVideoClassification", "pixel_values", "classifier", False, "fixed", "fixed"),
        _video("VJEPA2Model", "pixel_values_videos", "token_mean", False, "patch", "tubelet"),
        _video("VJEPA2ForVideoClassification", "pixel_values_videos", "classifier", False, "patch", "tubelet"),
        _video("TimesformerModel", "pixel_values", "class_token", True, "patch", "any"),
        _video("TimesformerForVideoClassification", "pixel_values", "classifier", True, "patch", "any"),
        _video("VivitModel", "pixel_values", "class_token", True, "fixed", "fixed"),
        _video("VivitForVideoClassification", "pixel_values", "classifier", True, "fixed", "fixed"),
        _image("Dinov2Model", True, "patch"),
        _image("Dinov2WithRegistersModel", True, "patch", registers=True),
        _image("DINOv3ViTModel", True, "patch", registers=True),
        _image("SiglipVisionModel", False, "fixed"),
        _image("CLIPVisionModel", True, "fixed"),
        # the published SigLIP and CLIP files hold the text tower too: loaded whole, vision tower run
        HFClass("SiglipModel", "pixel_values", "pooler", False, "fixed", None, encoder="vision_model"),
        HFClass("CLIPModel", "pixel_values", "pooler", True, "fixed", None, encoder="vision_model"),
        _image("ViTModel", True, "fixed"),
    )
}
#: Classes transformers 5.24.0 has but this family does not take, and why (named in the error).
UNSUPPORTED = {
    "VideoPrismVisionModel": "its factorised encoder runs spatial layers on frames and temporal layers on "
                             "patch positions, so its layers are not B×tokens×C",
    "VideoPrismVideoModel": "see VideoPrismVisionModel",
    "Siglip2VisionModel": "it takes pre-patchified pixels with a patch mask, not frames",
}


# ----------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class HubId:
    """``hf://<repo_id>[@<revision>]``."""

    repo_id: str
    revision: str | None

    def __str__(self) -> str:
        return HF_SCHEME + self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(source: str) -> HubId | None:
    """The Hub id of an ``hf://`` source; None for a local path. ValueError for a malformed id."""
    if not source.startswith(HF_SCHEME):
        return None
    rest = source[len(HF_SCHEME):]
    repo, _, revision = rest.partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or (revision == "" and "@" in rest):
        raise ValueError(f"checkpoint {source!r}: expected hf://<org>/<name>[@<revision>]")
    return HubId(repo, revision or None)


def resolve_directory(source: str | os.PathLike[str], *, metadata_only: bool = False) -> Path:
    """The local folder a checkpoint source names: the path itself, the Hub snapshot, or the
    folder a download rule's :data:`SNAPSHOT_RECORD` names.

    ``metadata_only``: fetch only the config and preprocessor files of a Hub snapshot not yet
    cached (what the workflow needs while parsing); the weights come with the download rule.
    """
    hub = parse_hub_id(str(source))
    if hub is None:
        path = Path(source).expanduser()
        if path.name == SNAPSHOT_RECORD and path.is_file():
            return read_snapshot_record(path)[0]
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such directory (a transformers checkpoint is a folder with {CONFIG})")
        return path
    return Path(snapshot(hub, patterns=METADATA_PATTERNS if metadata_only else None))


def snapshot(hub: HubId, patterns: list[str] | None = None) -> str:
    """``huggingface_hub.snapshot_download`` of ``hub``; honours its cache and ``HF_HUB_OFFLINE``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(hub.repo_id, revision=hub.revision, allow_patterns=patterns)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{hub}: cannot get the snapshot from the Hub or from the cache under HF_HOME={home} "
            f"({type(err).__name__}: {first}); run once with network access or put the snapshot in that cache"
        ) from err


def read_json(directory: Path, name: str) -> dict[str, Any] | None:
    """A JSON file of the checkpoint folder (None when absent); CheckpointError when unreadable."""
    path = directory / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_config(directory: Path) -> tuple[dict[str, Any], HFClass]:
    """``config.json`` of a checkpoint folder and the supported class its ``architectures`` names."""
    config = read_json(directory, CONFIG)
    if config is None:
        raise CheckpointError(
            f"{directory}: no {CONFIG}; not a transformers checkpoint folder (save_pretrained layout)"
        )
    names = config.get("architectures") or []
    if not isinstance(names, list) or not names:
        raise CheckpointError(f"{directory / CONFIG}: has no 'architectures' entry naming the model class")
    name = names[0]
    if name in CLASSES:
        return config, CLASSES[name]
    why = UNSUPPORTED.get(name)
    reason = (
        f"{name} is not supported: {why}"
        if why
        else f"{name} (model_type {config.get('model_type')!r}) is not a video or image encoder this family reads"
    )
    raise CheckpointError(f"{directory / CONFIG}: {reason}; supported classes: {', '.join(CLASSES)}")


def weight_files(directory: Path) -> list[str]:
    """The files that hold the weights, as ``from_pretrained`` reads them (names relative to the folder).

    A sharded checkpoint lists its shards in the index; a missing shard is an error naming it.
    """
    if (directory / SAFETENSORS).is_file():
        return [SAFETENSORS]
    index = read_json(directory, SAFETENSORS_INDEX)
    if index is not None:
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            raise CheckpointError(f"{directory / SAFETENSORS_INDEX}: has no weight_map")
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise CheckpointError(f"{directory}: shard(s) {missing} listed in {SAFETENSORS_INDEX} are missing")
        return [SAFETENSORS_INDEX, *shards]
    if (directory / PYTORCH_BIN).is_file():
        return [PYTORCH_BIN]
    raise CheckpointError(f"{directory}: no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN})")


def file_hashes(directory: Path) -> dict[str, str]:
    """SHA-256 of the config and every weight file (the checkpoint's content, not its path)."""
    return {name: _sha256(directory / name) for name in [CONFIG, *weight_files(directory)]}


def content_digest(hashes: Mapping[str, str]) -> str:
    """One SHA-256 over the files' names and hashes: what the feature store keys on."""
    return hashlib.sha256(json.dumps(dict(hashes), sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------ clip defaults
def encoder_config(config: Mapping[str, Any], spec: HFClass) -> Mapping[str, Any]:
    """The part of ``config.json`` that describes the network that runs (a dual tower's ``vision_config``)."""
    return config.get("vision_config") or {} if spec.encoder == "vision_model" else config


def frames_and_size(config: Mapping[str, Any], spec: HFClass) -> tuple[int | None, int]:
    """The clip the checkpoint was configured for: (frames or None for image encoders, crop size)."""
    config = encoder_config(config, spec)
    frames = None if spec.image else int(config.get("frames_per_clip", config.get("num_frames", 16)))
    size = config.get("crop_size", config.get("image_size", 224))
    return frames, int(size[0] if isinstance(size, (list, tuple)) else size)


def _patch(config: Mapping[str, Any]) -> tuple[int, int]:
    """(tubelet length, patch side) of a config (ViViT gives ``tubelet_size`` as [t, h, w])."""
    tubelet = config.get("tubelet_size", 1)
    if isinstance(tubelet, (list, tuple)):
        return int(tubelet[0]), int(tubelet[1])
    return int(tubelet), int(config.get("patch_size", 16))


def clip_problem(config: Mapping[str, Any], spec: HFClass, frames: int, crop: int) -> str | None:
    """Why the class's default forward cannot take ``frames``×``crop``², or None when it can."""
    want_frames, want_size = frames_and_size(config, spec)
    tubelet, patch = _patch(encoder_config(config, spec))
    if spec.size == "fixed" and crop != want_size:
        return f"{spec.name} has position embeddings for {want_size}×{want_size} only (got crop_size={crop})"
    if crop % patch:
        return f"{spec.name} needs a crop size that is a multiple of its patch size {patch} (got {crop})"
    if spec.frames == "fixed" and frames != want_frames:
        return f"{spec.name} has position embeddings for {want_frames} frames only (got frames={frames})"
    if spec.frames in ("fixed", "tubelet") and frames % tubelet:
        return f"{spec.name} needs a multiple of its tubelet length {tubelet} frames (got {frames})"
    return None


def checkpoint_clip(directory: Path) -> dict[str, Any]:
    """Protocol overrides from the checkpoint: frames, short side, crop, mean and std.

    Frames and crop come from ``config.json`` (``num_frames``/``frames_per_clip``,
    ``image_size``/``crop_size``; image encoders default to 8 frames), the short side and
    normalisation from the (video) preprocessor config. Its rescaling is folded into the mean
    and std of a ``/255`` protocol: transformers computes ``((a·x/255 + o) − m) / s`` with
    ``a = 255·rescale_factor`` and ``o = −1`` when ``offset`` is set (ViViT's [−1, 1]), which is
    ``(x/255 − (m − o)/a) / (s/a)``.
    """
    config, spec = read_config(directory)
    frames, crop = frames_and_size(config, spec)
    pre = next((p for p in (read_json(directory, n) for n in PREPROCESSORS) if p is not None), {})
    clip: dict[str, Any] = {"frames": frames or 8, "crop_size": _edge(pre.get("crop_size"), crop)}
    clip["side_size"] = _edge(pre.get("size"), clip["crop_size"])
    if "image_mean" in pre and "image_std" in pre:
        scale = float(pre.get("rescale_factor", 1 / 255)) * 255 if pre.get("do_rescale", True) else 1 / 255
        offset = -1.0 if pre.get("offset") else 0.0
        clip["mean"] = [(float(m) - offset) / scale for m in pre["image_mean"]]
        clip["std"] = [float(s) / scale for s in pre["image_std"]]
    return clip


def _edge(value: Any, default: int) -> int:
    """A preprocessor size entry (int, ``{"shortest_edge": n}`` or ``{"height": h, "width": w}``) as one side."""
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        for key in ("shortest_edge", "height"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return default


# ------------------------------------------------------------------------ the download
def fetch_snapshot(source: str, dest: str | os.PathLike[str], sidecar: str | os.PathLike[str]) -> dict[str, Any]:
    """Resolve ``source`` to a complete folder (downloading a Hub snapshot when the network allows)
    and record it: ``dest`` gets the folder and its file hashes, ``sidecar`` the provenance
    (source, repo, revision asked for, commit resolved, files with size and SHA-256)."""
    import datetime as _dt

    from dimcollapse.atomic import write_json

    hub = parse_hub_id(source)
    directory = Path(snapshot(hub) if hub is not None else resolve_directory(source)).resolve()
    read_config(directory)
    hashes = file_hashes(directory)
    record = {
        "source": source,
        "directory": str(directory),
        "repo_id": hub.repo_id if hub else None,
        "revision": hub.revision if hub else None,
        "commit": directory.name if hub else None,  # the Hub cache names snapshots by commit
        "files": {n: {"size": (directory / n).stat().st_size, "sha256": h} for n, h in hashes.items()},
        "content_sha256": content_digest(hashes),
        "method": "huggingface_hub" if hub else "local directory",
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(dest, {"directory": record["directory"], "files": hashes})
    write_json(sidecar, record)
    return record


def read_snapshot_record(path: str | os.PathLike[str]) -> tuple[Path, dict[str, str]]:
    """The folder and file hashes that the download rule recorded in ``path``."""
    try:
        data = json.loads(Path(path).read_text())
        return Path(data["directory"]), dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: not a snapshot record of the download rule ({err}); delete it and rerun"
        ) from err


__all__ = [
    "CLASSES",
    "HF_SCHEME",
    "SNAPSHOT_RECORD",
    "HFClass",
    "HubId",
    "checkpoint_clip",
    "clip_problem",
    "encoder_config",
    "content_digest",
    "fetch_snapshot",
    "file_hashes",
    "frames_and_size",
    "parse_hub_id",
    "read_config",
    "read_snapshot_record",
    "resolve_directory",
    "weight_files",
]
