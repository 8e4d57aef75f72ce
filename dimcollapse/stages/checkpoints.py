"""Stage of ``rules/checkpoints.smk``: download a checkpoint or a Hugging Face snapshot."""

from __future__ import annotations

import logging
from typing import Any

from dimcollapse.stages.common import start

log = logging.getLogger("dimcollapse.stages")


def download_checkpoint(smk: Any) -> None:
    from pathlib import Path

    from dimcollapse.models.download import fetch_checkpoint
    from dimcollapse.models.hub import SNAPSHOT_RECORD, fetch_snapshot

    start(smk)
    if Path(smk.output.checkpoint).name == SNAPSHOT_RECORD:  # a transformers folder or Hub snapshot
        snap = fetch_snapshot(smk.params.source, smk.output.checkpoint, smk.output.sidecar)
        log.info("%s: %s (commit %s), %d files, content SHA-256 %s", snap["source"], snap["directory"],
                 snap["commit"], len(snap["files"]), snap["content_sha256"])
        return
    record = fetch_checkpoint(smk.params.source, smk.output.checkpoint, smk.params.sha256)
    log.info("%s: %d bytes, SHA-256 %s (%s)", record["path"], record["size"], record["sha256"],
             "verified" if record["verified"] else "not pinned: add it to the config as sha256")
