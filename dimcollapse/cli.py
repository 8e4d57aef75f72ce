"""``dimcollapse``: the collapse metrics, the paper's figure and the probes for any
feature matrix, without the workflow.

Subcommands::

    dimcollapse analyze FEATURES [--array NAME] [--no-normalize] [--json OUT] [--plot OUT.png]
    dimcollapse compare A B ... [--labels ...] --plot OUT.png
    dimcollapse probe FEATURES --labels LABELS.csv [--split-column C] ...
    dimcollapse similarity A B [--json OUT]
    dimcollapse temporal A B [--json OUT]
    dimcollapse store list|prune|verify [--results DIR] ...   (see dimcollapse.store_command)

FEATURES is a ``.npy`` file, or an ``.npz``/``.pt`` file holding several arrays, one of
which ``--array`` names (it may be omitted when the file holds exactly one). Bad input
(not a 2-D float matrix, NaN or inf, fewer than 2 rows, a missing array name, an
unreadable file) ends with one line ``dimcollapse: error: FILE: problem`` and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.errors import KnownError, one_line

EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad user input: reported as one line with exit code 2."""


def load_matrix(path: str | Path, array: str | None = None) -> np.ndarray:
    """The N × D float matrix in ``path`` (``.npy``, or a named array of ``.npz``/``.pt``).

    Raises :class:`InputError` naming the file for anything that is not a finite 2-D
    float matrix with at least 2 rows.
    """
    x = _read_matrix(Path(path), array)
    _check_finite(Path(path), x)
    return x


