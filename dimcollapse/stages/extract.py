"""Stages of ``rules/extract.smk`` (and the frame-order extractions of
``rules/temporal.smk``, which run :func:`extract` with their order in the job): one shard
of features, and the merged matrices."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from dimcollapse.atomic import write_json
from dimcollapse.stages.common import start

log = logging.getLogger("dimcollapse.stages")


#: The clip-level feature store (see dimcollapse.extraction.store).
FEATURE_STORE = "results/store"


def _checkpoint_errors_name_the_source(stage: Callable[[Any], None]) -> Callable[[Any], None]:
    """A checkpoint problem found in the pipeline's copy is reported on the user's file it came from."""

    @functools.wraps(stage)
    def run(smk: Any) -> None:
        try:
            stage(smk)
        except Exception as err:
            from dimcollapse.models.checkpoints import CheckpointError
            from dimcollapse.models.download import name_the_source

            checkpoint = smk.input.get("checkpoint")
            if not isinstance(err, CheckpointError) or checkpoint is None:
                raise
            raise CheckpointError(name_the_source(str(err), checkpoint)) from err

    return run


@_checkpoint_errors_name_the_source
def extract(smk: Any) -> None:
    start(smk)
    w = smk.wildcards
    run = smk.resources  # how the job runs (device, batch size, loader workers, ...): see rules/common.smk
    if run.device != "cpu":  # before torch is imported: CUDA reads CUDA_VISIBLE_DEVICES once
        from dimcollapse.extraction.gpu_slots import acquire_gpu

        acquire_gpu(run.gpu_lock_dir or None)
    from dimcollapse.extraction.extract import extract_shard

    extract_shard(
        job=smk.params.job,
        manifest_path=smk.input.manifest,
        shard=int(w.shard),
        n_shards=int(w.nshards),
        output=smk.output[0],
        store_root=FEATURE_STORE,
        device=run.device,
        clip_cache=_clip_cache_dir(smk.input.get("clips")),
        checkpoint=smk.input.get("checkpoint"),
        threads=smk.threads,
        batch_size=run.batch_size,
        workers=run.loader_workers,
        flush_every=run.flush_every,
        max_rel_error=smk.params.max_rel_error,
    )


def _clip_cache_dir(marker: str | None) -> str | None:
    """The clip cache directory an extraction job reads, from the marker it depends on."""
    if marker is None:
        return None
    from dimcollapse.data.cache_files import cache_dir_of

    return str(cache_dir_of(marker))


def merge_features(smk: Any) -> None:
    import pandas as pd

    from dimcollapse.data.manifest import read_manifest
    from dimcollapse.extraction.features import merge_space, save_npy, sidecar
    from dimcollapse.extraction.shards import ShardResult, views_key

    start(smk)
    shards = [ShardResult.load(p) for p in smk.input.shards]
    n_manifest = len(read_manifest(smk.input.manifest))
    index = pd.read_csv(smk.input.index, dtype={"id": str})
    features = merge_space(shards, index, n_manifest, smk.wildcards.space)
    save_npy(smk.output.features, features)
    if getattr(smk.output, "views", None):
        views = merge_space(shards, index, n_manifest, views_key(smk.wildcards.space))
        save_npy(smk.output.views, views.reshape(len(features), -1, features.shape[1]))
    write_json(smk.output.sidecar, sidecar(
        features, shards, smk.params.job, dataset=smk.wildcards.dataset, space=smk.wildcards.space,
        n_manifest=n_manifest, rows_file=smk.input.index,
    ))
    log.info("%s: %d × %d", smk.output.features, *features.shape)
