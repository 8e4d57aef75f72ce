"""The feature store and the clip caches of a results folder: what they hold, what study
configs use of them, and whether their files can be read.

The back end of ``dimcollapse store list|prune|verify``. Both stores outlive every
config change by design (a checkpoint swapped back, a sampling tried again reuse them),
so at Kinetics scale they grow by tens to hundreds of GB per checkpoint and sampling
ever used. What a config uses is derived with the workflow's own functions: the extract
rule's job (:func:`~dimcollapse.config.jobs.extraction_job`), the store key of its identity
(:func:`~dimcollapse.extraction.store.instance_identity`) and the protocols' sampling
keys, so pruning can never disagree with what the next run would look up.

Layout under ``<results>``::

    store/<instance key>/            one per model instance × sampling × precision × numerics
    clips/<dataset>/<sampling key>/  a complete clip cache
    clips/<dataset>/<sampling key>.cache.json, .failures.csv   the rule's outputs for it
    clips/<dataset>/.<sampling key>.partial/                   an interrupted build
    clips/<dataset>/quarantine/<sampling key>[.n]/             a cache found damaged

Only entries that :mod:`dimcollapse.store_layout` proves the package wrote are listed,
verified or pruned; anything else there is the user's and is reported as foreign.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimcollapse.data.cache_files import META_FILE, CacheUnreadable
from dimcollapse.data.clip_cache import ClipCache, quarantine_cache
from dimcollapse.diskspace import human_bytes
from dimcollapse.extraction.store import InstanceStore
from dimcollapse.quarantine import QUARANTINE
from dimcollapse.store_layout import (
    cache_key,
    is_clip_cache_file,
    is_clip_cache_folder,
    is_quarantined_clip_cache,
    is_temporary,
    store_key_strangers,
)

STORE, CLIPS = "store", "clips"


# ------------------------------------------------------------------------------ listing
def store_keys(results: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One :meth:`InstanceStore.summary` per instance key under ``<results>/store``."""
    return [InstanceStore(d).summary() for d in _store_key_dirs(Path(results))]


def _store_key_dirs(results: Path) -> list[Path]:
    """The store keys under ``<results>/store`` (see store_layout; pruning also asks that
    nothing else is in them)."""
    return [d for d in _subdirs(results / STORE) if store_key_strangers(d) is not None]


def clip_caches(results: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every clip cache folder under ``<results>/clips``: complete, partial or quarantined."""
    out = []
    for ds in _subdirs(Path(results) / CLIPS):
        for path, state in _cache_folders(ds):
            meta: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads((path / META_FILE).read_text())
            files = [f for f in path.rglob("*") if f.is_file()]
            out.append({
                "dataset": ds.name, "sampling_key": cache_key(path.name), "state": state, "path": str(path),
                "protocol": (meta.get("protocol") or {}).get("key"), "clips": meta.get("rows"),
                "bytes": sum(f.stat().st_size for f in files),
                "last_written": max((f.stat().st_mtime for f in files), default=None),
            })
    return out


def _cache_folders(dataset_dir: Path) -> Iterator[tuple[Path, str]]:
    for path in _subdirs(dataset_dir, hidden=True):
        if path.name == QUARANTINE:
            yield from ((q, "quarantined") for q in _subdirs(path, hidden=True) if is_quarantined_clip_cache(q))
        elif is_clip_cache_folder(path):
            if path.name.startswith("."):
                yield path, "partial"
            else:
                yield path, "complete" if (path / META_FILE).is_file() else "no meta.json"


def foreign(results: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Entries under ``<results>/store`` and ``<results>/clips/<dataset>`` that dimcollapse
    did not write (or not only it), with why each is left alone."""
    results = Path(results)
    out = []
    for entry in _entries(results / STORE):
        strangers = store_key_strangers(entry)
        if strangers is None:
            out.append((entry, "not made by dimcollapse, left alone"))
        elif strangers:
            names = ", ".join(str(s.relative_to(entry)) for s in strangers[:3]) + (
                ", ..." if len(strangers) > 3 else ""
            )
            out.append(
                (
                    entry,
                    f"a feature store key, but it also holds files dimcollapse does not write ({names}); left alone",
                )
            )
    for ds in _subdirs(results / CLIPS):
        for entry in _entries(ds):
            if entry.name == QUARANTINE and entry.is_dir():
                out += [
                    (q, "not made by dimcollapse, left alone")
                    for q in _entries(entry)
                    if not is_quarantined_clip_cache(q)
                ]
            elif not (is_clip_cache_folder(entry) or is_clip_cache_file(entry) or is_temporary(entry)):
                out.append((entry, "not made by dimcollapse, left alone"))
    return out


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _subdirs(folder: Path, hidden: bool = False) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and (hidden or not d.name.startswith(".")))


