"""The temporal study's part of the configuration: frame-order interventions and time-resolved spaces.

Two settings decide it (schema in ``schemas/config.schema.yaml``):

* ``temporal.interventions``: instance (or checkpoint series) → frame orders among
  ``reversed``, ``shuffled``, ``frozen`` (:mod:`dimcollapse.data.interventions`). Each
  order of an instance is one more extraction per shard, whose spaces ``<space>@<order>``
  (every space of the instance) are feature spaces of their own: merged, analysed and
  probed like ``representation``, with the same rows.
* ``time_resolved`` on a ``models:`` entry: ``true`` or a list of spaces that keep their
  time axis too (:mod:`dimcollapse.models.time_axes`), written as
  ``<space>_time.npy`` (N × T′ × D) beside the pooled matrix.

The extract rule's job (:func:`extraction_job`) is :func:`dimcollapse.config.jobs.extraction_job`
with these added only when set, so that a study without them keeps its jobs, its feature
store keys and its outputs as they were, and adding an order adds jobs of its own without
touching those of the original frames.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from dimcollapse.config.instances import ModelInstance, model_series
from dimcollapse.config.jobs import extraction_job as original_job
from dimcollapse.data.interventions import INTERVENTIONS, ORIGINAL, intervened_space
from dimcollapse.data.protocols import Protocol
from dimcollapse.models.time_axes import instance_time_resolved


def time_resolved(config: Mapping[str, Any], model: ModelInstance) -> tuple[str, ...]:
    """The spaces of ``model`` that its ``models:`` entry (its series' entry) asks to keep time-resolved."""
    request = config["models"][model.series or model.name].get("time_resolved")
    return _time_resolved(model.name, model.family, model.spaces,
                          tuple(request) if isinstance(request, list) else request, model.checkpoint)


@functools.cache
def _time_resolved(name: str, family: str, spaces: tuple[str, ...], request: Any, checkpoint: str | None
                   ) -> tuple[str, ...]:
    """Memoised: every job of the workflow asks (a transformers checkpoint's config is read once)."""
    return instance_time_resolved(name, family, spaces, list(request) if isinstance(request, tuple) else request,
                                  checkpoint)


def interventions(config: Mapping[str, Any], instances: Mapping[str, ModelInstance]) -> dict[str, tuple[str, ...]]:
    """Frame orders per model instance (``temporal.interventions``; a series' name gives every
    member the orders), in the order of :data:`~dimcollapse.data.interventions.INTERVENTIONS`."""
    asked = (config.get("temporal") or {}).get("interventions") or {}
    series = model_series(instances)
    unknown = [name for name in asked if name not in instances and name not in series]
    if unknown:
        raise ValueError(f"config key temporal.interventions: unknown model instances {unknown}; "
                         f"configured: {sorted({**instances, **series})}")
    out: dict[str, tuple[str, ...]] = {}
    for name, orders in asked.items():
        for member in series.get(name, [name]):
            chosen = set(out.get(member, ())) | set(orders)
            out[member] = tuple(o for o in INTERVENTIONS if o in chosen)
    return {name: out[name] for name in instances if out.get(name)}


def intervened_spaces(model: ModelInstance, orders: tuple[str, ...]) -> list[str]:
    """Every ``<space>@<order>`` of ``model`` under ``orders``, order by order."""
    return [intervened_space(space, order) for order in orders for space in model.spaces]


def extraction_job(config: Mapping[str, Any], model: ModelInstance, protocol: Protocol,
                   frame_order: str = ORIGINAL) -> dict[str, Any]:
    """The extract rule's job (:func:`dimcollapse.config.jobs.extraction_job`) with the instance's
    time-resolved spaces and the frame order, each only when there is one."""
    job = original_job(config, model, protocol)
    spaces = list(time_resolved(config, model))
    if spaces:
        job["model"]["time_resolved"] = spaces
        job["build_options"]["time_resolved"] = spaces
    if frame_order != ORIGINAL:
        job["frame_order"] = frame_order
    return job


def temporal_plan(config: Mapping[str, Any], instances: Mapping[str, ModelInstance],
                  study: list[str]) -> dict[str, dict[str, list[str]]]:
    """What the temporal table of a dataset covers: per study instance with interventions or
    time-resolved spaces, its spaces, its frame orders and its time-resolved spaces."""
    orders = interventions(config, instances)
    plan = {}
    for name in study:
        resolved = time_resolved(config, instances[name])
        if orders.get(name) or resolved:
            plan[name] = {"spaces": list(instances[name].spaces), "orders": list(orders.get(name, ())),
                          "time_resolved": list(resolved)}
    return plan


__all__ = ["extraction_job", "intervened_spaces", "interventions", "temporal_plan", "time_resolved"]
