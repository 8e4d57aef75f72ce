"""Tables of spectra and collapse metrics: per-index spectrum CSVs and the metrics table.

Column names carry their convention: ``cev_sigma``/``auc_sigma`` are the paper's
σ-based cumulative explained variance (Σσ_i up to k over Σσ), ``cev_lambda``/``auc_lambda``
the PCA convention (λ = σ²), ``dims_*_lambda`` count components for a fraction of the
λ-based variance.

Also here, beside the single-matrix metrics of :mod:`dimcollapse.analysis.spectrum`:
:func:`lidar` (a metric of several views per video) and :func:`sample_size_curve`
(RankMe and AUC of random row subsets, to separate the N ≤ D cliff from collapse).

Spectrum CSVs (``results/spectra/{dataset}/{method}/{space}.csv``) hold one row per
covariance eigenvalue index 0..D-1. ``singular_value``, ``cev_sigma`` and ``cev_lambda``
exist for the first min(N, D) indices only (the length of the paper's PCA singular
values) and are empty beyond. ``n_samples`` repeats N on every row so that a CSV alone
says whether the spectrum is rank-limited (N <= D). Floats are written with ``repr``
(shortest round-trip form), so reading a CSV back gives the exact arrays.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dimcollapse.atomic import atomic_path, write_json, write_text
from dimcollapse.analysis.moments import DEFAULT_CHUNK_ROWS, NORM_EPS, MomentStats
from dimcollapse.analysis.spectrum import RANKME_EPS, Spectrum, analyze

if TYPE_CHECKING:  # the kernels import torch, which the workflow's start must not
    from dimcollapse.analysis.pairwise import NearestNeighbours

SPECTRUM_COLUMNS = (
    "index",
    "eigenvalue",
    "log_eigenvalue",
    "singular_value",
    "cev_sigma",
    "cev_lambda",
    "n_samples",
)


@dataclass(frozen=True, eq=False)
class SpectrumCurves:
    """The curves of a spectrum as stored in its CSV (what the figures need).

    Attribute names match :class:`dimcollapse.analysis.spectrum.Spectrum`, so figure functions
    accept either.
    """

    n_samples: int
    cov_eigenvalues: np.ndarray
    log_spectrum: np.ndarray
    singular_values: np.ndarray
    cev: np.ndarray
    cev_variance: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.cov_eigenvalues.size)

    @property
    def auc(self) -> float:
        """The paper's AUC: mean of the σ-based CEV."""
        return float(self.cev.mean())

    @property
    def auc_variance(self) -> float:
        return float(self.cev_variance.mean())

    @property
    def rank_limited(self) -> bool:
        return self.n_samples <= self.dim


def _fmt(value: float) -> str:
    return repr(float(value))


def write_spectrum_csv(path: str | os.PathLike[str], spectrum: Spectrum | SpectrumCurves) -> None:
    """Write one row per eigenvalue index (see the module doc), atomically."""
    m = spectrum.cev.size
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SPECTRUM_COLUMNS)
        for i in range(spectrum.dim):
            tail = (
                [_fmt(spectrum.singular_values[i]), _fmt(spectrum.cev[i]), _fmt(spectrum.cev_variance[i])]
                if i < m
                else ["", "", ""]
            )
            writer.writerow(
                [i, _fmt(spectrum.cov_eigenvalues[i]), _fmt(spectrum.log_spectrum[i]), *tail, spectrum.n_samples]
            )


def read_spectrum_csv(path: str | os.PathLike[str]) -> SpectrumCurves:
    """Read a spectrum CSV written by :func:`write_spectrum_csv`; malformed files raise naming the file."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(SPECTRUM_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a spectrum table, missing columns {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: spectrum table has no rows")
    try:
        index = [int(r["index"]) for r in rows]
        lam = np.array([float(r["eigenvalue"]) for r in rows])
        log = np.array([float(r["log_eigenvalue"]) for r in rows])
        defined = [r for r in rows if r["cev_sigma"] != ""]
        sigma = np.array([float(r["singular_value"]) for r in defined])
        cev = np.array([float(r["cev_sigma"]) for r in defined])
        cev_lam = np.array([float(r["cev_lambda"]) for r in defined])
        n_samples = {int(r["n_samples"]) for r in rows}
    except ValueError as err:
        raise ValueError(f"{path}: malformed spectrum table: {err}") from err
    if index != list(range(len(rows))):
        raise ValueError(f"{path}: indices are not 0..{len(rows) - 1} in order")
    if len(n_samples) != 1:
        raise ValueError(f"{path}: n_samples differs between rows: {sorted(n_samples)}")
    if any(r["cev_sigma"] == "" for r in rows[: len(defined)]):
        raise ValueError(f"{path}: CEV values must fill the first rows without gaps")
    return SpectrumCurves(
        n_samples=n_samples.pop(),
        cov_eigenvalues=lam,
        log_spectrum=log,
        singular_values=sigma,
        cev=cev,
        cev_variance=cev_lam,
    )


# --------------------------------------------------------------------------------------
# Metrics table

ID_COLUMNS = ("dataset", "method", "space")
METRIC_COLUMNS = ID_COLUMNS + (
    "n_samples",
    "dim",
    "rank_limited",
    "numerical_rank",
    "normalized",
    "auc_sigma",
    "auc_lambda",
    "rankme",
    "alpha_req",
    "alpha_req_r2",
    "alpha_req_first",
    "alpha_req_last",
    "participation_ratio",
    "stable_rank",
    "nesum",
    "dims_90_lambda",
    "dims_95_lambda",
    "dims_99_lambda",
    "warning",
)
CI_METRICS = {"auc": "auc_sigma", "rankme": "rankme", "alpha_req": "alpha_req"}
"""Bootstrapped Spectrum field -> its metrics column."""
CI_COLUMNS = tuple(f"{col}_ci_{end}" for col in CI_METRICS.values() for end in ("low", "high")) + (
    "bootstrap_n",
    "bootstrap_seed",
    "ci_level",
    "ci_method",
)

GEOMETRY_COLUMNS = ("twonn", "twonn_mle", "twonn_duplicates", "gride", "gride_n1", "ph0", "ph0_setting",
                    "self_clustering", "uniformity", "pairs_rows", "alignment")
"""Metrics-table columns of :func:`geometry_metrics` (``alignment`` only for instances with views)."""
JSON_ONLY = ("gride_curve",)
"""Keys of a spectrum's metrics JSON that are curves, not table columns."""

_INT_COLUMNS = {
    "n_samples", "dim", "numerical_rank", "alpha_req_first", "alpha_req_last",
    "dims_90_lambda", "dims_95_lambda", "dims_99_lambda", "bootstrap_n", "bootstrap_seed",
    "twonn_duplicates", "pairs_rows", "zero_rows", "gride_n1",
}
_BOOL_COLUMNS = {"rank_limited", "normalized"}
_STR_COLUMNS = set(ID_COLUMNS) | {"warning", "ci_method", "ph0_setting"}


