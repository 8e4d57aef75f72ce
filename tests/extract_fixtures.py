"""Extraction jobs outside Snakemake: tiny datasets, job dicts, stage calls, a kill harness.

Job dicts are built exactly as ``extraction_params`` in ``rules/common.smk`` builds
them (model instance, resolved protocol, build options, precision, device), so the
tests exercise the same inputs the workflow passes to ``extract_shard``.

Run as a script (``python tests/extract_fixtures.py ARGS.json``) this module is the
harness of the kill/resume tests: it calls ``extract_shard`` with the keyword
arguments in the JSON file, optionally sleeping before each batch's forward pass so
that the parent can observe and kill it mid-way. The slowdown wraps the package's
function from outside; the package itself has no test hooks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: Protocol overrides of the tests: 64-pixel crops keep a Slow R50 clip at ~0.1 s on one core.
CONFIG: dict[str, Any] = {
    "datasets": {"tiny": {"layout": "kinetics"}},
    "protocols": {"paper": {"side_size": 64, "crop_size": 64}, "dpc": {"side_size": 64, "crop_size": 64}},
}

#: Model instances as a ``models:`` config section would list them (seeded random weights).
MODELS: dict[str, dict[str, Any]] = {
    "simclr": {"method": "SimCLR", "seed": 1},
    "dpc": {"method": "DPC", "seed": 2, "options": {"arch": "resnet18"}},
    "sup": {"method": "supervised", "seed": 0},
}

BATCH_SIZE = 2


def make_dataset(root: Path, *, videos_per_class: int = 2) -> Path:
    """Demo videos (5 classes) under ``root/videos`` and their manifest; returns the manifest path."""
    from dimcollapse.data.demo import generate_demo
    from dimcollapse.data.manifest import build_manifest, write_manifest

    videos = root / "videos"
    generate_demo(videos, seed=0, videos_per_class=videos_per_class, duration_range=(2.2, 2.5), short_seconds=0.8)
    frame, failures = build_manifest({"layout": "kinetics", "root": str(videos), "split": "val"}, progress=False)
    assert not failures, failures
    path = root / "manifest.csv"
    write_manifest(path, frame)
    return path


def instance(name: str, overrides: Mapping[str, Any] | None = None):
    """The resolved ``ModelInstance`` of one of :data:`MODELS` (with config overrides)."""
    from dimcollapse.config.instances import model_instance

    return model_instance(name, {**MODELS[name], **(overrides or {})})


def job_for(name: str, *, precision: str = "fp32", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``job`` dict of the extract rule for model ``name`` (as ``extraction_params``)."""
    from dimcollapse.config import jobs

    model = instance(name, overrides)
    proto = jobs.job_protocol(CONFIG, "tiny", model)
    return {
        "model": {k: v for k, v in vars(model).items() if k != "label"},
        "protocol": proto.to_dict(),
        "build_options": jobs.build_options(model, proto),
        "precision": precision,
        "keep_views": False,
    }


def extract_kwargs(
    job: dict[str, Any],
    manifest: Path,
    output: Path,
    store_root: Path,
    *,
    shard: int = 0,
    n_shards: int = 1,
    clip_cache: Path | None = None,
    checkpoint: Path | None = None,
    flush_every: int = BATCH_SIZE,
    max_rel_error: float = 0.01,
    workers: int = 0,
) -> dict[str, Any]:
    """Keyword arguments of ``extract_shard`` as ``stages.extract.extract`` passes them (JSON-ready)."""
    return {
        "job": job,
        "manifest_path": str(manifest),
        "shard": shard,
        "n_shards": n_shards,
        "output": str(output),
        "store_root": str(store_root),
        "device": "cpu",
        "clip_cache": None if clip_cache is None else str(clip_cache),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "threads": 1,
        "batch_size": BATCH_SIZE,
        "workers": workers,
        "flush_every": flush_every,
        "max_rel_error": max_rel_error,
    }


def run_extract(**kwargs: Any):
    """``extract_shard(**extract_kwargs(...))`` in this process; returns its ``RunStats``."""
    from dimcollapse.extraction.extract import extract_shard

    return extract_shard(**extract_kwargs(**kwargs))


def start_harness(kwargs: dict[str, Any], workdir: Path, *, sleep_per_batch: float = 0.0) -> subprocess.Popen[bytes]:
    """Start this module as a script that runs ``extract_shard(**kwargs)`` in a child process."""
    args = workdir / "harness-args.json"
    args.write_text(json.dumps({"kwargs": kwargs, "sleep_per_batch": sleep_per_batch}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log = open(workdir / "harness.log", "wb")  # noqa: SIM115 - closed when the child is reaped
    try:
        return subprocess.Popen([sys.executable, __file__, str(args)], stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()


class Named(dict):
    """Attribute access to a dict, like Snakemake's ``input``/``output``/``params`` objects."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err


@contextlib.contextmanager
def _restored_logging() -> Iterator[None]:
    """Undo what ``setup_logging`` does to this process (handlers, excepthook, warnings)."""
    root = logging.getLogger()
    handlers, level, hook = root.handlers[:], root.level, sys.excepthook
    try:
        with warnings.catch_warnings():
            yield
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = hook
        logging.captureWarnings(False)


def run_stage(stage: Callable[[Any], None], log: Path, *, input: Mapping[str, Any], output: Mapping[str, Any],
              params: Mapping[str, Any] | None = None, wildcards: Mapping[str, str] | None = None) -> None:
    """Call a ``dimcollapse.stages`` function with a stand-in for the ``snakemake`` object."""
    smk = Named(input=Named(input), output=Named(output), params=Named(params or {}),
                wildcards=Named(wildcards or {}), log=[str(log)], rule=stage.__name__, threads=1, config={})
    with _restored_logging():
        stage(smk)


def _main(args_file: str) -> None:
    import dimcollapse.extraction.extract as extract
    from dimcollapse.logs import setup_logging

    spec = json.loads(Path(args_file).read_text())
    pause = float(spec["sleep_per_batch"])
    if pause > 0:
        forward = extract.forward_views

        def slow_forward(*args: Any, **kwargs: Any):
            time.sleep(pause)
            return forward(*args, **kwargs)

        extract.forward_views = slow_forward
    setup_logging(None)  # as the rule scripts do: log lines on stderr (the harness log)
    extract.extract_shard(**spec["kwargs"])


if __name__ == "__main__":
    _main(sys.argv[1])
