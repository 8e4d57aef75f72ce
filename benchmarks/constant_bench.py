"""Benchmark: how fast, and in how much memory, ``dimcollapse analyze`` turns down a constant matrix.

A matrix whose rows are all the same (all zeros: a model whose forward pass failed for
every video) has no spectrum. The command finds that in its one streamed pass over the
file, where a whole-matrix path first loads it, scans it for NaN, accumulates the D × D
co-moment and eigendecomposes it before it can say so.

Each measurement runs in its own subprocess (peak resident memory, ``VmHWM``, belongs to
it alone):

* ``analyze zeros``: ``dimcollapse.cli.main(["analyze", zeros.npy])``: exit code 2 and the
  one line, its time and peak memory.
* ``whole-matrix path (baseline)``: what the command did before: ``np.load`` (memory-mapped),
  ``np.isfinite(x).all(axis=1)`` over the whole matrix, then ``analyze(x)`` on it with every
  block's D × D product (the streaming pass's shortcut for identical rows switched off), its
  eigendecomposition and the round-off test that rejects it.
* ``read the file once``: ``NpyRows`` chunks only, the floor any detection needs.

Default: a 1,000,000 × 512 float32 file of zeros (2.0 GB), written into a temporary
directory and deleted afterwards. Times include reading the file (from the page cache
after the first run) and exclude interpreter start and the package's imports (torch among
them), as does "net of imports". Ratios are printed last.

Usage: python benchmarks/constant_bench.py [--rows 1000000] [--dim 512] [--tmpdir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import contextlib, io, json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
import dimcollapse.analysis.figures, dimcollapse.analysis.geometry, dimcollapse.analysis.tables  # the command's imports: not its cost
from dimcollapse.analysis.moments import MomentStats, NpyRows
from dimcollapse.analysis.spectrum import analyze
from dimcollapse.cli import main


def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


path, how = sys.argv[1], sys.argv[2]
if how == "analyze":  # once on a small file first: the command's lazy imports are not its cost either
    np.save(path + ".small.npy", np.zeros((10, 4), np.float32))
    with contextlib.redirect_stderr(io.StringIO()):
        main(["analyze", path + ".small.npy"])
base = peak_mb()
start = time.perf_counter()
outcome = ""
if how == "analyze":
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["analyze", path])
    outcome = f"exit {{code}}: {{err.getvalue().strip()}}"
elif how == "baseline":
    start_stats = MomentStats.__init__

    def without_the_shortcut(self, *args, **kwargs):  # every block pays its D x D product, as before
        start_stats(self, *args, **kwargs)
        self.varied = True

    MomentStats.__init__ = without_the_shortcut
    x = np.load(path, mmap_mode="r")
    assert np.isfinite(x).all(axis=1).all()
    try:
        analyze(x)
    except ValueError as e:
        outcome = f"ValueError: {{e}}"
else:
    for _ in NpyRows(path).chunks():
        pass
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb(), "imports_mb": base, "outcome": outcome}}))
"""


def write_zeros(path: Path, rows: int, dim: int, chunk: int = 65536) -> None:
    """An N × D float32 .npy file of zeros, written chunk by chunk."""
    block = np.zeros((chunk, dim), np.float32)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, chunk):
            block[: min(chunk, rows - start)].tofile(fh)


def measure(path: Path, how: str) -> dict:
    code = WORKER.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, str(path), how], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="constant_bench-", dir=args.tmpdir))
    try:
        path = folder / "zeros.npy"
        t = time.perf_counter()
        write_zeros(path, args.rows, args.dim)
        print(f"{args.rows} x {args.dim} float32 zeros: {path.stat().st_size / 1e9:.2f} GB written in "
              f"{time.perf_counter() - t:.1f} s")
        measure(path, "read")  # warm the page cache, so every path reads from memory
        results = {how: measure(path, how) for how in ("read", "analyze", "baseline")}
        labels = {"read": "read the file once", "analyze": "dimcollapse analyze",
                  "baseline": "whole-matrix path (baseline)"}
        print(f"{'path':<32} {'time (s)':>9} {'peak MB':>9} {'net of imports MB':>18}")
        for how, r in results.items():
            print(f"{labels[how]:<32} {r['seconds']:>9.2f} {r['peak_mb']:>9.0f} {r['peak_mb'] - r['imports_mb']:>18.0f}")
        print(f"analyze says: {results['analyze']['outcome']}")
        print(f"baseline says: {results['baseline']['outcome']}")
        a, b, r = results["analyze"], results["baseline"], results["read"]
        print(f"speed-up (baseline time / analyze time)          = {b['seconds'] / a['seconds']:.1f}x")
        print(f"analyze time / one read of the file              = {a['seconds'] / r['seconds']:.2f}")
        print(f"peak memory net of imports (analyze / baseline)  = "
              f"{(a['peak_mb'] - a['imports_mb']) / max(b['peak_mb'] - b['imports_mb'], 1e-9):.3f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