def metrics_row(spectrum: Spectrum, *, dataset: str, method: str, space: str, **extra: Any) -> dict[str, Any]:
    """One row of ``results/metrics.csv``: every scalar metric of ``spectrum``.

    CI columns appear when the spectrum carries a bootstrap; ``extra`` keyword columns
    (e.g. ``label``) are appended after the standard ones.
    """
    s = spectrum
    row: dict[str, Any] = {
        "dataset": dataset,
        "method": method,
        "space": space,
        "n_samples": s.n_samples,
        "dim": s.dim,
        "rank_limited": s.rank_limited,
        "numerical_rank": s.numerical_rank,
        "normalized": s.normalized,
        "auc_sigma": s.auc,
        "auc_lambda": s.auc_variance,
        "rankme": s.rankme,
        "alpha_req": s.alpha_req,
        "alpha_req_r2": s.alpha_req_r2,
        "alpha_req_first": s.alpha_req_range[0],
        "alpha_req_last": s.alpha_req_range[1],
        "participation_ratio": s.participation_ratio,
        "stable_rank": s.stable_rank,
        "nesum": s.nesum,
        "dims_90_lambda": s.dims_90,
        "dims_95_lambda": s.dims_95,
        "dims_99_lambda": s.dims_99,
        "warning": s.warning,
        "zero_rows": s.zero_rows,
    }
    if s.bootstrap is not None:
        for field, col in CI_METRICS.items():
            low, high = s.bootstrap.intervals[field]
            row[f"{col}_ci_low"] = low
            row[f"{col}_ci_high"] = high
        row["bootstrap_n"] = s.bootstrap.n_boot
        row["bootstrap_seed"] = s.bootstrap.seed
        row["ci_level"] = s.bootstrap.level
        row["ci_method"] = s.bootstrap.method
    clash = set(extra) & (set(METRIC_COLUMNS) | set(CI_COLUMNS))
    if clash:
        raise ValueError(f"extra columns {sorted(clash)} would overwrite metric columns")
    row.update(extra)
    return row


def write_metrics_json(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """One metrics row as JSON (the per-spectrum output that the table is gathered from)."""
    write_json(path, dict(row))


def read_metrics_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path) as fh:
        row = json.load(fh)
    missing = set(METRIC_COLUMNS) - set(row)
    if missing:
        raise ValueError(f"{path}: not a metrics row, missing {sorted(missing)}")
    return row


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = list(METRIC_COLUMNS)
    if any(c in r for r in rows for c in CI_COLUMNS):
        cols += CI_COLUMNS
    for r in rows:
        missing = set(METRIC_COLUMNS) - set(r)
        if missing:
            raise ValueError(f"metrics row {[r.get(c) for c in ID_COLUMNS]} lacks {sorted(missing)}")
        cols += [k for k in r if k not in cols and k not in JSON_ONLY]
    return cols


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def row_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of metrics rows: dataset, method, space, with the members of a checkpoint
    series (named ``<series>@<value>``, see :func:`dimcollapse.config.series_members`) in
    the order of their value — ``@5`` before ``@20`` before ``@100`` — not as text."""
    method = str(row.get("method", ""))
    series, _, value = method.rpartition("@")
    try:
        member = (series, float(value))
    except ValueError:
        member = (method, 0.0)
    return (str(row.get("dataset", "")), member, str(row.get("space", "")))


def write_metrics_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``results/metrics.csv`` (rows in :func:`row_order`), atomically."""
    rows = sorted(rows, key=row_order)
    cols = _columns(rows)
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in cols])


