"""Which methods exist, which family of network each uses, and what they output.

The paper compares six models. Four are SlowFast ``contrastive_ssl`` checkpoints that
share one Slow R50 backbone and differ only in the projection head and in how the
head output is post-processed; one is PyTorchVideo's supervised Slow R50; one is DPC.
Everything downstream (which feature spaces to write, which input protocol to use,
how to read a checkpoint) is decided from this table, so adding a model means adding
one row here rather than branching on names elsewhere. Three more methods open the
tool to other models: ``torchvision`` and ``pytorchvideo`` (every video classifier of
those libraries, chosen by the ``arch`` option, see :mod:`dimcollapse.models.archs`),
``transformers`` (Hugging Face video and image encoders, :mod:`dimcollapse.models.hf`)
and ``custom`` (a user's own builder function).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

#: What figures, sidecars and the report say about a model without a checkpoint.
UNTRAINED = "untrained weights (demo)"

Family = Literal["slow_r50", "dpc", "torchvision", "pytorchvideo", "custom", "transformers"]
CheckpointFormat = Literal[
    "pytorchvideo", "slowfast", "dpc", "torchvision", "pytorchvideo_hub", "state_dict", "transformers"
]


@dataclass(frozen=True)
class HeadSpec:
    """Shape of a SlowFast ``MLPHead`` (``CONTRASTIVE.*`` and ``MODEL.NUM_CLASSES``).

    ``num_layers`` counts the Linear layers. With ``num_layers == 1`` SlowFast uses a
    plain ``nn.Linear`` instead of an ``MLPHead``; ``mlp_dim`` and ``bn`` are then unused.
    """

    dim_out: int
    num_layers: int
    mlp_dim: int
    bn: bool


@dataclass(frozen=True)
class MethodInfo:
    """Static facts about one method of the paper.

    ``contrastive_type`` is SlowFast's ``CONTRASTIVE.TYPE`` (checked against the
    checkpoint's own config); ``normalize_embedding`` says whether SlowFast's
    ``ContrastiveModel`` L2-normalises its eval-mode output and ``normalize_eps`` how:
    SimCLR divides by the plain norm (SlowFast's ``Normalize`` module), SwAV uses
    ``F.normalize``, which clamps the norm at 1e-12; ``default_head`` is the
    head of the released checkpoints (the ``configs/contrastive_ssl`` YAML files), used
    for seeded random initialisation when neither a config nor a checkpoint is given.
    """

    name: str
    family: Family
    spaces: tuple[str, ...]
    checkpoint_format: CheckpointFormat
    default_protocol: Literal["paper", "slowfast_test", "dpc"]
    contrastive_type: str | None = None
    normalize_embedding: bool = False
    normalize_eps: float = 0.0
    default_head: HeadSpec | None = None

    @property
    def embedding_dim(self) -> int | None:
        """Size of the embedding space of the released checkpoints (None: no embedding)."""
        return None if self.default_head is None else self.default_head.dim_out


_REP = ("representation",)
_REP_EMB = ("representation", "embedding")

METHODS: Mapping[str, MethodInfo] = MappingProxyType(
    {
        "supervised": MethodInfo("supervised", "slow_r50", _REP, "pytorchvideo", "paper"),
        "SimCLR": MethodInfo(
            "SimCLR", "slow_r50", _REP_EMB, "slowfast", "paper",
            contrastive_type="simclr", normalize_embedding=True,
            default_head=HeadSpec(dim_out=128, num_layers=3, mlp_dim=2048, bn=False),
        ),
        "MoCo": MethodInfo(
            "MoCo", "slow_r50", _REP_EMB, "slowfast", "paper",
            contrastive_type="moco", normalize_embedding=False,
            default_head=HeadSpec(dim_out=128, num_layers=3, mlp_dim=2048, bn=False),
        ),
        "SwAV": MethodInfo(
            "SwAV", "slow_r50", _REP_EMB, "slowfast", "paper",
            contrastive_type="swav", normalize_embedding=True, normalize_eps=1e-12,
            default_head=HeadSpec(dim_out=128, num_layers=3, mlp_dim=2048, bn=True),
        ),
        "BYOL": MethodInfo(
            "BYOL", "slow_r50", _REP_EMB, "slowfast", "paper",
            contrastive_type="byol", normalize_embedding=False,
            default_head=HeadSpec(dim_out=256, num_layers=2, mlp_dim=4096, bn=True),
        ),
        "DPC": MethodInfo("DPC", "dpc", _REP, "dpc", "dpc"),
        # Families beyond the paper: the architecture is the ``arch`` option (see
        # :mod:`dimcollapse.models.archs`, which also holds each arch's own protocol) or,
        # for ``custom``, whatever the user's ``builder`` returns.
        "torchvision": MethodInfo("torchvision", "torchvision", _REP, "torchvision", "paper"),
        "pytorchvideo": MethodInfo("pytorchvideo", "pytorchvideo", _REP, "pytorchvideo_hub", "paper"),
        "custom": MethodInfo("custom", "custom", _REP, "state_dict", "paper"),
        # Hugging Face video and image encoders, from a save_pretrained folder or hf:// id
        # (see :mod:`dimcollapse.models.hub` and :mod:`dimcollapse.models.hf`).
        "transformers": MethodInfo("transformers", "transformers", _REP, "transformers", "paper"),
    }
)

#: Methods of the paper (fixed architectures with their original checkpoint formats).
PAPER_METHODS: tuple[str, ...] = ("supervised", "SimCLR", "MoCo", "SwAV", "BYOL", "DPC")


def canonical_method(name: str) -> str:
    """Return the canonical spelling of a method name (matching is case-insensitive)."""
    if not isinstance(name, str):
        raise ValueError(f"method must be a string, got {name!r}; valid methods: {', '.join(METHODS)}")
    for canonical in METHODS:
        if canonical.lower() == name.strip().lower():
            return canonical
    raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")


#: Feature spaces of a network's layers are named ``layer.<module name>`` (a ``named_modules()`` name).
LAYER_PREFIX = "layer."


def layer_space(module: str) -> str:
    """The feature space of the output of the network's module ``module``."""
    return LAYER_PREFIX + module


def space_layer(space: str) -> str | None:
    """The module whose output a ``layer.<module>`` space holds; ``None`` for the other spaces."""
    return space[len(LAYER_PREFIX):] if space.startswith(LAYER_PREFIX) else None


def instance_spaces(method: str, layers: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The feature spaces an instance of ``method`` writes: the method's own, then one per layer."""
    return tuple(METHODS[method].spaces) + tuple(layer_space(name) for name in layers)
