"""One function per workflow rule: the glue between Snakemake and the package.

Each rule's script (``scripts/<rule>.py``) only calls the function of the same name
with the ``snakemake`` object. The functions unpack inputs, outputs, params and
threads, set up logging to the rule's log file and call the typed module APIs; they
hold no computation of their own.
"""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.atomic import write_json
from dimcollapse.failures import read_failures, write_failures
from dimcollapse.logs import setup_logging

log = logging.getLogger("dimcollapse.stages")


def _start(smk: Any) -> None:
    setup_logging(smk.log[0] if smk.log else None)
    log.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))


def demo_videos(smk: Any) -> None:
    from dimcollapse.demo import generate_demo

    _start(smk)
    demo = smk.params.demo
    paths = generate_demo(
        smk.params.root, seed=demo["seed"], videos_per_class=demo["videos_per_class"], split=smk.params.split
    )
    log.info("wrote %d demo videos under %s", len(paths), smk.params.root)
    write_json(smk.output[0], {"root": smk.params.root, "videos": [str(p) for p in paths], **demo})


def manifest(smk: Any) -> None:
    from dimcollapse.manifest import build_manifest, write_manifest

    _start(smk)
    frame, failures = build_manifest(
        smk.params.dataset, workers=smk.threads, on_error=smk.config["extraction"]["on_error"]
    )
    write_manifest(smk.output.manifest, frame)
    write_failures(smk.output.failures, failures)
    log.info("manifest: %d videos, %d left out (see %s)", len(frame), len(failures), smk.output.failures)


def failures(smk: Any) -> None:
    from dimcollapse.features import aligned_index
    from dimcollapse.manifest import read_manifest
    from dimcollapse.shards import ShardResult

    _start(smk)
    found = []
    for path in smk.input.stages:
        found += ShardResult.load(path).failures if str(path).endswith(".npz") else read_failures(path)
    manifest = read_manifest(smk.input.manifest)
    index = aligned_index(manifest, found)
    write_failures(smk.output.failures, found)
    index.to_csv(smk.output.index, index=False)
    n_failed = len(manifest) - len(index)
    if n_failed:
        log.warning("%d of %d manifest videos failed in a later stage and are left out for every method",
                    n_failed, len(manifest))
    log.info("%d videos kept; failures of every stage in %s", len(index), smk.output.failures)