def _parse(col: str, text: str) -> Any:
    if text == "":
        return None if col not in _STR_COLUMNS else ""
    if col in _BOOL_COLUMNS:
        if text not in ("true", "false"):
            raise ValueError(f"column {col}: expected true/false, got {text!r}")
        return text == "true"
    if col in _INT_COLUMNS:
        return int(text)
    if col in _STR_COLUMNS or col not in set(METRIC_COLUMNS) | set(CI_COLUMNS) | set(GEOMETRY_COLUMNS):
        return text
    return float(text)


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``results/metrics.csv`` back with typed values (extra columns stay strings)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(METRIC_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a metrics table, missing columns {sorted(missing)}")
        try:
            return [{k: _parse(k, v) for k, v in r.items()} for r in reader]
        except ValueError as err:
            raise ValueError(f"{path}: malformed metrics table: {err}") from err


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _with_ci(row: Mapping[str, Any], col: str, digits: int) -> str:
    text = _num(row.get(col), digits)
    low, high = row.get(f"{col}_ci_low"), row.get(f"{col}_ci_high")
    if low is not None and high is not None:
        text += f" [{_num(low, digits)}, {_num(high, digits)}]"
    return text


def _percent(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.1f}"


#: Columns shown in the Markdown table only when some row has them (added by later stages).
OPTIONAL_MARKDOWN = (
    ("twonn", "TwoNN ID", lambda v: _num(v, 1)),
    ("twonn_mle", "TwoNN ID (MLE)", lambda v: _num(v, 1)),
    ("gride", "GRIDE ID", lambda v: _num(v, 1)),
    ("ph0", "PH₀ ID", lambda v: _num(v, 1)),
    ("self_clustering", "Self-clustering", lambda v: _num(v, 3)),
    ("uniformity", "Uniformity", lambda v: _num(v, 3)),
    ("alignment", "Alignment", lambda v: _num(v, 3)),
    ("lidar", "LiDAR", lambda v: _num(v, 1)),
    ("knn_accuracy", "k-NN acc. %", _percent),
    ("linear_accuracy", "Linear acc. %", _percent),
    ("cka_shuffled", "CKA shuffled", lambda v: _num(v, 3)),
    ("temporal_share", "Temporal share", lambda v: _num(v, 3)),
)


def metrics_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """The metrics as a Markdown table for the README/report.

    Rank-limited rows (N <= D) are marked with † and explained under the table;
    bootstrap intervals, when present, follow the value in brackets.
    """
    rows = sorted(rows, key=row_order)
    _columns(rows)
    level = next((r["ci_level"] for r in rows if r.get("ci_level") is not None), None)
    header = [
        "Dataset", "Method", "Space", "N", "D", "AUC (σ, paper)", "AUC (λ)", "RankMe",
        "α-ReQ", "α-ReQ R²", "Participation ratio", "Dims 90/95/99 % (λ)",
    ]
    optional = [(col, title, fmt) for col, title, fmt in OPTIONAL_MARKDOWN if any(col in r for r in rows)]
    header += [title for _, title, _ in optional]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        n = f"{r['n_samples']}†" if r["rank_limited"] else str(r["n_samples"])
        cells = [
            str(r["dataset"]),
            str(r.get("label") or r["method"]),
            str(r["space"]),
            n,
            str(r["dim"]),
            _with_ci(r, "auc_sigma", 3),
            _num(r["auc_lambda"], 3),
            _with_ci(r, "rankme", 1),
            _with_ci(r, "alpha_req", 3),
            _num(r["alpha_req_r2"], 3),
            _num(r["participation_ratio"], 1),
            f"{r['dims_90_lambda']}/{r['dims_95_lambda']}/{r['dims_99_lambda']}",
        ]
        cells += [fmt(r.get(col)) for col, _, fmt in optional]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    notes = []
    if any(r["rank_limited"] for r in rows):
        notes.append(
            "† N ≤ D: the covariance has at most N−1 non-zero eigenvalues; the drop of the "
            "spectrum after index N−2 is a sampling limit, not dimensional collapse."
        )
    if any(col in r for r in rows for col in ("knn_accuracy", "linear_accuracy")):
        notes.append("Accuracies: top-1 of the probes on their test split (see results/probes.csv).")
    if level is not None:
        methods = sorted({str(r["ci_method"]) for r in rows if r.get("ci_method")})
        notes.append(f"Brackets: {level:.0%} bootstrap intervals over videos ({', '.join(methods)}).")
    if any("twonn" in r for r in rows):
        notes.append(GEOMETRY_NOTE)
        subsampled = sorted({(r["pairs_rows"], r["n_samples"]) for r in rows
                             if r.get("pairs_rows") is not None and r["pairs_rows"] < r["n_samples"]})
        if subsampled:
            notes.append(f"TwoNN, GRIDE, PH₀ and uniformity used a seeded subsample of {subsampled[0][0]} rows "
                         "where N is larger.")
    return "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in notes)


GEOMETRY_NOTE = (
    "TwoNN ID: intrinsic dimension from the ratio of each row's second to first nearest-neighbour "
    "distance (Facco et al. 2017; linear fit and maximum likelihood). GRIDE ID: the same from the "
    "ratio of the 2n₁-th to the n₁-th neighbour distance (Denti et al. 2022), a larger scale than TwoNN's "
    "(n₁ in the gride_n1 column; the whole curve in each spectrum's JSON and results/figures/id_scale/). "
    "PH₀ ID: from the growth of the minimum spanning tree's length with the number of rows "
    "(Schweinhart 2020; sizes and draws in the ph0_setting column). Self-clustering: 0 for random "
    "directions, 1 when every row points one way (Tsitsulin et al. 2023). Uniformity: log of the mean "
    "exp(−t‖zᵢ − zⱼ‖²) over pairs of normalised rows (t = 2 unless configured), lower is more uniform; "
    "alignment: mean ‖z_v − z_w‖² "
    "between views of one video (Wang & Isola 2020)."
)


def _strength(c: Mapping[str, Any] | None) -> float:
    """|ρ| of a correlation row, −1 when undefined (sorted last)."""
    rho = None if c is None else c.get("spearman_rho")
    return abs(float(rho)) if rho is not None and math.isfinite(float(rho)) else -1.0


def _rho_cell(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "–"
    text = _num(c["spearman_rho"], 2)
    if c.get("ci_low") is not None and math.isfinite(float(c["ci_low"])):
        text += f" [{_num(c['ci_low'], 2)}, {_num(c['ci_high'], 2)}]"
    return text


def probe_tracking_markdown(
    correlations: Sequence[Mapping[str, Any]], metric_labels: Mapping[str, str], accuracy_labels: Mapping[str, str],
) -> str:
    """"Which measure tracks which probe": per dataset and probe, Spearman's ρ of every
    measure with the probe's accuracy and its bootstrap interval over all points, within
    each model family and across families (scopes of
    :func:`dimcollapse.analysis.probes.metric_accuracy_correlations`; rows without a
    ``scope`` are ``all``), strongest |ρ| over all points first (undefined last)."""
    if not correlations:
        return ""
    lines = ["## Which measure tracks which probe", "",
             "Spearman's ρ between each measure and probe accuracy over a dataset's instances and spaces, "
             "with its bootstrap interval; strongest first. *Within* a model family: over that family's points "
             "(at least 3); *across* families: over one point per family, the medians of its points (at least 3 "
             "families; an interval from 5). A measure that tracks accuracy across families but not within them "
             "may only tell architectures apart.", ""]
    for dataset in dict.fromkeys(str(c["dataset"]) for c in correlations):
        subset = [c for c in correlations if str(c["dataset"]) == dataset]
        for accuracy in [a for a in accuracy_labels if any(c["accuracy"] == a for c in subset)]:
            cells: dict[str, dict[str, Mapping[str, Any]]] = {}
            points: dict[str, int] = {}
            for c in subset:
                if c["accuracy"] == accuracy:
                    scope = str(c.get("scope", "all"))
                    key = f"within {c['family']}" if scope == "within" else scope
                    cells.setdefault(str(c["metric"]), {})[key] = c
                    points[key] = max(points.get(key, 0), int(c["n_points"]))
            order = (["all"] if "all" in points else []) + sorted(k for k in points if k.startswith("within ")) + (
                ["across"] if "across" in points else [])
            heads = {k: f"{k} ({points[k]})" for k in order}
            heads.update({"all": f"all ({points.get('all')} points)",
                          "across": f"across {points.get('across')} families"})
            lines += [f"**{dataset}**, {accuracy_labels[accuracy]}", "",
                      "| Measure | " + " | ".join(f"ρ {heads[k]}" for k in order) + " |",
                      "|---|" + "---|" * len(order)]
            for metric in sorted(cells, key=lambda m: -_strength(cells[m].get("all"))):
                lines.append(f"| {metric_labels.get(metric, metric)} | "
                             + " | ".join(_rho_cell(cells[metric].get(k)) for k in order) + " |")
            lines.append("")
    return "\n".join(lines)


def write_metrics_markdown(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], tracking: str = "") -> None:
    """The metrics table, then ``tracking`` (:func:`probe_tracking_markdown`) when given."""
    write_text(path, metrics_markdown(rows) + (f"\n{tracking}" if tracking else ""))


# --------------------------------------------------------------------------------------
# LiDAR and metrics against sample size

LIDAR_DELTA = 1e-3
LIDAR_EPS = 1e-7
LIDAR_CONVENTION = "Thilak et al. 2024: Sigma_b/(N-1), Sigma_w/(N(Q-1)) + delta*I, p = lambda/sum + eps"


def lidar(
    views: np.ndarray, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS, *, chunk_rows: int = 1024,
    source: str = "views",
) -> float:
    """LiDAR (Thilak et al., 2024) of ``views``, an N × Q × D array (Q ≥ 2 views per sample).

    Normalisations, in float64:

    * Σ_b = covariance of the N view-means m_n = mean_q x_nq, centred, divided by N − 1;
    * Σ_w = Σ_n Σ_q (x_nq − m_n)(x_nq − m_n)^T / (N (Q − 1)) + δ I;
    * Σ_lidar = Σ_w^{-1/2} Σ_b Σ_w^{-1/2} (inverse square root by symmetric eigh);
    * λ = its eigenvalues clipped at 0, p = λ / Σλ + ε, LiDAR = exp(−Σ p log p).

    Features are used as given (no row normalisation). Rows are streamed in chunks of
    ``chunk_rows`` samples, so a memory-mapped array is never loaded whole.
    """
    if views.ndim != 3:
        raise ValueError(f"{source}: LiDAR needs an N × Q × D array of views, got shape {views.shape}")
    n, q, d = views.shape
    if n < 2 or q < 2:
        raise ValueError(f"{source}: LiDAR needs at least 2 samples and 2 views each, got N={n}, Q={q}")
    if delta <= 0:
        raise ValueError(f"LiDAR delta must be > 0, got {delta}")
    between = MomentStats(d, normalize=False)
    within = np.zeros((d, d))
    for start in range(0, n, chunk_rows):
        block = np.asarray(views[start : start + chunk_rows], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError(f"{source}: non-finite value (NaN or inf) in samples {start}..{start + len(block) - 1}")
        means = block.mean(axis=1)
        between.update(means, source=source)
        dev = (block - means[:, None, :]).reshape(-1, d)
        within += dev.T @ dev
    sigma_w = within / (n * (q - 1)) + delta * np.eye(d)
    w_val, w_vec = np.linalg.eigh(sigma_w)
    inv_sqrt = (w_vec / np.sqrt(w_val)) @ w_vec.T
    sigma = inv_sqrt @ between.covariance @ inv_sqrt
    lam = np.clip(np.linalg.eigvalsh((sigma + sigma.T) / 2), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return 1.0
    p = lam / total + eps
    return float(np.exp(-(p * np.log(p)).sum()))


SAMPLE_SIZE_COLUMNS = ("n", "repeat", "dim", "rankme", "auc_sigma", "auc_lambda", "rank_limited")


def sample_sizes(n_rows: int, smallest: int) -> list[int]:
    """smallest, 2·smallest, 4·smallest, … below ``n_rows``, then ``n_rows`` itself."""
    if smallest < 2:
        raise ValueError(f"the smallest subset needs at least 2 rows, got {smallest}")
    sizes = []
    n = smallest
    while n < n_rows:
        sizes.append(n)
        n *= 2
    return sizes + [n_rows]


def sample_size_curve(
    features: np.ndarray, *, smallest: int = 256, repeats: int = 3, seed: int = 0, normalize: bool = True,
    alpha_range: tuple[int, int] = (10, 99),
) -> list[dict[str, Any]]:
    """RankMe and AUCs of seeded random row subsets of sizes :func:`sample_sizes`.

    ``repeats`` subsets (without replacement) per size below N, drawn from one
    ``numpy.random.default_rng(seed)`` stream in size order; all rows once. ``features``
    may be a memory map: only the chosen rows are read. Subsets with no more rows than
    dimensions go through :func:`_gram_metrics` (same numbers, n × n instead of D × D).
    """
    n_rows, dim = features.shape
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for n in sample_sizes(n_rows, smallest):
        for rep in range(repeats if n < n_rows else 1):
            pick = np.sort(rng.choice(n_rows, size=n, replace=False)) if n < n_rows else slice(None)
            subset = np.asarray(features[pick])
            if n <= dim:
                rankme, auc_sigma, auc_lambda = _gram_metrics(subset, normalize)
            else:
                spec = analyze(subset, normalize, alpha_range=alpha_range)
                rankme, auc_sigma, auc_lambda = spec.rankme, spec.auc, spec.auc_variance
            rows.append({"n": n, "repeat": rep, "dim": dim, "rankme": rankme, "auc_sigma": auc_sigma,
                         "auc_lambda": auc_lambda, "rank_limited": n <= dim})
    return rows


def _gram_metrics(rows: np.ndarray, normalize: bool) -> tuple[float, float, float]:
    """RankMe, AUC (σ) and AUC (λ) of no more rows than dimensions, from n × n Gram matrices.

    The non-zero eigenvalues of XᵀX (D × D) are those of XXᵀ (n × n), so a subset of n ≤ D
    rows costs O(n²D) instead of the O(D³) eigendecomposition of :func:`analyze`; the
    round-off threshold and every formula are :func:`analyze`'s (its tests pin the match).
    """
    x = np.array(rows, dtype=np.float64)
    n, d = x.shape
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1), NORM_EPS)[:, None]
    eps = np.finfo(np.float64).eps

    def eigenvalues(m: np.ndarray) -> np.ndarray:
        lam = np.linalg.eigvalsh(m)[::-1].copy()
        lam[lam <= lam[0] * d * eps] = 0.0  # analyze's τ = D·eps·λ_max
        return lam

    centred = x - x.mean(axis=0)
    lam = eigenvalues(centred @ centred.T) / (n - 1)
    sigma = np.sqrt((n - 1) * lam)
    auc_sigma = float((np.cumsum(sigma) / sigma.sum()).mean())
    auc_lambda = float((np.cumsum(lam) / lam.sum()).mean())
    sigma_u = np.sqrt(eigenvalues(x @ x.T))
    p = sigma_u / sigma_u.sum() + RANKME_EPS
    return float(np.exp(-np.sum(p * np.log(p)))), auc_sigma, auc_lambda


# --------------------------------------------------------------------------------------
# Geometry beyond the spectrum: intrinsic dimension, self-clustering, uniformity,
# alignment, and linear CKA between spaces

TWONN_METHODS = ("linear", "mle")
DEFAULT_MAX_PAIRS_ROWS = 20_000
"""Rows above which the O(N²) metrics (TwoNN, uniformity) use a seeded subsample."""


class DuplicateRowsWarning(UserWarning):
    """Rows with an identical twin have r₁ = 0 and no TwoNN ratio: they are left out."""


@dataclass(frozen=True)
class TwoNNRatios:
    """μ = r₂/r₁ of every row with r₁ > 0, and how many rows had r₁ = 0 (duplicates)."""

    mu: np.ndarray
    n_rows: int
    n_duplicates: int
    rechecked: int


@dataclass(frozen=True)
class TwoNNDimension:
    """A TwoNN estimate with the counts that qualify it."""

    dimension: float
    method: str
    discard_fraction: float
    n_rows: int
    """Rows searched (after any subsample)."""
    n_used: int
    """Rows with a ratio (``n_rows − n_duplicates``), the N of the estimate."""
    n_duplicates: int

    def __float__(self) -> float:
        return self.dimension


def twonn_ratios(x: np.ndarray, *, device: str | None = "auto", chunk_rows: int | None = None) -> TwoNNRatios:
    """The TwoNN ratios μᵢ = r₂/r₁ of the rows of ``x`` (Euclidean, the point itself excluded).

    Rows with r₁ = 0 are dropped with a :class:`DuplicateRowsWarning`; their count is kept.
    """
    from dimcollapse.analysis.pairwise import DEFAULT_CHUNK_ROWS, nearest_neighbours

    return _twonn_ratios(nearest_neighbours(x, (1, 2), device=device, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS))


def _twonn_ratios(nn: NearestNeighbours) -> TwoNNRatios:
    r1, r2 = nn.at(1), nn.at(2)
    keep = r1 > 0
    n_dup = int((~keep).sum())
    if n_dup:
        warnings.warn(f"TwoNN: dropping {n_dup} rows with zero distance to their nearest neighbour "
                      "(duplicate rows)", DuplicateRowsWarning, stacklevel=3)
    return TwoNNRatios(mu=r2[keep] / r1[keep], n_rows=int(r1.size), n_duplicates=n_dup, rechecked=nn.rechecked)


def twonn_from_ratios(ratios: TwoNNRatios, discard_fraction: float = 0.1, method: str = "linear") -> TwoNNDimension:
    """Facco et al. (2017) from the ratios, with scikit-dimension 0.5's conventions.

    Keep the k = ⌊n(1 − f)⌋ smallest μ of the n rows that have one, F = i/n;
    ``linear``: slope through the origin of −log(1 − F) on log μ (Σxy / Σx²);
    ``mle``: (k − 1) / (Σ_{i≤k} log μ₍ᵢ₎ + (n − k) log μ₍ₖ₎), the censored maximum likelihood.
    """
    if method not in TWONN_METHODS:
        raise ValueError(f"TwoNN method must be one of {TWONN_METHODS}, got {method!r}")
    if not 0.0 <= discard_fraction < 1.0:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction}")
    n = ratios.mu.size
    k = int(n * (1 - discard_fraction))
    if method == "linear" and k == n:
        raise ValueError("the linear TwoNN fit needs discard_fraction > 0 (−log(1 − F) is infinite at F = 1)")
    if k < 2:
        raise ValueError(f"TwoNN needs at least 2 ratios after discarding, have {k} of {n} rows")
    log_mu = np.log(np.sort(ratios.mu)[:k])
    if method == "mle":
        dim = (k - 1) / (log_mu.sum() + (n - k) * log_mu[-1])
    else:
        y = -np.log(1 - np.arange(1, k + 1) / n)
        dim = float(log_mu @ y) / float(log_mu @ log_mu)
    return TwoNNDimension(dimension=float(dim), method=method, discard_fraction=float(discard_fraction),
                          n_rows=ratios.n_rows, n_used=int(n), n_duplicates=ratios.n_duplicates)


