"""How tables and figures name a study's instances: labels that mark untrained weights, and
the order of a layer-wise instance's spaces."""

from __future__ import annotations

from collections.abc import Mapping

from dimcollapse.config.instances import ModelInstance
from dimcollapse.models.registry import layer_space

#: What the label of an untrained instance adds in a study that also has trained ones.
UNTRAINED_MARK = "untrained"


def display_labels(instances: Mapping[str, ModelInstance]) -> dict[str, str]:
    """Labels of a study's instances as its tables and figures show them.

    Where trained and untrained weights are mixed, only the untrained instances are
    marked (``SimCLR (untrained)``); a study whose instances are all untrained says so
    once, in its figures' titles (:data:`~dimcollapse.models.registry.UNTRAINED`), and one with none says nothing.
    """
    mixed = len({inst.untrained for inst in instances.values()}) == 2
    return {name: f"{inst.label} ({UNTRAINED_MARK})" if mixed and inst.untrained else inst.label
            for name, inst in instances.items()}


def depth_order(instance: ModelInstance) -> list[str]:
    """Spaces of a layer-wise instance from shallow to deep: its layers in network order,
    then ``representation`` (the classifier's input, the deepest feature it has)."""
    return [layer_space(name) for name in instance.layers] + ["representation"]