# -------------------------------------------------------------------------------- usage
@dataclass
class Usage:
    """What study configs use: store keys, clip caches and instances whose key is unknown here."""

    store_keys: set[str] = field(default_factory=set)
    clip_caches: set[tuple[str, str]] = field(default_factory=set)  # (dataset, sampling key)
    #: instance name → method, for instances whose checkpoint is not on disk (their key needs its hash)
    unresolved: dict[str, str] = field(default_factory=dict)


def config_usage(configs: Sequence[Mapping[str, Any]], workdir: str | os.PathLike[str]) -> Usage:
    """Everything ``configs`` (validated, defaults filled in) would use, run in ``workdir``.

    Every configured model instance (series members included) on every configured
    dataset counts, whether or not ``study:`` selects it: a smaller study for a while
    must not cost the rest. Relative paths (checkpoints, globs, model config files) are
    read from ``workdir`` as the workflow reads them.
    """
    from dimcollapse.config.instances import model_instances
    from dimcollapse.config.jobs import job_protocol
    from dimcollapse.config.temporal import extraction_job, interventions
    from dimcollapse.data.interventions import ORIGINAL
    from dimcollapse.extraction.store import identity_key, instance_identity

    usage = Usage()
    with contextlib.chdir(workdir):
        for config in configs:
            cached = bool(config["extraction"]["clip_cache"])
            instances = model_instances(config)
            orders = interventions(config, instances)  # each frame order is a key of its own
            for dataset in config["datasets"]:
                for model in instances.values():
                    try:
                        protocol = job_protocol(config, dataset, model)
                    except ValueError:  # a combination the workflow cannot run either
                        continue
                    if cached:
                        usage.clip_caches.add((dataset, protocol.sampling_key))
                    checkpoint = _checkpoint_on_disk(model)
                    if model.checkpoint is not None and checkpoint is None:
                        usage.unresolved[model.name] = model.method
                        continue
                    for order in (ORIGINAL, *orders.get(model.name, ())):
                        job = extraction_job(config, model, protocol, order)
                        usage.store_keys.add(identity_key(instance_identity(job, checkpoint, clip_cache=cached)))
    return usage


def _checkpoint_on_disk(model: Any) -> str | None:
    """The checkpoint an extraction job would hash: the pipeline's copy, else the local source."""
    for candidate in (model.checkpoint_path, model.checkpoint):
        if candidate is not None and Path(candidate).exists():
            return str(candidate)
    return None


# -------------------------------------------------------------------------------- prune
@dataclass(frozen=True)
class Removal:
    """One folder or file that pruning removes (``only``: just these files of it)."""

    path: Path
    bytes: int
    what: str
    only: tuple[Path, ...] | None = None


@dataclass
class PrunePlan:
    """What pruning removes, what it keeps although unused-looking, and what it leaves alone."""

    removals: list[Removal] = field(default_factory=list)
    #: notes on kept entries: keys of instances whose checkpoint is not on disk, quarantine
    kept: list[str] = field(default_factory=list)
    #: entries dimcollapse did not write (or not only it), with why
    foreign: list[tuple[Path, str]] = field(default_factory=list)