def twonn_dimension(
    x: np.ndarray, discard_fraction: float = 0.1, method: str = "linear", *, device: str | None = "auto",
    max_rows: int | None = None, seed: int = 0,
) -> TwoNNDimension:
    """TwoNN intrinsic dimension of the rows of ``x`` (Facco et al. 2017; scikit-dimension's
    ``TwoNN(discard_fraction, method=method)``), by a chunked top-2 neighbour search.

    With more than ``max_rows`` rows a seeded subsample of ``max_rows`` is used
    (``n_rows`` of the result says how many).
    """
    from dimcollapse.analysis.pairwise import pair_subsample

    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return twonn_from_ratios(twonn_ratios(rows, device=device), discard_fraction, method)


# -- intrinsic dimension across neighbourhood scales (GRIDE) and subsample sizes (PH₀)

GRIDE_RANGE_MAX = 64
"""Largest neighbour rank n2 of the GRIDE curve (scikit-dimension's default)."""


@dataclass(frozen=True)
class GrideDimension:
    """A GRIDE estimate at neighbour ranks (n1, n2), with its standard error."""

    dimension: float
    error: float
    """1 / √(observed Fisher information), as scikit-dimension reports it."""
    n1: int
    n2: int
    n_rows: int
    n_used: int
    """Ratios in the likelihood (rows with tied or zero distances and outliers left out)."""

    def __float__(self) -> float:
        return self.dimension


