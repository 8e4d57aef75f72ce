"""``dimcollapse store list|prune|verify``: look after the feature store and clip caches.

Run from the project folder (the workflow's working directory), or give ``--results
DIR`` for another results folder; its parent is then the working directory, where
Snakemake keeps its locks and the workflow finds ``config.yaml`` and checkpoints.
Exit codes: 0 fine, 1 damaged files found (``verify``) or pruning refused while a
Snakemake run uses the folder, 2 bad input (a config that cannot be read).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dimcollapse.diskspace import human_bytes

EXIT_FOUND = 1


def add_store_parser(sub: Any, input_error: Callable[[str], Exception]) -> None:
    """Add ``store`` and its actions to the ``dimcollapse`` subcommands.

    ``input_error`` builds the exception the command line reports as bad input.
    """
    s = sub.add_parser("store", help="list, prune or verify the feature store and clip caches",
                       description="Look after results/store (features of every clip, per instance key) and "
                       "results/clips (decoded clips, per dataset and sampling).")
    actions = s.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help)
        p.add_argument("--results", default="results", metavar="DIR", type=_results_folder,
                       help="the results folder (default: results, in the current folder)")
        return p

    ls = action("list", "per instance key: method, checkpoint, sampling, precision, numerics version, clips, "
                "bytes, last written; clip caches likewise")
    ls.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ls.set_defaults(run=_list)

    prune = action("prune", "remove store keys and clip caches that the config no longer uses (only folders and "
                   "files dimcollapse provably wrote; anything else is listed and left alone)")
    prune.add_argument("--configfile", action="append", metavar="FILE",
                       help="study config whose keys are kept (repeat to keep what any of several uses; "
                       "default: config.yaml beside the results folder)")
    prune.add_argument("--dry-run", action="store_true", help="print what would go and the space it frees")
    prune.add_argument("--quarantine", action="store_true",
                       help="also remove every quarantine/ folder (damaged files set aside for inspection), "
                       "used keys' included; without it they are kept")
    prune.set_defaults(run=lambda args: _prune(args, input_error))

    check = action("verify", "read every segment, index and clip cache; name each torn or corrupt file "
                   "(exit code 1 when there is one)")
    check.add_argument("--repair", action="store_true",
                       help="move damaged files to quarantine/, so the next run computes their clips again")
    check.set_defaults(run=_verify)


def _results_folder(value: str) -> str:
    """``--results``: an existing folder. A mistyped path, or a command run outside the project
    folder, would otherwise list an empty store and "verify" it as whole."""
    if not Path(value).is_dir():
        raise argparse.ArgumentTypeError(
            f"{value}: no such folder (run from the project folder, or give --results DIR)")
    return value


# ------------------------------------------------------------------------------ actions
def _list(args: argparse.Namespace) -> int:
    from dimcollapse.results_stores import clip_caches, foreign, store_keys

    keys, caches, others = store_keys(args.results), clip_caches(args.results), foreign(args.results)
    if args.json:
        print(
            json.dumps(
                {"store": keys, "clips": caches, "foreign": [{"path": str(p), "note": why} for p, why in others]},
                indent=2,
                default=str,
            )
        )
        return 0
    root = Path(args.results)
    total = sum(k["bytes"] for k in keys)
    print(f"Feature store {root / 'store'}: {len(keys)} instance keys, {human_bytes(total)}")
    _table(
        [_key_row(k) for k in keys],
        (
            "key",
            "instances",
            "method",
            "checkpoint",
            "sha256",
            "sampling",
            "frames",
            "precision",
            "numerics",
            "clips",
            "size",
            "last written",
            "quarantined",
        ),
    )
    print(f"\nClip caches {root / 'clips'}: {len(caches)}, {human_bytes(sum(c['bytes'] for c in caches))}")
    _table(
        [
            {
                "dataset": c["dataset"],
                "sampling key": c["sampling_key"],
                "protocol": c["protocol"] or "?",
                "state": c["state"],
                "clips": _text(c["clips"]),
                "size": human_bytes(c["bytes"]),
                "last written": _when(c["last_written"]),
            }
            for c in caches
        ],
        ("dataset", "sampling key", "protocol", "state", "clips", "size", "last written"),
    )
    if others:
        print(f"\nNot made by dimcollapse ({len(others)}; never pruned):")
        for path, why in others:
            print(f"  {path}: {why}")
    return 0


def _prune(args: argparse.Namespace, input_error: Callable[[str], Exception]) -> int:
    from dimcollapse.config.schema import load_config
    from dimcollapse.results_stores import config_usage, prune_plan, remove
    from dimcollapse.workflow_lock import locks_holding

    results = Path(args.results)
    workdir = results.resolve().parent
    files = [Path(f) for f in args.configfile] if args.configfile else [workdir / "config.yaml"]
    try:
        configs = [load_config(f) for f in files]
    except ValueError as err:
        raise input_error(str(err)) from err
    if not args.dry_run and (locks := locks_holding(results, workdir)):
        print(
            f"dimcollapse: error: a Snakemake run holds files of {results} (lock: {locks[0]}); prune when it "
            "has ended. If no run is active, the lock is left from a killed run: `snakemake --unlock` "
            f"in {workdir} removes it.",
            file=sys.stderr,
        )
        return EXIT_FOUND
    pruning = prune_plan(results, config_usage(configs, workdir), quarantine=args.quarantine)
    plan = pruning.removals
    used_by = ", ".join(str(f) for f in files)
    verb = "would remove" if args.dry_run else "removing"
    for item in plan:
        print(f"{verb} {item.path} ({human_bytes(item.bytes)}): {item.what}")
    for note in pruning.kept:
        print(note)
    for path, why in pruning.foreign:
        print(f"{path}: {why}")
    freed = human_bytes(sum(item.bytes for item in plan))
    if not plan:
        print(f"nothing to prune: {used_by} uses every store key and clip cache under {results}")
        return 0
    if args.dry_run:
        print(f"{len(plan)} items, {freed} would be freed (kept: what {used_by} uses)")
        return 0
    remove(plan)
    print(f"removed {len(plan)} items, {freed} freed (kept: what {used_by} uses)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dimcollapse.results_stores import verify

    problems = verify(args.results, repair=args.repair)
    for line in problems:
        print(f"damaged: {line}")
    if not problems:
        print(f"{args.results}: every store segment, index and clip cache reads back whole")
        return 0
    if args.repair:
        print(f"{len(problems)} damaged files moved to quarantine/; the next run computes their clips again")
        return 0
    print(f"{len(problems)} damaged files; `dimcollapse store verify --repair` moves them aside", file=sys.stderr)
    return EXIT_FOUND


# ------------------------------------------------------------------------------ printing
def _key_row(k: Mapping[str, Any]) -> dict[str, str]:
    users = k.get("used_by") or []
    protocol = k.get("protocol") or {}
    sha = k.get("checkpoint_sha256")
    checkpoints = sorted({Path(u["checkpoint"]).name for u in users if u.get("checkpoint")})
    if "checkpoint_sha256" in k and sha is None:
        checkpoint = "untrained"
    else:
        checkpoint = ", ".join(checkpoints) or "?"
    return {
        "key": k["key"],
        "instances": ", ".join(dict.fromkeys(u["instance"] for u in users)) or "?",
        "method": _text(k.get("method")),
        "checkpoint": checkpoint,
        "sha256": sha[:12] if sha else "-",
        "sampling": _text(protocol.get("key")),
        "frames": _text(k.get("frames")) + (f", {k['frame_order']}" if k.get("frame_order") else ""),  # an intervention
        "precision": _text(k.get("precision")),
        "numerics": _text(k.get("numerics_version")),
        "clips": str(k["clips"]),
        "size": human_bytes(k["bytes"]),
        "last written": _when(k["last_written"]),
        "quarantined": str(k["quarantined"]),
    }


def _table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> None:
    if not rows:
        print("  (none)")
        return
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  " + "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  " + "  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))
