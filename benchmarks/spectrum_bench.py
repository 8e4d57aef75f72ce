"""Benchmark: streamed spectrum (``analyze_file``) against the paper's code path.

Two measurements, each path in its own subprocess so that peak resident memory
(the kernel's high-water mark ``VmHWM``) belongs to that path alone:

1. An N × D float32 feature file (default 20,000 × 2048): wall time and peak memory of
   ``dimcollapse.analysis.spectrum.analyze_file`` against the paper's path on the in-memory
   matrix (load, ``torch.nn.functional.normalize``, ``np.cov`` + ``np.linalg.svd`` + log,
   sklearn ``PCA().fit_transform`` singular values → CEV and AUC), and the largest
   deviations between their results.
2. A large file (default 1,000,000 × 2048 float32, 8 GB), generated in chunks into a
   temporary directory and deleted afterwards: wall time and peak memory of
   ``analyze_file`` alone (the paper's path would need the whole matrix, several times
   over, in memory).

Times exclude interpreter start and imports and include reading the file. Peak memory
is reported both as the whole process (what the OS sees) and net of the process's
size after imports (torch alone makes the paper's process a few hundred MB larger).
Target: ≥ 5× faster and ≤ 1/4 of the peak memory on the first file, equal results,
< 1 GB peak on the large one. Ratios are printed last.

Usage: python benchmarks/spectrum_bench.py [--rows 20000] [--dim 2048]
       [--big-rows 1000000] [--chunk-rows 4096] [--tmpdir DIR]   (--big-rows 0 skips 2.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dimcollapse.analysis.moments import DEFAULT_CHUNK_ROWS  # noqa: E402


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from ``VmHWM`` in /proc/self/status, which belongs to the current program
    image: ``ru_maxrss`` would not do, because Linux carries the parent's peak across
    fork + exec into the child's. Falls back to ``ru_maxrss`` where /proc is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_features(path: Path, rows: int, dim: int, seed: int = 0, chunk: int = 16384) -> None:
    """Float32 features with a power-law spectrum and a positive offset (like pooled ReLU
    features), written chunk by chunk so that generating 8 GB needs little memory."""
    rng = np.random.default_rng(seed)
    scales = (np.arange(1, dim + 1, dtype=np.float32) ** -0.5).astype(np.float32)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            block = rng.standard_normal((n, dim), dtype=np.float32)
            block *= scales
            block += 0.5
            block.tofile(fh)


# -- workers (run in subprocesses) ------------------------------------------------------


def worker_ours(path: str, out: str, chunk_rows: int) -> dict:
    from dimcollapse.analysis.spectrum import analyze_file

    base = rss_mb()
    t0 = time.perf_counter()
    spec = analyze_file(path, chunk_rows=chunk_rows)
    seconds = time.perf_counter() - t0
    peak = rss_mb()
    np.savez(out, eig=spec.cov_eigenvalues, log=spec.log_spectrum, cev=spec.cev, auc=spec.auc)
    return {"seconds": seconds, "peak_mb": peak, "base_mb": base, "auc": spec.auc, "rankme": spec.rankme}


def worker_paper(path: str, out: str) -> dict:
    import torch
    from sklearn.decomposition import PCA

    base = rss_mb()
    t0 = time.perf_counter()
    # the paper's spectrum_cumulative_plots.py, with the .pt load replaced by .npy
    z = torch.from_numpy(np.load(path))
    z = torch.nn.functional.normalize(z, dim=1)
    z = z.cpu().detach().numpy()
    c = np.cov(np.transpose(z))
    _, d, _ = np.linalg.svd(c)
    log = np.log(d)
    pca = PCA()
    pca.fit_transform(z)
    s = pca.singular_values_
    cev = np.cumsum(s) / s.sum()
    auc = np.cumsum(s).sum() / s.shape[0] / s.sum()
    seconds = time.perf_counter() - t0
    peak = rss_mb()
    np.savez(out, eig=d, log=log, cev=cev, auc=auc)
    return {"seconds": seconds, "peak_mb": peak, "base_mb": base, "auc": float(auc)}


def run_worker(kind: str, path: Path, out: Path, chunk_rows: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(path), "--output", str(out),
           "--chunk-rows", str(chunk_rows)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--big-rows", type=int, default=1_000_000, help="0 skips the large-file run")
    ap.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--worker", choices=("ours", "paper"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_paper
        result = fn(args.input, args.output, args.chunk_rows) if args.worker == "ours" else fn(args.input, args.output)
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="spectrum_bench_", dir=args.tmpdir))
    try:
        path = tmp / "features.npy"
        write_features(path, args.rows, args.dim)
        print(f"[1] {args.rows} x {args.dim} float32 ({path.stat().st_size / 1e6:.0f} MB), chunk_rows={args.chunk_rows}")
        ours = run_worker("ours", path, tmp / "ours.npz", args.chunk_rows)
        paper = run_worker("paper", path, tmp / "paper.npz", args.chunk_rows)
        a, b = np.load(tmp / "ours.npz"), np.load(tmp / "paper.npz")
        big = b["eig"] > 1e-10 * b["eig"][0]
        dev_log = float(np.abs(a["log"][big] - b["log"][big]).max())
        dev_cev = float(np.abs(a["cev"] - b["cev"]).max())
        dev_auc = float(abs(a["auc"] - b["auc"]))
        for name, r in (("analyze_file", ours), ("paper path", paper)):
            print(f"    {name:13s} {r['seconds']:8.2f} s   peak {r['peak_mb']:7.0f} MB "
                  f"(after imports {r['base_mb']:5.0f} MB, net {r['peak_mb'] - r['base_mb']:6.0f} MB)")
        print(f"    max |Δ log λ| (λ > 1e-10 λmax, {int(big.sum())} values) = {dev_log:.2e};"
              f"  max |Δ CEV| = {dev_cev:.2e};  |Δ AUC| = {dev_auc:.2e}")

        big_result = None
        if args.big_rows:
            need = args.big_rows * args.dim * 4
            free = shutil.disk_usage(tmp).free
            path.unlink()
            if free < need + 2e9:
                print(f"[2] skipped: {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free in {tmp}")
            else:
                big_path = tmp / "big.npy"
                t0 = time.perf_counter()
                write_features(big_path, args.big_rows, args.dim, seed=1)
                gen = time.perf_counter() - t0
                print(f"[2] {args.big_rows} x {args.dim} float32 ({need / 1e9:.1f} GB, generated in {gen:.0f} s)")
                big_result = run_worker("ours", big_path, tmp / "big.npz", args.chunk_rows)
                big_path.unlink()
                print(f"    analyze_file {big_result['seconds']:8.1f} s   peak {big_result['peak_mb']:7.0f} MB  "
                      f"({args.big_rows / big_result['seconds']:,.0f} rows/s; AUC {big_result['auc']:.4f}, "
                      f"RankMe {big_result['rankme']:.1f})")

        print("ratios:")
        print(f"    speed-up (paper time / analyze_file time)        = {paper['seconds'] / ours['seconds']:.1f}x  (target >= 5)")
        print(f"    peak memory (analyze_file / paper), whole process = {ours['peak_mb'] / paper['peak_mb']:.3f}  (target <= 0.25)")
        print(f"    peak memory (analyze_file / paper), net of imports = "
              f"{(ours['peak_mb'] - ours['base_mb']) / (paper['peak_mb'] - paper['base_mb']):.3f}")
        if big_result is not None:
            print(f"    large file peak memory = {big_result['peak_mb'] / 1024:.2f} GB  (target < 1 GB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