def prune_plan(results: str | os.PathLike[str], usage: Usage, *, quarantine: bool = False) -> PrunePlan:
    """What to remove from ``results`` that ``usage`` does not need.

    Only entries proven to be the package's own are candidates (:mod:`dimcollapse.store_layout`);
    the others are listed in :attr:`PrunePlan.foreign`. Quarantined files (damaged files set
    aside for inspection) are removed only with ``quarantine``, whether or not their key is
    used; without it, an unused key loses its segments and index but keeps its ``quarantine/``.
    """
    results = Path(results)
    plan = PrunePlan(foreign=foreign(results))
    spared: list[Path] = []
    for summary in store_keys(results):
        path = results / STORE / summary["key"]
        held = path / QUARANTINE
        if store_key_strangers(path):
            continue  # holds files of someone else: in plan.foreign
        if summary["key"] in usage.store_keys:
            if quarantine and held.is_dir():
                plan.removals.append(
                    Removal(held, _bytes(held), f"quarantined files of feature store key ({_describe_key(summary)})")
                )
            elif held.is_dir():
                spared.append(held)
            continue
        method = summary.get("method")
        if usage.unresolved and (method is None or method in usage.unresolved.values()):
            names = sorted(n for n, m in usage.unresolved.items() if method in (None, m))
            plan.kept.append(
                f"{path}: kept: it may belong to {', '.join(names)}, whose checkpoint is not on disk "
                "here (its key needs the file's hash)"
            )
            continue
        what = f"feature store key ({_describe_key(summary)})"
        if held.is_dir() and not quarantine:
            parts = [path / sub for sub in ("data", "keys") if (path / sub).is_dir()]
            files = tuple(f for part in parts for f in sorted(part.iterdir()))
            spared.append(held)
            if files:  # (none left after an earlier prune: only the quarantine is there)
                plan.removals.append(
                    Removal(path, sum(f.stat().st_size for f in files), f"{what}; its quarantine/ is kept", files)
                )
        else:
            plan.removals.append(Removal(path, summary["bytes"], what))
    for ds in _subdirs(results / CLIPS):
        for path in sorted(ds.iterdir()):
            if path.name == QUARANTINE and path.is_dir():
                held = [q for q in _subdirs(path, hidden=True) if is_quarantined_clip_cache(q)]
                if quarantine:
                    plan.removals += [
                        Removal(q, _bytes(q), f"quarantined clip cache of dataset {ds.name}") for q in held
                    ]
                else:
                    spared += held
            elif (is_clip_cache_folder(path) or is_clip_cache_file(path)) and (
                ds.name,
                cache_key(path.name),
            ) not in usage.clip_caches:
                plan.removals.append(Removal(path, _bytes(path), f"clip cache of dataset {ds.name}"))
    if spared:
        folders = "1 quarantine folder" if len(spared) == 1 else f"{len(spared)} quarantine folders"
        plan.kept.append(
            f"kept: {folders} ({human_bytes(sum(map(_bytes, spared)))}) of damaged files set aside for "
            f"inspection, e.g. {spared[0]}; `--quarantine` removes them"
        )
    return plan


def remove(plan: Sequence[Removal]) -> None:
    for item in plan:
        for path in item.only if item.only is not None else (item.path,):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _describe_key(summary: Mapping[str, Any]) -> str:
    users = ", ".join(dict.fromkeys(u["instance"] for u in summary.get("used_by", []))) or "instance unknown"
    return f"{summary.get('method', 'method unknown')}: {users}"


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ------------------------------------------------------------------------------- verify
def verify(results: str | os.PathLike[str], repair: bool = False) -> list[str]:
    """Read every segment and index of the store and every clip cache's files; one line per
    damaged file. ``repair`` moves each to its ``quarantine/`` (what it held is computed
    again by the next run, which also builds a quarantined clip cache again)."""
    results = Path(results)
    problems: list[str] = []
    for key in _store_key_dirs(results):
        problems += InstanceStore(key).verify(repair)
    for ds in _subdirs(results / CLIPS):
        for path, state in _cache_folders(ds):
            if state not in ("complete", "no meta.json"):
                continue
            try:
                ClipCache(path)
            except (CacheUnreadable, FileNotFoundError) as err:
                problems.append(str(err))
                if repair:
                    quarantine_cache(path, str(err))
            except ValueError:
                continue  # an older cache format: the workflow rebuilds it, nothing is damaged
    return problems