def _gride_fit(log_mu: np.ndarray, n1: int, n2: int) -> tuple[float, float, int]:
    """The GRIDE maximum-likelihood dimension of the finite, positive log-ratios
    log(r_{n2}/r_{n1}) (Denti et al. 2022), with scikit-dimension 0.5's (DADApy's)
    conventions: ratios above q50 + 20(q95 − q50) are left out, the likelihood has
    (N − 1) log d, the root is bracketed by doubling and found by Brent's method."""
    from scipy.optimize import brentq

    mu = np.exp(log_mu)
    q95, q50 = np.percentile(mu, [95, 50])
    log_mu = log_mu[mu < 20 * (q95 - q50) + q50]
    n = log_mu.size
    if n < 2:
        raise ValueError(f"GRIDE (n1={n1}, n2={n2}) needs at least 2 neighbour ratios, {n} left")
    total, tail = float(log_mu.sum()), n2 - n1 - 1

    def score(d: float) -> float:  # d log L / dd; decreasing, from +inf to −n1·Σ log μ: one root
        return (n - 1) / d + tail * float(np.sum(log_mu / -np.expm1(-d * log_mu))) - (n2 - 1) * total

    hi = 1.0
    while score(hi) > 0:
        hi *= 2
    d = float(brentq(score, 1e-8, hi, xtol=1e-12, rtol=1e-12))
    info = n / d**2 + tail * float(np.sum((log_mu / (2 * np.sinh(d * log_mu / 2))) ** 2))
    return d, 1 / math.sqrt(info), n


def _log_ratios(nn: NearestNeighbours, n1: int, n2: int) -> np.ndarray:
    """log(r_{n2}/r_{n1}) per row, NaN where undefined (r_{n1} = 0: duplicates; r_{n1} =
    r_{n2}: ties), with a :class:`DuplicateRowsWarning` naming how many."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_mu = np.log(nn.at(n2) / nn.at(n1))
    bad = ~(np.isfinite(log_mu) & (log_mu > 0))
    if bad.any():
        warnings.warn(f"GRIDE (n1={n1}, n2={n2}): dropping {int(bad.sum())} rows with zero or tied neighbour "
                      "distances (duplicate rows)", DuplicateRowsWarning, stacklevel=3)
        log_mu[bad] = np.nan
    return log_mu


def _gride_at(nn: NearestNeighbours, n1: int, n2: int) -> GrideDimension:
    log_mu = _log_ratios(nn, n1, n2)
    d, err, used = _gride_fit(log_mu[~np.isnan(log_mu)], n1, n2)
    return GrideDimension(dimension=d, error=err, n1=n1, n2=n2, n_rows=len(log_mu), n_used=used)


def _gride_ranks(n1: int, n2: int | None) -> tuple[int, int]:
    n2 = 2 * n1 if n2 is None else n2
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (n1, n2)) or not 1 <= n1 < n2:
        raise ValueError(f"GRIDE needs integers 1 <= n1 < n2, got n1={n1!r}, n2={n2!r}")
    return int(n1), int(n2)


def gride_dimension(
    x: np.ndarray, n1: int = 1, n2: int | None = None, *, device: str | None = "auto", max_rows: int | None = None,
    seed: int = 0,
) -> GrideDimension:
    """GRIDE intrinsic dimension from μ = r_{n2}/r_{n1} (n2 = 2·n1 by default), equal to
    scikit-dimension 0.5's ``GRIDE(n1, n2)``; n1 = 1 is the TwoNN MLE. Larger n1 reads the
    dimension at a larger neighbourhood scale, past noise that inflates the nearest one.

    With more than ``max_rows`` rows a seeded subsample of ``max_rows`` is used.
    """
    from dimcollapse.analysis.pairwise import nearest_neighbours, pair_subsample

    n1, n2 = _gride_ranks(n1, n2)
    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return _gride_at(nearest_neighbours(rows, (n1, n2), device=device), n1, n2)


def gride_scales(n_rows: int, range_max: int = GRIDE_RANGE_MAX) -> list[int]:
    """The n1 of the GRIDE curve: 1, 2, 4, … with n2 = 2·n1 ≤ min(range_max, n_rows − 1)
    (scikit-dimension's ``multiscale=True``)."""
    if range_max < 2:
        raise ValueError(f"the GRIDE curve needs range_max >= 2, got {range_max}")
    top = min(range_max, n_rows - 1)
    return [2**i for i in range(int(np.log2(top)))] if top >= 2 else []


@dataclass(frozen=True)
class GrideCurve:
    """GRIDE dimension at n1 = 1, 2, 4, … (n2 = 2·n1), with percentile bootstrap intervals
    over rows (each resample re-fits every scale on the same resampled rows, holding their
    neighbour distances; NaN without a bootstrap)."""

    n1: tuple[int, ...]
    dimension: np.ndarray
    error: np.ndarray
    radius: np.ndarray
    """Mean distance to the n2-th neighbour: the scale each n1 reads, in the data's units."""
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_rows: int
    bootstrap_n: int
    seed: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (undefined values as None)."""

        def values(a: np.ndarray) -> list[float | None]:
            return [float(v) if math.isfinite(v) else None for v in a]

        return {"n1": list(self.n1), "n2": [2 * n for n in self.n1], "dimension": values(self.dimension),
                "error": values(self.error), "radius": values(self.radius), "ci_low": values(self.ci_low),
                "ci_high": values(self.ci_high), "n_rows": self.n_rows, "bootstrap_n": self.bootstrap_n,
                "bootstrap_seed": self.seed, "ci_level": self.level}


def _gride_curve(nn: NearestNeighbours, range_max: int, bootstrap: int, seed: int, level: float) -> GrideCurve:
    n = nn.distances.shape[0]
    scales = gride_scales(n, range_max)
    ratios = [_log_ratios(nn, s, 2 * s) for s in scales]
    fits = [_gride_fit(r[~np.isnan(r)], s, 2 * s) for r, s in zip(ratios, scales)]
    low = np.full(len(scales), np.nan)
    high = np.full(len(scales), np.nan)
    if bootstrap:
        picks = np.random.default_rng(seed).integers(0, n, size=(bootstrap, n))
        tail = (1 - level) / 2 * 100
        for i, (r, s) in enumerate(zip(ratios, scales)):
            boots = []
            for pick in picks:
                drawn = r[pick]
                drawn = drawn[~np.isnan(drawn)]
                if drawn.size >= 2:
                    boots.append(_gride_fit(drawn, s, 2 * s)[0])
            if len(boots) >= bootstrap / 2:
                low[i], high[i] = np.percentile(boots, [tail, 100 - tail])
    return GrideCurve(
        n1=tuple(scales), dimension=np.array([f[0] for f in fits]), error=np.array([f[1] for f in fits]),
        radius=np.array([nn.at(2 * s).mean() for s in scales]), ci_low=low, ci_high=high, n_rows=n,
        bootstrap_n=bootstrap, seed=seed, level=level,
    )


def gride_curve(
    x: np.ndarray, range_max: int = GRIDE_RANGE_MAX, *, bootstrap: int = 0, seed: int = 0, level: float = 0.95,
    device: str | None = "auto", max_rows: int | None = None,
) -> GrideCurve:
    """GRIDE across scales, equal to scikit-dimension 0.5's ``GRIDE(multiscale=True,
    range_max=range_max)`` (``dimension_scales_``, ``error_scales_``, ``radius_scales_``),
    from one neighbour search for all scales; ``bootstrap`` resamples of the rows give
    percentile intervals. Reading: noise inflates the nearest scales; the plateau over
    larger n1 is the manifold's dimension."""
    from dimcollapse.analysis.pairwise import nearest_neighbours, pair_subsample

    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    scales = gride_scales(len(rows), range_max)
    if not scales:
        raise ValueError(f"the GRIDE curve needs at least 3 rows, got {len(rows)}")
    ranks = set(scales) | {2 * s for s in scales}
    return _gride_curve(nearest_neighbours(rows, ranks, device=device), range_max, bootstrap, seed, level)


