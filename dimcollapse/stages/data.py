"""Stages of ``rules/data.smk``: demo videos, manifest, clip cache, failures and notes."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.atomic import atomic_path, write_json
from dimcollapse.failures import read_failures, write_failures
from dimcollapse.stages.common import progress_logger, start

log = logging.getLogger("dimcollapse.stages")


#: Content hashes of video files, shared by every dataset (see dimcollapse.data.content).
HASH_CACHE = "results/manifests/.content-hashes"


def demo_videos(smk: Any) -> None:
    from dimcollapse.data.demo import generate_demo

    start(smk)
    demo = smk.params.demo
    paths = generate_demo(
        smk.params.root, seed=demo["seed"], videos_per_class=demo["videos_per_class"], split=smk.params.split
    )
    log.info("wrote %d demo videos under %s", len(paths), smk.params.root)
    write_json(smk.output[0], {"root": smk.params.root, "videos": [str(p) for p in paths], **demo})


def manifest(smk: Any) -> None:
    from dimcollapse.data.manifest import ManifestError, build_manifest, write_manifest

    start(smk)
    frame, failures = build_manifest(
        smk.params.dataset, workers=smk.threads, on_error=smk.params.on_error,
        hash_cache=HASH_CACHE,
    )
    if len(frame) < 2:  # a spectrum of one row is empty: stop before any clip is decoded or extracted
        examples = "; ".join(f"{f.path}: {f.error}" for f in failures[:3])
        raise ManifestError(f"dataset {smk.wildcards.dataset!r}: {len(frame)} usable video(s), at least 2 are needed "
                            f"({len(failures)} failed{', e.g. ' + examples if examples else ''}); check the "
                            "dataset's root and layout in the config")
    write_manifest(smk.output.manifest, frame)
    write_failures(smk.output.failures, failures)
    log.info("manifest: %d videos, %d left out (see %s)", len(frame), len(failures), smk.output.failures)


def clip_cache(smk: Any) -> None:
    from dimcollapse.data.cache_files import cache_dir_of
    from dimcollapse.data.clip_cache import update_clip_cache
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.data.protocols import Protocol

    start(smk)
    rows = read_manifest(smk.input.manifest)
    # The sampling the cache holds (config.sampling_protocols); the output path names its key.
    protocol = Protocol.from_dict(smk.params.protocol)
    progress = progress_logger("decoded")
    # The cache directory outlives reruns (it is not a declared output) so that a rebuild
    # can reuse the frames of unchanged videos; the marker stands for it in the DAG.
    cache = cache_dir_of(smk.output.marker)
    build = update_clip_cache(rows, protocol, cache, workers=smk.threads,
                              on_error=smk.params.on_error, progress=progress)
    write_failures(smk.output.failures, build.failures)
    write_json(smk.output.marker, {"cache": str(cache), "sampling_key": protocol.sampling_key,
                                   "rows": len(rows), **build.summary()})


def failures(smk: Any) -> None:
    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.features import aligned_index
    from dimcollapse.extraction.shards import load_failures

    start(smk)
    found = []
    for path in smk.input.stages:
        found += load_failures(path) if str(path).endswith(".npz") else read_failures(path)
    manifest = read_manifest(smk.input.manifest)
    index = aligned_index(manifest, found)
    write_failures(smk.output.failures, found)
    with atomic_path(smk.output.index, suffix=".csv") as tmp:
        index.to_csv(tmp, index=False)
    n_failed = len(manifest) - len(index)
    if n_failed:
        log.warning("%d of %d manifest videos failed in a later stage and are left out for every method",
                    n_failed, len(manifest))
    log.info("%d videos kept; failures of every stage in %s", len(index), smk.output.failures)


def notes(smk: Any) -> None:
    from pathlib import Path

    import pandas as pd

    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.notes import ROTATED, SHORT, video_notes, write_notes

    start(smk)
    shards: dict[str, list[str]] = {}
    for path in smk.input.shards:  # results/features/<dataset>/<instance>/shards/<i>-of-<K>.npz
        shards.setdefault(Path(path).parts[-3], []).append(str(path))
    index = pd.read_csv(smk.input.index, dtype={"id": str}, keep_default_na=False)
    found = video_notes(read_manifest(smk.input.manifest), index["id"], shards, smk.params.samplings)
    write_notes(smk.output[0], found)
    short, rotated = ({n.id for n in found if n.note == kind} for kind in (SHORT, ROTATED))
    log.info("%d of %d videos short for some sampling, %d with a display rotation not applied; listed in %s",
             len(short), len(index), len(rotated), smk.output[0])
