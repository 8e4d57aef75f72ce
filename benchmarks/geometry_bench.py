"""Benchmark: TwoNN intrinsic dimension (``twonn_dimension``) against scikit-dimension's
``TwoNN`` and against the float32 Gram blocks it is built on.

Three paths on one N × D float32 feature file (default 20,000 × 2,048, the spectrum
benchmark's power-law features), each in its own subprocess so that its peak resident
memory (``VmHWM``) is its own:

* ``ours`` — :func:`dimcollapse.analysis.metrics.twonn_dimension` on CPU: chunked Gram
  blocks of the upper triangle, top-k by rows and columns, exact check of the candidates;
* ``skdim`` — ``skdim.id.TwoNN().fit(X)`` (pairwise_distances_chunked + a sort of every
  distance row), the reference whose number ours must equal;
* ``gram`` — only the float32 GEMMs that the search computes, ``x[chunk] @ x[chunk start:].T``
  over every row chunk (the upper triangle, same chunk size): the floor that any Gram-based
  search pays.

Times exclude interpreter start, imports and reading the file. Targets: ≥ 3× faster than
scikit-dimension, ≤ 1.5× the Gram time, peak memory < 1 GB, the same dimension (1e-3
relative). Ratios are printed last.

Usage: python benchmarks/geometry_bench.py [--rows 20000] [--dim 2048] [--chunk-rows 1024]
       [--skip-skdim] [--tmpdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from spectrum_bench import rss_mb, write_features  # noqa: E402

from dimcollapse.analysis.pairwise import DEFAULT_CHUNK_ROWS  # noqa: E402


def worker(kind: str, path: str, chunk_rows: int) -> dict:
    import torch

    if kind == "skdim":
        import skdim  # noqa: F401 - imported before the baseline is read
    from dimcollapse.analysis.metrics import twonn_dimension

    base = rss_mb()
    x = np.load(path)
    t0 = time.perf_counter()
    result: dict = {}
    if kind == "ours":
        out = twonn_dimension(x, device="cpu")
        result = {"dimension": out.dimension, "duplicates": out.n_duplicates}
    elif kind == "skdim":
        import skdim

        result = {"dimension": float(skdim.id.TwoNN().fit(x).dimension_)}
    else:
        xt = torch.from_numpy(x)
        for start in range(0, len(x), chunk_rows):  # the upper-triangle blocks the search computes
            xt[start : start + chunk_rows] @ xt[start:].T
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": rss_mb(), "base_mb": base, "threads": torch.get_num_threads(), **result}


def run_worker(kind: str, path: Path, chunk_rows: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(path), "--chunk-rows", str(chunk_rows)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


NAMES = {"gram": "float32 Gram blocks", "ours": "twonn_dimension", "skdim": "scikit-dimension TwoNN"}


def print_report(results: dict[str, dict]) -> None:
    """The table of the paths' measurements, then the ratios against the targets."""
    print("| path | time (s) | peak memory (MB) | net of imports (MB) | TwoNN dimension |")
    print("|---|---|---|---|---|")
    for kind, r in results.items():
        dim = f"{r['dimension']:.4f}" if "dimension" in r else "–"
        print(f"| {NAMES[kind]} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['base_mb']:.0f} | {dim} |")
    ours, gram = results["ours"], results["gram"]
    print("ratios:")
    print(f"    time (twonn_dimension / Gram blocks)   = {ours['seconds'] / gram['seconds']:.2f}  (target <= 1.5)")
    if "skdim" in results:
        ref = results["skdim"]
        print(f"    speed-up (scikit-dimension / ours)     = {ref['seconds'] / ours['seconds']:.1f}x  (target >= 3)")
        print(f"    |Δ dimension| / dimension              = "
              f"{abs(ours['dimension'] - ref['dimension']) / abs(ref['dimension']):.1e}  (target <= 1e-3)")
    print(f"    peak memory of twonn_dimension          = {ours['peak_mb'] / 1024:.2f} GB whole process, "
          f"{(ours['peak_mb'] - ours['base_mb']) / 1024:.2f} GB net of imports  (target < 1 GB)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    ap.add_argument("--skip-skdim", action="store_true", help="leave out scikit-dimension (the slow reference)")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--worker", choices=("ours", "skdim", "gram"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.chunk_rows)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="geometry_bench_", dir=args.tmpdir))
    try:
        path = tmp / "features.npy"
        write_features(path, args.rows, args.dim)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"TwoNN on {args.rows} x {args.dim} float32 ({path.stat().st_size / 1e6:.0f} MB), "
              f"chunk_rows={args.chunk_rows}, {os.cpu_count()} CPUs, load average {load:.2f}")
        kinds = ["gram", "ours"] + ([] if args.skip_skdim else ["skdim"])
        print_report({kind: run_worker(kind, path, args.chunk_rows) for kind in kinds})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