PH0_MAX_ROWS = 2_000
"""Largest subsample of the PH₀ fit by default (subsamples from half of it up to it)."""
PH0_STEPS = 10
PH0_SUBSAMPLES = 5


@dataclass(frozen=True)
class PH0Dimension:
    """A PH₀ (minimum spanning tree) dimension with the setting it was measured at."""

    dimension: float
    alpha: float
    rows_min: int
    rows_max: int
    steps: int
    subsamples: int
    seed: int
    n_rows: int
    log_sizes: np.ndarray
    log_lengths: np.ndarray
    """log of Σ ℓ^α over the MST edges of each subsample (the fit's points)."""

    def __float__(self) -> float:
        return self.dimension

    @property
    def setting(self) -> str:
        return (f"alpha={self.alpha:g} rows={self.rows_min}-{self.rows_max} steps={self.steps} "
                f"subsamples={self.subsamples} seed={self.seed}")


def ph0_dimension(
    x: np.ndarray, *, alpha: float = 1.0, sizes: tuple[int, int] | None = None, max_rows: int = PH0_MAX_ROWS,
    steps: int = PH0_STEPS, subsamples: int = PH0_SUBSAMPLES, seed: int = 0, device: str | None = "auto",
) -> PH0Dimension:
    """PH₀ dimension (Schweinhart 2020): the α-weighted length E = Σ ℓ^α of the Euclidean
    minimum spanning tree of n random rows grows as n^((d − α)/d); d = α / (1 − slope) of
    the least-squares line of log E on log n.

    ``steps`` sizes evenly spaced (rounded up) from ``sizes[0]`` to ``sizes[1]`` rows,
    ``subsamples`` draws each, drawn as scikit-dimension 0.5's ``PH(n_range_min=sizes[0],
    n_range_max=sizes[1], range_type="num", nsteps=steps, subsamples=subsamples,
    random_state=seed)`` draws them (one ``RandomState(seed)``, ``choice`` without
    replacement per subsample), so the two agree. Default sizes: from half of
    min(N, ``max_rows``) up to it — scikit-dimension's default range when N ≤ ``max_rows``,
    and a cost independent of N above (the MST of m rows costs m² distances, one GEMM pass
    in :func:`dimcollapse.analysis.spanning_tree.minimum_spanning_tree`).
    """
    from dimcollapse.analysis.spanning_tree import minimum_spanning_tree

    n = len(x)
    top = min(n, max_rows)
    low, high = sizes if sizes is not None else (math.ceil(0.5 * top), top)
    if alpha <= 0:
        raise ValueError(f"PH0 alpha must be > 0, got {alpha}")
    if steps < 2 or subsamples < 1:
        raise ValueError(f"PH0 needs steps >= 2 and subsamples >= 1, got {steps} and {subsamples}")
    if not 2 <= low < high <= n:
        raise ValueError(f"PH0 needs 2 <= smallest subsample < largest <= rows, got {low}, {high}, {n} rows")
    counts = np.repeat(np.ceil(np.linspace(low, high, steps)).astype(int), subsamples)
    rng = np.random.RandomState(seed)
    lengths = []
    for size in counts:
        rows = np.asarray(x[np.sort(rng.choice(n, size=size, replace=False))])
        lengths.append(float(np.sum(minimum_spanning_tree(rows, device=device).lengths ** alpha)))
    if min(lengths) <= 0:
        raise ValueError("PH0: a subsample's rows are all identical (spanning tree of length 0)")
    lx, ly = np.log(counts), np.log(lengths)
    slope = float(np.sum((lx - lx.mean()) * (ly - ly.mean())) / np.sum((lx - lx.mean()) ** 2))
    return PH0Dimension(dimension=alpha / (1 - slope), alpha=float(alpha), rows_min=int(low), rows_max=int(high),
                        steps=steps, subsamples=subsamples, seed=seed, n_rows=n, log_sizes=lx, log_lengths=ly)


