"""Benchmark: the neighbour-based intrinsic dimensions (TwoNN, the GRIDE curve, PH₀) against
scikit-dimension and against the float32 Gram blocks they are built on.

Paths on one N × D float32 feature file (default 20,000 × 2,048, the spectrum benchmark's
power-law features), each in its own subprocess so that its peak resident memory
(``VmHWM``) is its own:

* ``gram`` — only the float32 GEMMs of one search, ``x[chunk] @ x[chunk start:].T`` over
  every row chunk (the upper triangle): the floor that any Gram-based search pays;
* ``twonn`` — :func:`dimcollapse.analysis.neighbours.twonn_dimension` (ranks 1 and 2);
* ``twonn_gride`` — :func:`dimcollapse.analysis.neighbours.neighbour_dimensions`: TwoNN, GRIDE at
  n1 = 8 and the whole GRIDE curve to ``range_max`` = 64 from one search (what the
  pipeline computes; no bootstrap);
* ``ph0`` — :func:`dimcollapse.analysis.neighbours.ph0_dimension` at its defaults;
* ``skdim_twonn``, ``skdim_gride`` — scikit-dimension 0.5's ``TwoNN()`` and
  ``GRIDE(multiscale=True, range_max=64)`` on the same rows;
* ``ph0_small``, ``skdim_ph`` — ours and scikit-dimension's ``PH`` with the same setting
  (ours' default sizes, steps, subsamples and seed) on the first ``--ph-rows`` rows:
  scikit-dimension's PH first builds the dense float64 distance matrix of all rows (at
  20,000 rows 3.2 GB, plus its condensed copy, with a single-threaded pdist), too much
  for a shared machine; the subsample sizes, and so the spanning trees, are the same at
  any N ≥ their largest, so the comparison is the same work for ours.

Times exclude interpreter start, imports and reading the file; with ``--repeats R`` every
path runs R times in interleaved rounds and its fastest run is reported (the machine may
be shared). Targets: TwoNN plus the
GRIDE curve ≤ 2 × TwoNN and faster than scikit-dimension's multiscale GRIDE; PH₀ at its
defaults ≤ 3 × TwoNN and ≥ 3 × faster than scikit-dimension's PH with the same setting;
peak memory < 1 GB; the same numbers (1e-3 relative). Ratios are printed last, with the
load average of the machine before and after.

``--threads N`` gives every path N threads (torch, and the BLAS/OpenMP pools of numpy and
scikit-learn): on cores shared with other work, one thread per path gives comparable figures.

Usage: python benchmarks/geometry_bench.py [--rows 20000] [--dim 2048] [--ph-rows 5000]
       [--chunk-rows 512] [--device cpu|cuda] [--repeats 1] [--threads N] [--skip-skdim] [--tmpdir DIR]
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

RANGE_MAX = 64
KINDS = ("gram", "twonn", "twonn_gride", "ph0", "ph0_small", "skdim_twonn", "skdim_gride", "skdim_ph")


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def worker(kind: str, path: str, chunk_rows: int, ph_rows: int, device: str) -> dict:
    import scipy.optimize  # noqa: F401 - GRIDE's root finder; imports are not part of the figures
    import torch

    if kind.startswith("skdim"):
        import skdim  # noqa: F401 - imported before the baseline is read
    from dimcollapse.analysis import neighbours

    if device == "cuda":  # the first CUDA call of a process sets up the context: not part of the figure
        torch.ones(1, device="cuda").sum().item()
    base = rss_mb()
    x = np.load(path)
    if kind in ("ph0_small", "skdim_ph"):
        x = x[:ph_rows]
    t0 = time.perf_counter()
    result: dict = {}
    if kind == "gram":
        xt = torch.from_numpy(x).to(device)
        for start in range(0, len(x), chunk_rows):  # the upper-triangle blocks a search computes
            xt[start : start + chunk_rows] @ xt[start:].T
        _sync(device)
    elif kind == "twonn":
        result = {"dimension": neighbours.twonn_dimension(x, device=device).dimension}
    elif kind == "twonn_gride":
        out = neighbours.neighbour_dimensions(x, gride_range_max=RANGE_MAX, device=device)
        result = {"dimension": out["twonn"], "curve": out["gride_curve"]["dimension"]}
    elif kind in ("ph0", "ph0_small"):
        out = neighbours.ph0_dimension(x, device=device)
        result = {"dimension": out.dimension, "setting": out.setting}
    elif kind == "skdim_twonn":
        import skdim

        result = {"dimension": float(skdim.id.TwoNN().fit(x).dimension_)}
    elif kind == "skdim_gride":
        import skdim

        fit = skdim.id.GRIDE(multiscale=True, range_max=RANGE_MAX).fit(x)
        result = {"curve": [float(v) for v in fit.dimension_scales_]}
    elif kind == "skdim_ph":
        import skdim

        top = min(len(x), neighbours.PH0_MAX_ROWS)  # ph0_dimension's default sizes, steps, draws and seed
        fit = skdim.id.PH(n_range_min=(top + 1) // 2, n_range_max=top, range_type="num", nsteps=neighbours.PH0_STEPS,
                          subsamples=neighbours.PH0_SUBSAMPLES, random_state=0).fit(x)
        result = {"dimension": float(fit.dimension_)}
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": rss_mb(), "base_mb": base, "threads": torch.get_num_threads(), **result}


def run_worker(kind: str, path: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--input", str(path), "--chunk-rows", str(args.chunk_rows),
           "--ph-rows", str(args.ph_rows), "--device", args.device]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.threads:  # every path alike: torch, and the BLAS and OpenMP pools numpy and scikit-learn use
        env.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


NAMES = {
    "gram": "float32 Gram blocks of one search", "twonn": "twonn_dimension",
    "twonn_gride": "TwoNN + GRIDE curve (n1 = 1 … 32), one search", "ph0": "ph0_dimension (defaults)",
    "ph0_small": "ph0_dimension (defaults), first {ph} rows", "skdim_twonn": "scikit-dimension TwoNN",
    "skdim_gride": "scikit-dimension GRIDE(multiscale=True, range_max=64)",
    "skdim_ph": "scikit-dimension PH, same setting, first {ph} rows",
}


def _relative(a: list[float] | float, b: list[float] | float) -> float:
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    return float(np.max(np.abs(a - b) / np.abs(b)))


def ratios(results: dict[str, dict]) -> list[tuple[str, float, str]]:
    """(what, value, target) of every ratio the figures allow."""
    t = {k: r["seconds"] for k, r in results.items()}
    out = [("time (TwoNN + GRIDE curve) / TwoNN", t["twonn_gride"] / t["twonn"], "<= 2"),
           ("time TwoNN / Gram blocks", t["twonn"] / t["gram"], "floor 1"),
           ("time PH0 (defaults) / TwoNN", t["ph0"] / t["twonn"], "<= 3")]
    if "skdim_gride" in t:
        out.append(("speed-up scikit-dimension GRIDE curve / ours (TwoNN + curve)", t["skdim_gride"] / t["twonn_gride"],
                    "> 1"))
        out.append(("|Δ GRIDE curve| / curve, largest", _relative(results["twonn_gride"]["curve"],
                                                                  results["skdim_gride"]["curve"]), "<= 1e-3"))
    if "skdim_twonn" in t:
        out.append(("speed-up scikit-dimension TwoNN / ours", t["skdim_twonn"] / t["twonn"], "none here"))
        out.append(("|Δ TwoNN| / TwoNN", _relative(results["twonn"]["dimension"], results["skdim_twonn"]["dimension"]),
                    "<= 1e-3"))
    if "skdim_ph" in t:
        out.append(("speed-up scikit-dimension PH / ours, same setting", t["skdim_ph"] / t["ph0_small"], ">= 3"))
        out.append(("|Δ PH0| / PH0, same setting", _relative(results["ph0_small"]["dimension"],
                                                             results["skdim_ph"]["dimension"]), "<= 1e-3"))
    ours = ("twonn", "twonn_gride", "ph0")
    out.append(("peak memory of ours, largest, GB net of imports",
                max(results[k]["peak_mb"] - results[k]["base_mb"] for k in ours) / 1024, "< 1"))
    out.append(("peak memory of ours, largest, GB whole process", max(results[k]["peak_mb"] for k in ours) / 1024,
                "(torch import ~0.5)"))
    return out


def print_report(results: dict[str, dict], ph_rows: int) -> None:
    """The table of the paths' measurements, then the ratios against the targets."""
    print("| path | time (s) | peak memory (MB) | net of imports (MB) | dimension |")
    print("|---|---|---|---|---|")
    for kind, r in results.items():
        dim = f"{r['dimension']:.4f}" if "dimension" in r else "–"
        if "curve" in r:
            dim += " (curve " + ", ".join(f"{v:.2f}" for v in r["curve"]) + ")"
        name = NAMES[kind].format(ph=ph_rows)
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['base_mb']:.0f} | {dim} |")
    print("ratios:")
    for what, value, target in ratios(results):
        print(f"    {what:<62} = {value:.3g}  (target {target})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--ph-rows", type=int, default=5_000, help="rows of the PH0 comparison with scikit-dimension")
    ap.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where our paths compute")
    ap.add_argument("--skip-skdim", action="store_true", help="leave out scikit-dimension (the slow reference)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over every path; each path's fastest is reported")
    ap.add_argument("--threads", type=int, default=0, help="threads of every path (default: the libraries' own)")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.chunk_rows, args.ph_rows, args.device)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="geometry_bench_", dir=args.tmpdir))
    try:
        path = tmp / "features.npy"
        write_features(path, args.rows, args.dim)
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        print(f"{args.rows} x {args.dim} float32 ({path.stat().st_size / 1e6:.0f} MB), chunk_rows={args.chunk_rows}, "
              f"device {args.device}, {os.cpu_count()} CPUs, threads {args.threads or 'default'}, "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        kinds = ["gram", "twonn", "twonn_gride", "ph0", "ph0_small"]
        kinds += [] if args.skip_skdim else ["skdim_twonn", "skdim_gride", "skdim_ph"]
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(args.repeats):  # rounds over every path, so that a load spike hits them alike
            for kind in kinds:
                runs[kind].append(run_worker(kind, path, args))
        results = {kind: {**min(rs, key=lambda r: r["seconds"]), "peak_mb": max(r["peak_mb"] for r in rs)}
                   for kind, rs in runs.items()}
        print_report(results, args.ph_rows)
        load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