def _read_matrix(p: Path, array: str | None) -> np.ndarray:
    """:func:`load_matrix` without the scan for NaN and inf (a ``.npy`` file stays memory-mapped)."""
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            x = _pick(p, arrays, array)
        elif p.suffix == ".pt":
            import torch

            obj = torch.load(p, map_location="cpu", weights_only=True)
            arrays = obj if isinstance(obj, dict) else {"": obj}
            x = _pick(p, {k: v for k, v in arrays.items() if isinstance(v, torch.Tensor)}, array)
            x = x.float().numpy() if x.dtype in (torch.bfloat16, torch.float16) else x.numpy()
        else:
            if array is not None:
                raise InputError(f"{p}: --array applies to .npz and .pt files only")
            with open(p, "rb") as fh:  # np.load calls any other file "pickled (object) data"
                if fh.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                    raise InputError(f"{p}: not a NumPy .npy file (it lacks the .npy header); save the matrix "
                                     "with numpy.save, or give an .npz or .pt file")
            x = np.load(p, mmap_mode="r", allow_pickle=False)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure is bad input, named
        raise InputError(f"{p}: cannot read: {err}") from err
    x = np.asarray(x)
    if x.ndim != 2:
        raise InputError(f"{p}: expected a 2-D matrix (N × D), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise InputError(f"{p}: expected floating-point features, got dtype {x.dtype}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise InputError(f"{p}: need at least 2 rows and 1 column, got shape {x.shape}")
    return x


def _check_finite(p: Path, x: np.ndarray, chunk_rows: int = 4096) -> None:
    """Raise :class:`InputError` naming the rows with NaN or inf, reading ``x`` in row chunks."""
    bad = np.concatenate([np.flatnonzero(~np.isfinite(x[i:i + chunk_rows]).all(axis=1)) + i
                          for i in range(0, x.shape[0], chunk_rows)])
    if bad.size:
        raise InputError(f"{p}: {bad.size} rows contain NaN or inf (first: row {bad[0]})")


def _pick(path: Path, arrays: dict[str, Any], name: str | None) -> Any:
    if name is not None:
        if name not in arrays:
            raise InputError(f"{path}: no array named {name!r}; it holds {sorted(arrays)}")
        return arrays[name]
    if len(arrays) != 1:
        raise InputError(f"{path}: holds arrays {sorted(arrays)}; choose one with --array")
    return next(iter(arrays.values()))


# --------------------------------------------------------------------------- analyze

SUMMARY = (
    ("n_samples", "N", "d"), ("dim", "D", "d"), ("auc_sigma", "AUC (σ-based CEV, paper)", ".4f"),
    ("auc_lambda", "AUC (λ-based CEV)", ".4f"), ("rankme", "RankMe", ".2f"), ("alpha_req", "α-ReQ", ".4f"),
    ("alpha_req_r2", "α-ReQ fit R²", ".4f"), ("participation_ratio", "Participation ratio", ".2f"),
    ("stable_rank", "Stable rank", ".2f"), ("numerical_rank", "Numerical rank", "d"),
    ("dims_90_lambda", "Dims for 90 % variance (λ)", "d"), ("dims_99_lambda", "Dims for 99 % variance (λ)", "d"),
    ("twonn", "TwoNN intrinsic dimension", ".2f"), ("twonn_mle", "TwoNN intrinsic dimension (MLE)", ".2f"),
    ("gride", "GRIDE dimension (n1 = 8)", ".2f"), ("ph0", "PH₀ intrinsic dimension", ".2f"),
    ("self_clustering", "Self-clustering", ".4f"), ("uniformity", "Uniformity (t = 2)", ".4f"),
    ("pairs_rows", "Rows used by pairwise measures", "d"),
)


def _metrics(path: str, array: str | None, normalize: bool,
             max_pairs_rows: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The spectrum and the metrics row of one matrix file.

    A C-order ``.npy`` file is streamed (:func:`~dimcollapse.analysis.spectrum.analyze_file`):
    memory stays bounded whatever its size, and a constant matrix (all rows the same, all
    zeros say) fails at the end of one read instead of after a full analysis.
    """
    import warnings

    from dimcollapse.analysis.geometry import DEFAULT_MAX_PAIRS_ROWS, geometry_metrics
    from dimcollapse.analysis.spectrum import ConstantFeatures, analyze, analyze_file
    from dimcollapse.analysis.tables import ID_COLUMNS, metrics_row

    p = Path(path)
    x = _read_matrix(p, array)
    streamed = p.suffix not in (".npz", ".pt") and x.flags.c_contiguous  # a memory-mapped .npy in C order
    try:
        with warnings.catch_warnings():  # the warning is part of the row (and printed once)
            warnings.simplefilter("ignore")
            spec = analyze_file(p, normalize) if streamed else analyze(x, normalize)
    except ConstantFeatures as err:  # all rows the same (the pass found every value finite)
        raise InputError(str(err) if streamed else f"{p}: {err}") from err
    except ValueError as err:  # rows with NaN or inf: the scan names how many
        _check_finite(p, x)
        raise InputError(str(err) if str(err).startswith(str(p)) else f"{p}: {err}") from err
    geometry = geometry_metrics(x, normalize=normalize, max_pairs_rows=max_pairs_rows or DEFAULT_MAX_PAIRS_ROWS,
                                device="auto")
    row = metrics_row(spec, dataset="", method=path, space="", **geometry)
    return spec, {"file": path, **{k: v for k, v in row.items() if k not in ID_COLUMNS}}


def _print_summary(rows: Sequence[dict[str, Any]], out: Any) -> None:
    width = max(len(label) for _, label, _ in SUMMARY)
    if len(rows) > 1:
        print(" " * width + "  " + "  ".join(f"{Path(r['file']).name:>14}" for r in rows), file=out)
    for key, label, fmt in SUMMARY:
        print(f"{label:<{width}}  " + "  ".join(f"{format(r[key], fmt):>14}" for r in rows), file=out)
    for r in rows:
        if r["warning"]:
            print(f"warning ({r['file']}): {r['warning']}", file=out)


def _analyze(args: argparse.Namespace) -> None:
    from dimcollapse.analysis.figures import save_figure, spectrum_figure

    spec, row = _metrics(args.features, args.array, not args.no_normalize, args.max_pairs_rows)
    _print_summary([row], sys.stdout)
    if args.json:
        from dimcollapse.atomic import write_json

        write_json(args.json, row)
    if args.plot:
        label = args.label or Path(args.features).stem
        save_figure(spectrum_figure({label: {"features": spec}}, title=Path(args.features).name), args.plot,
                    dpi=args.dpi)


def _compare(args: argparse.Namespace) -> None:
    from dimcollapse.analysis.figures import save_figure, spectrum_figure

    labels = args.labels or [Path(f).stem for f in args.features]
    if len(labels) != len(args.features):
        raise InputError(f"--labels: {len(labels)} labels for {len(args.features)} feature files")
    if len(set(labels)) != len(labels):
        raise InputError(f"--labels: labels must be unique, got {labels}")
    specs, rows = {}, []
    for path, label in zip(args.features, labels):
        spec, row = _metrics(path, args.array, not args.no_normalize)
        specs[label] = {"features": spec}
        rows.append(row)
    _print_summary(rows, sys.stdout)
    save_figure(spectrum_figure(specs, title=args.title), args.plot, dpi=args.dpi)


# --------------------------------------------------------------------------- similarity


def _similarity(args: argparse.Namespace) -> None:
    from dimcollapse.analysis.similarity_measures import cka_matrices, mutual_knn

    x = load_matrix(args.a, args.array)
    y = load_matrix(args.b, args.array)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{args.a} has {x.shape[0]} rows but {args.b} has {y.shape[0]}: "
                         "CKA compares two spaces on the same samples (row i = sample i in both)")
    if args.k < 1:
        raise InputError(f"--k: mutual k-NN needs k >= 1, got {args.k}")
    n = x.shape[0]
    k = min(args.k, n - 1)
    try:
        linear, debiased = (m[0, 1] for m in cka_matrices([x, y], debiased=n >= 4))
        knn = mutual_knn(x, y, k, device="auto")
    except ValueError as err:
        raise InputError(f"{args.a}, {args.b}: {err}") from err
    print(f"linear CKA: {linear:.6f}  (N={n}, D={x.shape[1]} and {y.shape[1]})")
    print(f"debiased CKA: {debiased:.6f}  (unbiased HSIC; near 0 for unrelated spaces at any N)")
    print(f"mutual {k}-NN: {knn:.6f}  (share of each sample's {k} nearest samples that both spaces agree on)")
    if args.json:
        from dimcollapse.atomic import write_json

        write_json(args.json, {"a": args.a, "b": args.b, "n_samples": n, "dim_a": x.shape[1], "dim_b": y.shape[1],
                               "linear_cka": linear, "unbiased_cka": None if np.isnan(debiased) else debiased,
                               "mutual_knn": knn, "mutual_knn_k": k})


# --------------------------------------------------------------------------- temporal


def _temporal(args: argparse.Namespace) -> None:
    import warnings

    from dimcollapse.analysis.spectrum import analyze
    from dimcollapse.analysis.temporal import intervention_measures

    x = load_matrix(args.a, args.array)
    y = load_matrix(args.b, args.array)
    if x.shape != y.shape:
        raise InputError(f"{args.a} is {x.shape[0]} × {x.shape[1]} but {args.b} is {y.shape[0]} × {y.shape[1]}: "
                         "the temporal measures compare row i of both (one clip) in one space, "
                         "so the shapes must agree")
    measures = intervention_measures(x, y)
    with warnings.catch_warnings():  # N ≤ D is the user's to judge; the measures are still defined
        warnings.simplefilter("ignore")
        ranks = [analyze(m, not args.no_normalize).rankme for m in (x, y)]
    out = {
        "a": args.a,
        "b": args.b,
        "n_samples": x.shape[0],
        "dim": x.shape[1],
        **measures,
        "rankme_a": ranks[0],
        "rankme_b": ranks[1],
    }
    print(
        f"linear CKA:  {out['linear_cka']:.6f}\nmean cosine: {out['mean_cosine']:.6f}\n"
        f"RankMe:      {ranks[0]:.2f} (A), {ranks[1]:.2f} (B)  (N={x.shape[0]}, D={x.shape[1]})"
    )
    if args.json:
        from dimcollapse.atomic import write_json

        write_json(args.json, out)


# --------------------------------------------------------------------------- probe


def _read_labels(path: str, n_rows: int, label_column: str, split_column: str | None) -> tuple[np.ndarray, Any]:
    import pandas as pd

    p = Path(path)
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{p}: cannot read as CSV: {err}") from err
    for col in (label_column, split_column):
        if col is not None and col not in table.columns:
            raise InputError(f"{p}: no column {col!r}; columns are {list(table.columns)}")
    if len(table) != n_rows:
        raise InputError(f"{p}: {len(table)} label rows for {n_rows} feature rows (row i labels feature row i)")
    roles = None
    if split_column is not None:
        roles = table[split_column].str.strip().str.lower().to_numpy(dtype=object)
        unknown = sorted(set(roles) - {"train", "test", ""})
        if unknown:
            raise InputError(f"{p}: column {split_column!r} must hold train, test or nothing, got {unknown[:5]}")
    return table[label_column].to_numpy(), roles


def _probe(args: argparse.Namespace) -> None:
    from dimcollapse.analysis.probes import assign_split, run_probes

    x = load_matrix(args.features, args.array)
    labels, roles = _read_labels(args.labels, x.shape[0], args.label_column, args.split_column)
    if roles is None:
        choice = assign_split(
            [str(i) for i in range(len(labels))], labels, None, test_fraction=args.test_fraction, seed=args.seed
        )
        roles, split = choice.roles, choice.description
    else:
        split = f"column {args.split_column!r} of {args.labels}"
    try:
        out = run_probes(
            np.asarray(x),
            labels,
            roles,
            k=args.k,
            temperature=args.temperature,
            val_fraction=args.val_fraction,
            seed=args.seed,
            device=args.device,
            knn=not args.no_knn,
            linear=not args.no_linear,
        )
    except ValueError as err:
        raise InputError(f"{args.features}: {err}") from err
    out = {"file": args.features, "split": split, **out}
    print(f"split: {split}")
    if out["knn_accuracy"] is not None:
        print(f"k-NN (k={args.k}, T={args.temperature}) top-1: {out['knn_accuracy']:.4f}")
    if out["linear_accuracy"] is not None:
        print(f"linear probe top-1: {out['linear_accuracy']:.4f} (weight decay {out['linear_weight_decay']:g})")
    if args.json:
        from dimcollapse.atomic import write_json

        write_json(args.json, out)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dimcollapse",
        description="Dimensional-collapse metrics, the paper's spectrum figure and downstream probes "
        "for feature matrices (rows = samples).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def matrix_args(p: argparse.ArgumentParser, many: bool = False) -> None:
        p.add_argument(
            "features",
            nargs="+" if many else None,
            help=".npy feature matrix (N × D), or .npz/.pt holding it" + (" (several)" if many else ""),
        )
        p.add_argument("--array", help="name of the array inside an .npz/.pt file (needed if it holds several)")

    def figure_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dpi", type=int, default=200, help="resolution of the PNG (default 200)")
        p.add_argument(
            "--no-normalize", action="store_true", help="skip the L2 normalisation of rows (the paper normalises)"
        )

    a = sub.add_parser(
        "analyze",
        help="metrics of one matrix",
        description="Print the collapse metrics of one "
        "feature matrix; optionally write them as JSON and draw the paper's two-panel figure.",
    )
    matrix_args(a)
    figure_args(a)
    a.add_argument("--json", metavar="OUT", help="write the metrics to this JSON file")
    a.add_argument("--plot", metavar="OUT.png", help="draw log spectrum and cumulative explained variance")
    a.add_argument("--label", help="legend label (default: the file name without extension)")
    a.add_argument(
        "--max-pairs-rows",
        type=int,
        metavar="N",
        help="TwoNN, GRIDE and uniformity use a seeded subsample of N rows above N (default 20000)",
    )
    a.set_defaults(run=_analyze)

    c = sub.add_parser(
        "compare",
        help="the paper's figure for several matrices",
        description="Print the metrics of several matrices side by side and draw them in one figure.",
    )
    matrix_args(c, many=True)
    figure_args(c)
    c.add_argument("--labels", nargs="+", help="one legend label per file (default: file names)")
    c.add_argument("--plot", metavar="OUT.png", required=True, help="output figure (.png)")
    c.add_argument("--title", help="figure title")
    c.set_defaults(run=_compare)

    sim = sub.add_parser(
        "similarity",
        help="CKA and mutual k-NN of two matrices with the same rows",
        description="Linear CKA (Kornblith et al. 2019) between two feature matrices of the same "
        "samples: 1 when one is a rotation and scaling of the other, 0 when unrelated; debiased "
        "CKA (Song et al.'s unbiased HSIC), near 0 for unrelated matrices at any N; and mutual "
        "k-NN alignment (Huh et al. 2024).",
    )
    sim.add_argument("a", help=".npy (or .npz/.pt) feature matrix A (N × D₁)")
    sim.add_argument("b", help=".npy (or .npz/.pt) feature matrix B (N × D₂)")
    sim.add_argument("--array", help="name of the array inside .npz/.pt files")
    sim.add_argument("--json", metavar="OUT", help="write the result to this JSON file")
    sim.add_argument("--k", type=int, default=10, help="neighbours per sample of mutual k-NN (default 10)")
    sim.set_defaults(run=_similarity)

    tmp = sub.add_parser(
        "temporal",
        help="does a representation change when frame order changes?",
        description="Linear CKA, mean cosine similarity of matching rows and RankMe of both, for "
        "the features of the same clips with their original frames (A) and with their frames "
        "reversed, shuffled or frozen (B): CKA and cosine 1 = the model ignores the change.",
    )
    tmp.add_argument("a", help=".npy (or .npz/.pt) features of the original clips (N × D)")
    tmp.add_argument("b", help=".npy (or .npz/.pt) features of the same clips, frames reordered (N × D)")
    tmp.add_argument("--array", help="name of the array inside .npz/.pt files")
    tmp.add_argument(
        "--no-normalize", action="store_true", help="RankMe of the rows as they are (default: L2-normalised)"
    )
    tmp.add_argument("--json", metavar="OUT", help="write the results to this JSON file")
    tmp.set_defaults(run=_temporal)

    p = sub.add_parser(
        "probe",
        help="k-NN and linear probe accuracy",
        description="Weighted k-NN (Wu et al. 2018) and linear-probe top-1 accuracy of a feature "
        "matrix. Without a split column, a seeded stratified split is used.",
    )
    matrix_args(p)
    p.add_argument(
        "--labels",
        required=True,
        metavar="LABELS.csv",
        help="CSV whose row i labels feature row i (e.g. the pipeline's results/features/<ds>/index.csv)",
    )
    p.add_argument("--label-column", default="label", help="column of class labels (default: label)")
    p.add_argument("--split-column", help="column with train/test per row (default: seeded stratified split)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="test share per class without a split column")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="validation share of the training rows for the linear probe's penalty",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    p.add_argument("--k", type=int, default=20, help="neighbours of the k-NN (default 20)")
    p.add_argument("--temperature", type=float, default=0.07, help="k-NN vote temperature (default 0.07)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to compute")
    p.add_argument("--no-knn", action="store_true", help="skip the k-NN probe")
    p.add_argument("--no-linear", action="store_true", help="skip the linear probe")
    p.add_argument("--json", metavar="OUT", help="write the results to this JSON file")
    p.set_defaults(run=_probe)

    from dimcollapse.store_command import add_store_parser

    add_store_parser(sub, InputError)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dimcollapse`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except InputError as err:
        print(f"dimcollapse: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KnownError as err:  # e.g. a full disk while writing --json: one line, as a workflow job ends
        print(f"dimcollapse: error: {one_line(err)}", file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