def self_clustering(x: np.ndarray) -> float:
    """Self-clustering ψ (Tsitsulin et al. 2023) of the L2-normalised rows z of ``x``:
    ψ = (d‖ZZᵀ‖²_F − n(n + d − 1)) / (n(n − 1)(d − 1)); 0 for random directions, 1 when
    all rows point one way.

    ‖ZZᵀ‖_F = ‖ZᵀZ‖_F, so with more rows than dimensions the D × D second moment of the
    streamed statistics (float64, chunked) replaces the n × n Gram matrix: O(nd²), no pairs.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"self-clustering needs at least 2 rows and 2 columns, got shape {x.shape}")
    n, d = x.shape
    if n >= d:
        gram_sq = float(np.sum(MomentStats.from_array(x, normalize=True).second_moment ** 2))
    else:
        z = np.array(x, dtype=np.float64)
        z /= np.maximum(np.linalg.norm(z, axis=1), NORM_EPS)[:, None]
        gram_sq = float(np.sum((z @ z.T) ** 2))
    return (d * gram_sq - n * (n + d - 1)) / (n * (n - 1) * (d - 1))


def uniformity(
    x: np.ndarray, t: float = 2.0, *, device: str | None = "auto", max_rows: int | None = None, seed: int = 0,
) -> float:
    """Uniformity (Wang & Isola 2020): log of the mean over pairs i < j of exp(−t‖zᵢ − zⱼ‖²)
    for the L2-normalised rows z; lower is more uniform on the sphere. Summed by log-sum-exp
    over float32 Gram blocks of the upper triangle; more than ``max_rows`` rows: a seeded subsample.
    """
    from dimcollapse.analysis.pairwise import log_mean_pair_kernel, normalized_rows, pair_subsample, torch_device

    if t <= 0:
        raise ValueError(f"uniformity t must be > 0, got {t}")
    pick = pair_subsample(len(x), max_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    return log_mean_pair_kernel(normalized_rows(rows, torch_device(device)), t)


def alignment(views: np.ndarray, *, chunk_rows: int = 1024) -> float:
    """Alignment (Wang & Isola 2020, α = 2) of an N × Q × D array of Q ≥ 2 views per sample:
    the mean over samples and over view pairs v < w of ‖z_v − z_w‖² (rows L2-normalised);
    0 when every view of a sample maps to one point, 4 at most.

    Σ_{v<w}‖z_v − z_w‖² = QΣ_v‖z_v‖² − ‖Σ_v z_v‖², so it costs O(NQD), streamed in chunks.
    """
    if views.ndim != 3 or views.shape[0] < 1 or views.shape[1] < 2:
        raise ValueError(f"alignment needs an N × Q × D array with Q ≥ 2 views, got shape {views.shape}")
    n, q, _ = views.shape
    total = 0.0
    for start in range(0, n, chunk_rows):
        z = np.array(views[start : start + chunk_rows], dtype=np.float64)
        z /= np.maximum(np.linalg.norm(z, axis=2), NORM_EPS)[..., None]
        total += float(q * np.sum(z**2) - np.sum(z.sum(axis=1) ** 2))
    return total / (n * q * (q - 1) / 2)


def _centred_cross(x: np.ndarray, y: np.ndarray, chunk_rows: int) -> np.ndarray:
    """(X − x̄)ᵀ(Y − ȳ) in float64, streamed over row chunks (works on memory maps)."""
    mx = np.zeros(x.shape[1])
    my = np.zeros(y.shape[1])
    for s in range(0, len(x), chunk_rows):
        mx += np.asarray(x[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
        my += np.asarray(y[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
    mx /= len(x)
    my /= len(y)
    out = np.zeros((x.shape[1], y.shape[1]))
    for s in range(0, len(x), chunk_rows):
        out += (np.asarray(x[s : s + chunk_rows], dtype=np.float64) - mx).T @ (
            np.asarray(y[s : s + chunk_rows], dtype=np.float64) - my)
    return out


def _centred_gram(x: np.ndarray) -> np.ndarray:
    xc = np.asarray(x, dtype=np.float64)
    xc = xc - xc.mean(axis=0)
    return xc @ xc.T


def _centred_row_sq(x: np.ndarray, chunk_rows: int) -> np.ndarray:
    """‖xᵢ − x̄‖² of every row in float64, streamed over row chunks."""
    mean = np.zeros(x.shape[1])
    for s in range(0, len(x), chunk_rows):
        mean += np.asarray(x[s : s + chunk_rows], dtype=np.float64).sum(axis=0)
    mean /= len(x)
    return np.concatenate([np.sum((np.asarray(x[s : s + chunk_rows], dtype=np.float64) - mean) ** 2, axis=1)
                           for s in range(0, len(x), chunk_rows)])


class _CkaSpace:
    """One space compared by CKA, with its normaliser ‖XᵀX‖²_F (X centred) and its centred
    squared row norms kept once computed: a matrix of k spaces then computes k
    normalisers, not one per pair."""

    def __init__(self, x: np.ndarray, chunk_rows: int) -> None:
        self.x, self.chunk_rows = x, chunk_rows
        self._norm_sq: float | None = None
        self._row_sq: np.ndarray | None = None

    def norm_sq(self, gram: np.ndarray | None = None) -> float:
        """‖XᵀX‖²_F = ‖XXᵀ‖²_F, from ``gram`` (XXᵀ) when the caller has it, else from the
        smaller of the D × D and N × N forms."""
        if self._norm_sq is None:
            n, d = self.x.shape
            if gram is None:
                gram = _centred_gram(self.x) if n < d else _centred_cross(self.x, self.x, self.chunk_rows)
            self._norm_sq = float(np.sum(gram * gram))
        return self._norm_sq

    def row_sq(self) -> np.ndarray:
        if self._row_sq is None:
            self._row_sq = _centred_row_sq(self.x, self.chunk_rows)
        return self._row_sq


def _cka_terms(a: _CkaSpace, b: _CkaSpace) -> tuple[float, float, float]:
    """‖XᵀY‖²_F, ‖XᵀX‖²_F, ‖YᵀY‖²_F (X, Y centred): the cross term from the D × D form,
    O(n·dx·dy), or with few rows from the centred Grams K, L (⟨K, L⟩, O(n²(dx + dy))),
    which also give the norms."""
    n, dx = a.x.shape
    dy = b.x.shape[1]
    if n * (dx + dy) < dx * dy:
        k, ell = _centred_gram(a.x), _centred_gram(b.x)
        cross = float(np.sum(k * ell))
        kk, ll = a.norm_sq(k), b.norm_sq(ell)
    else:
        cross = float(np.sum(_centred_cross(a.x, b.x, a.chunk_rows) ** 2))
        kk, ll = a.norm_sq(), b.norm_sq()
    if kk == 0 or ll == 0:
        raise ValueError("CKA is undefined for a space with identical rows (zero centred matrix)")
    return cross, kk, ll


def _hsic1(cross: float, ra: np.ndarray, rb: np.ndarray) -> float:
    """Song et al.'s (2012) unbiased HSIC of linear kernels of centred X, Y, with K̃, L̃ the
    Grams with zeroed diagonals:
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)).
    For centred rows K1 = 0, so K̃1 = −a (a the squared row norms) and the terms reduce
    to tr(K̃L̃) = ‖XᵀY‖²_F − a·b, 1ᵀK̃1 = −Σa, 1ᵀK̃L̃1 = a·b (the estimator does not
    change when the features are shifted, so centring costs nothing)."""
    n = ra.size
    ab = float(ra @ rb)
    return (cross - ab + float(ra.sum()) * float(rb.sum()) / ((n - 1) * (n - 2)) - 2 * ab / (n - 2)) / (n * (n - 3))


def _cka_pair(a: _CkaSpace, b: _CkaSpace, debiased: bool) -> tuple[float, float]:
    """Linear CKA ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) and, when ``debiased``, debiased CKA
    HSIC₁(K, L) / √(HSIC₁(K, K)·HSIC₁(L, L)) from the same cross term (NaN otherwise)."""
    cross, kk, ll = _cka_terms(a, b)
    linear = cross / math.sqrt(kk * ll)
    if not debiased:
        return linear, math.nan
    ra, rb = a.row_sq(), b.row_sq()
    xx, yy = _hsic1(kk, ra, ra), _hsic1(ll, rb, rb)
    if xx <= 0 or yy <= 0:  # possible with very few rows: the estimate of ‖Cov‖² is then useless
        return linear, math.nan
    return linear, _hsic1(cross, ra, rb) / math.sqrt(xx * yy)


def _cka_spaces(matrices: Sequence[np.ndarray], chunk_rows: int, min_rows: int = 2) -> list[_CkaSpace]:
    for m in matrices:
        if m.ndim != 2:
            raise ValueError(f"CKA needs 2-D matrices, got shape {m.shape}")
    rows = {m.shape[0] for m in matrices}
    if len(rows) > 1:
        raise ValueError(f"CKA needs the same rows in every matrix, got {sorted(rows)}")
    if rows and min(rows) < min_rows:
        raise ValueError(f"CKA needs at least {min_rows} rows here, got {min(rows)}")
    return [_CkaSpace(m, chunk_rows) for m in matrices]


def linear_cka(x: np.ndarray, y: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """Linear CKA (Kornblith et al. 2019) of two matrices with the same rows (samples):
    with X, Y centred by column, ‖XᵀY‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), in [0, 1]; invariant to
    orthogonal transforms and isotropic scaling of either space. Float64, streamed over
    row chunks in the D × D form (works on memory maps)."""
    a, b = _cka_spaces([x, y], chunk_rows)
    return _cka_pair(a, b, debiased=False)[0]


def unbiased_cka(x: np.ndarray, y: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> float:
    """Debiased linear CKA: linear CKA with Song et al.'s (2012) unbiased HSIC estimator in
    place of the biased one (:func:`_hsic1`), needing n ≥ 4 rows. Plain CKA of two
    independent random n × d matrices with n ≪ d is far from 0; this one is near 0. It can
    be slightly negative, and it is 1 for a space with itself."""
    a, b = _cka_spaces([x, y], chunk_rows, min_rows=4)
    value = _cka_pair(a, b, debiased=True)[1]
    if math.isnan(value):
        raise ValueError("debiased CKA is undefined: a space's unbiased HSIC with itself is not positive")
    return value


def cka_matrices(
    matrices: Sequence[np.ndarray], *, debiased: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric matrices of linear and (``debiased``; else NaN) debiased CKA between every
    two of ``matrices``, ones on the diagonals; one cross term per pair serves both, and
    each space's normaliser and row norms are computed once. A debiased value that a
    space's few rows leave undefined (its unbiased HSIC with itself not positive) is NaN."""
    spaces = _cka_spaces(matrices, chunk_rows, min_rows=4 if debiased else 2)
    linear = np.eye(len(spaces))
    unbiased = np.eye(len(spaces)) if debiased else np.full((len(spaces),) * 2, np.nan)
    for i in range(len(spaces)):
        for j in range(i + 1, len(spaces)):
            linear[i, j], unbiased[i, j] = _cka_pair(spaces[i], spaces[j], debiased)
            linear[j, i], unbiased[j, i] = linear[i, j], unbiased[i, j]
    return linear, unbiased


