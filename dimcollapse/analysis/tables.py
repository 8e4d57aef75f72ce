"""Tables of spectra and collapse metrics: per-index spectrum CSVs and the metrics table.

Column names carry their convention: ``cev_sigma``/``auc_sigma`` are the paper's
σ-based cumulative explained variance (Σσ_i up to k over Σσ), ``cev_lambda``/``auc_lambda``
the PCA convention (λ = σ²), ``dims_*_lambda`` count components for a fraction of the
λ-based variance.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dimcollapse.analysis.spectrum import Spectrum
from dimcollapse.atomic import atomic_path, write_json, write_text

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


def join_metric_rows(
    rows: Iterable[Mapping[str, Any]], *, labels: Mapping[str, str],
    lidar: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
    probes: Iterable[Mapping[str, Any]] = (),
    temporal: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The metrics table's rows: each spectrum row (:func:`metrics_row`) with its instance's
    label, and where computed its LiDAR (records of the lidar rule), probe accuracies (rows of
    the probe table) and temporal columns, joined on (dataset, instance, space)."""
    extra: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, record in (lidar or {}).items():
        extra.setdefault(key, {})["lidar"] = record["lidar"]
    for r in probes:
        extra.setdefault((r["dataset"], r["method"], r["space"]), {}).update(
            knn_accuracy=r["knn_accuracy"], linear_accuracy=r["linear_accuracy"])
    for key, columns in (temporal or {}).items():
        extra.setdefault(key, {}).update(columns)
    return [{**row, "label": labels[row["method"]], **extra.get((row["dataset"], row["method"], row["space"]), {})}
            for row in rows]


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


def number_cell(value: Any, digits: int) -> str:
    """A table cell: the value to ``digits`` decimals, or "–" where it is missing (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _with_ci(row: Mapping[str, Any], col: str, digits: int) -> str:
    text = number_cell(row.get(col), digits)
    low, high = row.get(f"{col}_ci_low"), row.get(f"{col}_ci_high")
    if low is not None and high is not None:
        text += f" [{number_cell(low, digits)}, {number_cell(high, digits)}]"
    return text


def _percent(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.1f}"


#: Columns shown in the Markdown table only when some row has them (added by later stages).
OPTIONAL_MARKDOWN = (
    ("twonn", "TwoNN ID", lambda v: number_cell(v, 1)),
    ("twonn_mle", "TwoNN ID (MLE)", lambda v: number_cell(v, 1)),
    ("gride", "GRIDE ID", lambda v: number_cell(v, 1)),
    ("ph0", "PH₀ ID", lambda v: number_cell(v, 1)),
    ("self_clustering", "Self-clustering", lambda v: number_cell(v, 3)),
    ("uniformity", "Uniformity", lambda v: number_cell(v, 3)),
    ("alignment", "Alignment", lambda v: number_cell(v, 3)),
    ("lidar", "LiDAR", lambda v: number_cell(v, 1)),
    ("knn_accuracy", "k-NN acc. %", _percent),
    ("linear_accuracy", "Linear acc. %", _percent),
    ("cka_shuffled", "CKA shuffled", lambda v: number_cell(v, 3)),
    ("temporal_share", "Temporal share", lambda v: number_cell(v, 3)),
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
            number_cell(r["auc_lambda"], 3),
            _with_ci(r, "rankme", 1),
            _with_ci(r, "alpha_req", 3),
            number_cell(r["alpha_req_r2"], 3),
            number_cell(r["participation_ratio"], 1),
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
    text = number_cell(c["spearman_rho"], 2)
    if c.get("ci_low") is not None and math.isfinite(float(c["ci_low"])):
        text += f" [{number_cell(c['ci_low'], 2)}, {number_cell(c['ci_high'], 2)}]"
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
