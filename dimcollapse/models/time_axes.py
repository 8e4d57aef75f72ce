"""Which feature spaces keep a time axis, as torch-free facts per model family.

A time-resolved space (``time_resolved:`` on a model instance) is the space before its
average over time: an N × T′ × D array, one vector per clip and time step, whose mean over
the T′ steps is the pooled space (:mod:`dimcollapse.models.time_resolved` computes it):

* Slow R50 (the paper's five models): the ``representation`` is the s5 map averaged over
  height and width only (T′ = T, the Slow pathway has no temporal stride);
* layers of convolutional networks (Slow R50, torchvision, PyTorchVideo, a user's own):
  the layer's output map averaged over height and width;
* transformers video encoders: tokens grouped by their time position (T′ = T / tubelet)
  and averaged within each group, for ``representation`` (encoders whose representation
  is the token mean) and layers;
* image encoders frame by frame: one vector per frame (T′ = T).

The workflow's start checks the request against these rules without torch, so that a
space without a time axis is refused before anything runs, naming the instance and why.
"""

from __future__ import annotations

from collections.abc import Sequence

from dimcollapse.models.registry import space_layer

#: Suffix of a time-resolved array's name: ``representation_time`` (N × T′ × D) beside
#: ``representation`` (N × D), as ``<space>_views`` holds the views of a space.
TIME_SUFFIX = "_time"

_POOLED_BY_THE_NETWORK = (
    "the representation is the classifier's input, which the network has already averaged over time; "
    "list layers (layers: [...]) and ask for those"
)


def time_key(space: str) -> str:
    """Name of the time-resolved array of ``space`` (in model outputs, shards and files)."""
    return f"{space}{TIME_SUFFIX}"


def no_time_axis(family: str, space: str, representation: str | None = None) -> str | None:
    """Why ``space`` of a model of ``family`` has no time axis, or None when it has one.

    ``representation``: for ``transformers``, how the class reads its representation
    (:data:`dimcollapse.models.hub.CLASSES`: ``token_mean``, ``pooler``, ``class_token``,
    ``classifier``).
    """
    if family == "dpc":
        return "DPC's representation is the last state of a GRU run over its blocks: it has no time axis"
    if space == "embedding":
        return "the embedding is a projection of the pooled representation: it has no time axis"
    if space_layer(space) is not None:
        return None
    if space != "representation":
        return f"unknown space {space!r}"
    if family == "slow_r50":
        return None
    if family == "transformers":
        if representation in ("token_mean", "pooler"):
            return None
        if representation == "class_token":
            return "the representation is the class token, which summarises every frame; list layers and ask for those"
        return _POOLED_BY_THE_NETWORK
    return _POOLED_BY_THE_NETWORK


def time_resolved_spaces(
    name: str, family: str, spaces: Sequence[str], request: bool | Sequence[str] | None,
    representation: str | None = None,
) -> tuple[str, ...]:
    """The spaces of instance ``name`` that ``time_resolved: request`` asks for.

    ``true``: every space with a time axis (the embedding has none); a list: exactly those
    spaces, each of which must be one of the instance's and have a time axis. Raises
    ValueError naming the instance and the reason otherwise.
    """
    if not request:
        return ()
    if request is True:
        chosen = [s for s in spaces if no_time_axis(family, s, representation) is None]
        if not chosen:
            reason = no_time_axis(family, "representation", representation)
            raise ValueError(f"model {name!r}: time_resolved: no space of it has a time axis ({reason})")
        return tuple(chosen)
    if isinstance(request, str) or not all(isinstance(s, str) for s in request):
        raise ValueError(f"model {name!r}: time_resolved must be true or a list of spaces, got {request!r}")
    for space in request:
        if space not in spaces:
            raise ValueError(f"model {name!r}: time_resolved names {space!r}, which is not one of its spaces "
                             f"({', '.join(spaces)})")
        reason = no_time_axis(family, space, representation)
        if reason is not None:
            raise ValueError(f"model {name!r}: time_resolved: {space} has no time axis ({reason})")
    return tuple(s for s in spaces if s in request)


def instance_time_resolved(
    name: str, family: str, spaces: Sequence[str], request: bool | Sequence[str] | None, checkpoint: str | None = None,
) -> tuple[str, ...]:
    """:func:`time_resolved_spaces` of a configured instance; for ``transformers``, the kind of
    representation is read from the config of its ``checkpoint`` (folder or ``hf://`` id)."""
    if not request:
        return ()
    representation = None
    if family == "transformers":
        from dimcollapse.models.hub import read_config, resolve_directory

        representation = read_config(resolve_directory(str(checkpoint), metadata_only=True))[1].representation
    return time_resolved_spaces(name, family, spaces, request, representation)


__all__ = ["TIME_SUFFIX", "instance_time_resolved", "no_time_axis", "time_key", "time_resolved_spaces"]