def linear_cka_matrix(matrices: Sequence[np.ndarray], *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Symmetric matrix of linear CKA between every two of ``matrices`` (ones on the
    diagonal); each space's normaliser is computed once."""
    return cka_matrices(matrices, debiased=False, chunk_rows=chunk_rows)[0]


MUTUAL_KNN_K = 10
"""Neighbours per row of the mutual k-NN alignment (Huh et al. 2024 use 10)."""


def knn_sets(x: np.ndarray, k: int = MUTUAL_KNN_K, *, device: str | None = "auto") -> np.ndarray:
    """The ``k`` nearest other rows of each row by cosine similarity (N × k indices, each
    row's set in index order; ties go to the lower index): Euclidean neighbours of the
    L2-normalised rows, from one chunked search (zero rows stay zero)."""
    from dimcollapse.analysis.pairwise import nearest_neighbours

    z = np.array(x, dtype=np.float64)
    z /= np.maximum(np.linalg.norm(z, axis=1), NORM_EPS)[:, None]
    return nearest_neighbours(z.astype(np.float32), (k,), members=k, device=device).members


def _shared_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |A_i ∩ B_i| / k for two N × k arrays of per-row index sets."""
    both = np.sort(np.concatenate([a, b], axis=1), axis=1)
    return float(np.mean(np.sum(both[:, 1:] == both[:, :-1], axis=1) / a.shape[1]))


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = MUTUAL_KNN_K, *, device: str | None = "auto") -> float:
    """Mutual k-NN alignment (Huh et al. 2024, "The Platonic Representation Hypothesis")
    of two matrices with the same rows: the mean over rows of the fraction of its k
    nearest neighbours (cosine, itself excluded) that the two spaces share; 1 for spaces
    with the same neighbourhoods, about k/(N − 1) for unrelated ones."""
    return float(mutual_knn_matrix([x, y], k, device=device)[0, 1])


def mutual_knn_matrix(
    matrices: Sequence[np.ndarray], k: int = MUTUAL_KNN_K, *, device: str | None = "auto",
) -> np.ndarray:
    """Symmetric matrix of :func:`mutual_knn` between every two of ``matrices`` (ones on
    the diagonal); each space's neighbour sets are searched once."""
    rows = {m.shape[0] for m in matrices}
    if len(rows) > 1:
        raise ValueError(f"mutual k-NN needs the same rows in every matrix, got {sorted(rows)}")
    if rows and not 1 <= k < min(rows):
        raise ValueError(f"mutual k-NN needs 1 <= k < rows, got k={k} with {min(rows)} rows")
    return mutual_knn_from_sets([knn_sets(m, k, device=device) for m in matrices])


def mutual_knn_from_sets(sets: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric matrix of the mean shared fraction between every two of ``sets`` (N × k
    neighbour sets of :func:`knn_sets` on the same rows), ones on the diagonal."""
    out = np.eye(len(sets))
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            out[i, j] = out[j, i] = _shared_fraction(sets[i], sets[j])
    return out


GRIDE_N1 = 8
"""n1 of the ``gride`` column (n2 = 16): past the nearest scales, which noise inflates."""


def _or_nan(name: str, estimate: Any) -> Any:
    """``estimate()``, or None (the column then NaN) with a warning when the data cannot
    give it (too few rows, all rows identical): one undefined column must not cost the others."""
    try:
        return estimate()
    except ValueError as err:
        warnings.warn(f"{name}: {err}: left undefined", stacklevel=3)
        return None


def neighbour_dimensions(
    x: np.ndarray, *, discard_fraction: float = 0.1, gride_n1: int = GRIDE_N1, gride_range_max: int = GRIDE_RANGE_MAX,
    gride_bootstrap: int = 0, seed: int = 0, device: str | None = "auto",
) -> dict[str, Any]:
    """TwoNN (linear fit and MLE), GRIDE at n1 = ``gride_n1`` and the GRIDE curve up to
    ``gride_range_max`` (JSON-ready, key ``gride_curve``) of the rows of ``x``, from one
    neighbour search for every rank they need. What the rows cannot give (fewer than 3,
    or fewer than 2·``gride_n1`` + 1 for ``gride``) is left undefined with a warning."""
    from dimcollapse.analysis.pairwise import nearest_neighbours

    n = len(x)
    out: dict[str, Any] = {"twonn": math.nan, "twonn_mle": math.nan, "twonn_duplicates": 0, "gride": math.nan,
                           "gride_n1": gride_n1, "gride_curve": None}
    if n < 3:
        warnings.warn(f"TwoNN and GRIDE need at least 3 rows, have {n}: left undefined", stacklevel=2)
        return out
    scales = gride_scales(n, gride_range_max)
    n1, n2 = _gride_ranks(gride_n1, None)
    ranks = {1, 2} | set(scales) | {2 * s for s in scales} | ({n1, n2} if n2 < n else set())
    nn = nearest_neighbours(x, ranks, device=device)
    ratios = _twonn_ratios(nn)
    out["twonn_duplicates"] = ratios.n_duplicates
    if int(ratios.mu.size * (1 - discard_fraction)) >= 2:
        out["twonn"] = twonn_from_ratios(ratios, discard_fraction, "linear").dimension
        out["twonn_mle"] = twonn_from_ratios(ratios, discard_fraction, "mle").dimension
    else:
        warnings.warn(f"TwoNN: {ratios.mu.size} rows with a ratio are too few: left undefined", stacklevel=2)
    if n2 < n:
        gride = _or_nan("GRIDE", lambda: _gride_at(nn, n1, n2).dimension)
        out["gride"] = math.nan if gride is None else gride
    else:
        warnings.warn(f"GRIDE at n1={n1} needs more than {n2} rows, have {n}: left undefined", stacklevel=2)
    curve = _or_nan("GRIDE curve", lambda: _gride_curve(nn, gride_range_max, gride_bootstrap, seed, 0.95))
    out["gride_curve"] = None if curve is None else curve.to_dict()
    return out


def geometry_metrics(
    x: np.ndarray, *, views: np.ndarray | None = None, normalize: bool = True, discard_fraction: float = 0.1,
    uniformity_t: float = 2.0, max_pairs_rows: int | None = DEFAULT_MAX_PAIRS_ROWS, seed: int = 0,
    device: str | None = "cpu", gride_n1: int = GRIDE_N1, gride_range_max: int = GRIDE_RANGE_MAX,
    gride_bootstrap: int = 0, ph0_max_rows: int = PH0_MAX_ROWS, ph0_steps: int = PH0_STEPS,
    ph0_subsamples: int = PH0_SUBSAMPLES, ph0_alpha: float = 1.0,
) -> dict[str, Any]:
    """The geometry columns of one feature matrix (and of its views, when given).

    TwoNN (linear fit and MLE), GRIDE at n1 = ``gride_n1`` and the GRIDE curve (key
    ``gride_curve``, for the JSON, not the table) come from one neighbour search, on the
    rows the spectrum sees: L2-normalised when ``normalize``, so all describe one point
    cloud. TwoNN, GRIDE, PH₀ and uniformity use the same seeded subsample when N >
    ``max_pairs_rows``; ``pairs_rows`` records how many rows they used, ``ph0_setting``
    the PH₀ sizes and draws. Self-clustering uses every row (it needs no pairs).
    """
    from dimcollapse.analysis.pairwise import pair_subsample

    pick = pair_subsample(len(x), max_pairs_rows, seed)
    rows = np.asarray(x if pick is None else x[pick])
    cloud = rows
    if normalize:
        cloud = np.array(rows, dtype=np.float64)
        cloud /= np.maximum(np.linalg.norm(cloud, axis=1), NORM_EPS)[:, None]
        cloud = cloud.astype(np.float32)
    out: dict[str, Any] = neighbour_dimensions(cloud, discard_fraction=discard_fraction, gride_n1=gride_n1,
                                               gride_range_max=gride_range_max, gride_bootstrap=gride_bootstrap,
                                               seed=seed, device=device)
    ph0 = _or_nan("PH0", lambda: ph0_dimension(cloud, alpha=ph0_alpha, max_rows=ph0_max_rows, steps=ph0_steps,
                                               subsamples=ph0_subsamples, seed=seed, device=device))
    out.update({
        "ph0": math.nan if ph0 is None else ph0.dimension,
        "ph0_setting": "" if ph0 is None else ph0.setting,
        "self_clustering": self_clustering(x),
        "uniformity": uniformity(rows, uniformity_t, device=device),
        "pairs_rows": int(len(rows)),
    })
    if views is not None:
        out["alignment"] = alignment(views)
    return out
