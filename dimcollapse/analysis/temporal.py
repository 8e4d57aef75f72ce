"""Does a representation use time? Measures of temporal reliance and temporal collapse.

Two kinds of evidence (definitions in REFERENCE §15):

**Frame-order interventions** (:mod:`dimcollapse.data.interventions`): the features F of
the original clips and G of the same clips with reversed, shuffled or frozen frames, row
``i`` = clip ``i`` in both:

* linear CKA (Kornblith et al. 2019, :func:`~dimcollapse.analysis.similarity_measures.linear_cka`):
  1 when G is a rotation and scaling of F — the space, as a whole, ignores the change;
* :func:`mean_cosine`: the mean over clips of cos(Fᵢ, Gᵢ), 1 when every clip's vector is
  unchanged in direction — clip by clip, which CKA (a property of the whole cloud) is not;
* the intervened space's RankMe, AUC and TwoNN and its probe accuracies next to the
  original's (computed by the workflow's spectrum and probe rules, read here).

An order-blind model has CKA and cosine 1 under ``shuffled`` and ``reversed``; ``frozen``
(one frame repeated) also tells whether more than one frame's content is used.

**Time-resolved spaces** X ∈ ℝ^{N×T′×D} (:mod:`dimcollapse.models.time_axes`), as extracted
(no row normalisation, a decomposition of the features' own variance), X̄ᵢ the mean of
clip i over its T′ steps, X̄ the grand mean:

* :func:`temporal_share` = Σᵢₜ ‖Xᵢₜ − X̄ᵢ‖² / Σᵢₜ ‖Xᵢₜ − X̄‖² ∈ [0, 1]: 0 when every time
  step of every clip is the same (the time axis carries nothing: temporal collapse),
  near 1 when moments within a clip differ more than clips do;
* :func:`scatter_rankme` of the pooled within-clip scatter Σᵢₜ (Xᵢₜ − X̄ᵢ)(Xᵢₜ − X̄ᵢ)ᵀ: in
  how many directions the features move over time (RankMe's entropy of the singular
  values of the deviations, Garrido et al. 2023);
* the spectrum of all N·T′ time-step vectors next to that of the N clip means (as the
  spectrum rule computes spectra): how many more directions the moments span than the clips.

Everything is float64 and streamed over chunks of clips, so memory maps of any N work.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from dimcollapse.analysis.moments import NORM_EPS
from dimcollapse.analysis.similarity_measures import linear_cka
from dimcollapse.analysis.spectrum import (
    DEFAULT_ALPHA_RANGE,
    RANKME_EPS,
    Spectrum,
    analyze,
    eigenvalues_desc,
    rankme_of,
)
from dimcollapse.analysis.tables import number_cell
from dimcollapse.atomic import atomic_path, write_text
from dimcollapse.data.interventions import INTERVENTIONS, ORIGINAL, intervened_space

#: Clips per streamed chunk of a time-resolved array (T′·D floats each).
CHUNK_CLIPS = 512


# --------------------------------------------------------------------------------------
# Interventions


def mean_cosine(x: np.ndarray, y: np.ndarray, *, chunk_rows: int = 4096) -> float:
    """Mean over rows of the cosine similarity of ``x[i]`` and ``y[i]`` (float64; norms
    clamped at 1e-12 as the spectrum's row normalisation, so a zero row counts 0)."""
    if x.ndim != 2 or y.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"mean cosine needs two matrices of one shape, got {x.shape} and {y.shape}")
    if len(x) == 0:
        raise ValueError("mean cosine needs at least one row")
    total = 0.0
    for s in range(0, len(x), chunk_rows):
        a = np.asarray(x[s:s + chunk_rows], dtype=np.float64)
        b = np.asarray(y[s:s + chunk_rows], dtype=np.float64)
        norms = np.maximum(np.linalg.norm(a, axis=1), NORM_EPS) * np.maximum(np.linalg.norm(b, axis=1), NORM_EPS)
        total += float(np.sum(np.einsum("ij,ij->i", a, b) / norms))
    return total / len(x)


def intervention_measures(original: np.ndarray, intervened: np.ndarray) -> dict[str, float]:
    """Linear CKA and mean cosine of a space and its intervened twin (same rows)."""
    if original.shape[0] != intervened.shape[0]:
        raise ValueError(f"{original.shape[0]} rows against {intervened.shape[0]}: an intervened space has the "
                         "original's rows")
    try:
        cka = linear_cka(original, intervened)
    except ValueError:  # a constant space: CKA undefined
        cka = math.nan
    return {"linear_cka": cka, "mean_cosine": mean_cosine(original, intervened)}


# --------------------------------------------------------------------------------------
# Time-resolved spaces


def _check_time_resolved(x: np.ndarray) -> None:
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"a time-resolved space is N × T′ × D, got shape {x.shape}")


def _chunks(x: np.ndarray, chunk_clips: int) -> Iterable[np.ndarray]:
    for s in range(0, len(x), chunk_clips):
        yield np.asarray(x[s:s + chunk_clips], dtype=np.float64)


def _deviations(block: np.ndarray) -> np.ndarray:
    """Each time step minus its clip's mean, computed from differences to the clip's first
    step: exactly zero when a clip's steps are equal (a plain mean can round off zero)."""
    d = block - block[:, :1]
    return d - d.mean(axis=1, keepdims=True)


def within_clip_scatter(x: np.ndarray, *, chunk_clips: int = CHUNK_CLIPS) -> tuple[np.ndarray, float]:
    """Σᵢₜ (Xᵢₜ − X̄ᵢ)(Xᵢₜ − X̄ᵢ)ᵀ (D × D) and its trace, the within-clip sum of squares."""
    _check_time_resolved(x)
    d = x.shape[2]
    scatter = np.zeros((d, d))
    for block in _chunks(x, chunk_clips):
        dev = _deviations(block).reshape(-1, d)
        scatter += dev.T @ dev
    return scatter, float(np.trace(scatter))


def _between_clips(x: np.ndarray, chunk_clips: int) -> float:
    """T′ · Σᵢ ‖X̄ᵢ − X̄‖² (two passes: the grand mean, then the sum)."""
    n, t, d = x.shape
    grand = np.zeros(d)
    for block in _chunks(x, chunk_clips):
        grand += block.mean(axis=1).sum(axis=0)
    grand /= n
    between = 0.0
    for block in _chunks(x, chunk_clips):
        between += float(np.sum((block.mean(axis=1) - grand) ** 2))
    return t * between


def temporal_share(x: np.ndarray, *, chunk_clips: int = CHUNK_CLIPS) -> float:
    """Within-clip sum of squares over the total (see the module docstring); NaN when every
    vector is the same (no variance to share). Exactly 0 when no clip changes over time."""
    _check_time_resolved(x)
    within = sum(float(np.sum(_deviations(b) ** 2)) for b in _chunks(x, chunk_clips))
    return _share(within, _between_clips(x, chunk_clips))


def _share(within: float, between: float) -> float:
    total = within + between  # the total sum of squares splits exactly into the two
    return within / total if total > 0 else math.nan


def scatter_rankme(scatter: np.ndarray, eps: float = RANKME_EPS) -> float:
    """RankMe of a scatter matrix SᵀS: exp of the entropy of p_k = σ_k / Σσ + ε, σ_k = √λ_k;
    NaN for a zero matrix (no variation: nothing to count)."""
    lam, _ = eigenvalues_desc(np.asarray(scatter, dtype=np.float64))  # round-off set to 0, as the spectrum does
    return math.nan if lam[0] <= 0 else rankme_of(lam, eps)


def clip_means(x: np.ndarray, *, chunk_clips: int = CHUNK_CLIPS) -> np.ndarray:
    """X̄ᵢ, N × D float64."""
    _check_time_resolved(x)
    return np.concatenate([block.mean(axis=1) for block in _chunks(x, chunk_clips)])


def time_resolved_measures(
    x: np.ndarray, *, normalize: bool = True, alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
) -> tuple[dict[str, Any], dict[str, Spectrum]]:
    """The time-resolved columns of one space, and the spectra of its time steps and clip means.

    ``normalize``: L2-normalise rows for the two spectra, as the spectrum rule does (the
    share and the within-clip RankMe use the features as extracted).
    """
    import warnings

    from dimcollapse.analysis.spectrum import RankLimitedWarning

    _check_time_resolved(x)
    n, t, d = x.shape
    scatter, within = within_clip_scatter(x)
    with warnings.catch_warnings():  # N·T′ or N ≤ D is reported by the columns, not warned per space
        warnings.simplefilter("ignore", RankLimitedWarning)
        spectra = {"time_steps": analyze(x.reshape(n * t, d), normalize, alpha_range=alpha_range),
                   "clip_means": analyze(clip_means(x), normalize, alpha_range=alpha_range)}
    columns = {
        "timesteps": t,
        "temporal_share": _share(within, _between_clips(x, CHUNK_CLIPS)),
        "within_clip_rankme": scatter_rankme(scatter),
        "timestep_rankme": spectra["time_steps"].rankme,
        "timestep_auc": spectra["time_steps"].auc,
        "clip_mean_rankme": spectra["clip_means"].rankme,
        "clip_mean_auc": spectra["clip_means"].auc,
    }
    return columns, spectra


# --------------------------------------------------------------------------------------
# The table of a dataset

#: Columns of ``results/temporal/<dataset>.csv``: one row per instance, space and frame order.
TEMPORAL_COLUMNS = (
    "dataset", "method", "label", "space", "frame_order", "n_samples", "dim", "linear_cka", "mean_cosine",
    "rankme", "auc_sigma", "twonn", "knn_accuracy", "linear_accuracy", "timesteps", "temporal_share",
    "within_clip_rankme", "timestep_rankme", "timestep_auc", "clip_mean_rankme", "clip_mean_auc",
)
#: Columns of the spectra file beside it (``results/temporal/<dataset>.spectra.csv``).
SPECTRA_COLUMNS = ("dataset", "method", "space", "vectors", "index", "eigenvalue")
#: Time-resolved columns that ``results/metrics.csv`` and the probe table take over.
TIME_METRICS = ("temporal_share", "within_clip_rankme", "timestep_rankme", "timesteps")


def temporal_rows(
    dataset: str,
    plan: Mapping[str, Mapping[str, Sequence[str]]],
    labels: Mapping[str, str],
    *,
    features: Callable[[str, str], np.ndarray],
    metrics: Callable[[str, str], Mapping[str, Any]],
    probes: Callable[[str, str], Mapping[str, Any] | None],
    time_resolved: Callable[[str, str], np.ndarray],
    normalize: bool = True,
    alpha_range: tuple[int, int] = DEFAULT_ALPHA_RANGE,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the temporal table and of its spectra file for one dataset.

    ``plan``: instance → ``spaces``, ``orders`` (frame orders) and ``time_resolved`` (spaces),
    as :func:`dimcollapse.config.temporal.temporal_plan` gives it. The loaders take
    ``(instance, space)``: ``features`` the N × D matrix, ``metrics`` its spectrum rule's
    row, ``probes`` its probe row (None without probes), ``time_resolved`` the N × T′ × D array.
    """
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for method, entry in plan.items():
        for space in entry["spaces"]:
            orders = list(entry["orders"])
            if not orders and space not in entry["time_resolved"]:
                continue
            original = features(method, space) if orders else None
            for order in (ORIGINAL, *orders):
                name = intervened_space(space, order)
                row: dict[str, Any] = {"dataset": dataset, "method": method, "label": labels.get(method, method),
                                       "space": space, "frame_order": order}
                m = metrics(method, name)
                row.update({k: m.get(k) for k in ("n_samples", "dim", "rankme", "auc_sigma", "twonn")})
                probe = probes(method, name) or {}
                row.update({k: probe.get(k) for k in ("knn_accuracy", "linear_accuracy")})
                if order != ORIGINAL:
                    assert original is not None  # read whenever there are orders
                    row.update(intervention_measures(original, features(method, name)))
                elif space in entry["time_resolved"]:
                    columns, spectra = time_resolved_measures(time_resolved(method, space), normalize=normalize,
                                                              alpha_range=alpha_range)
                    row.update(columns)
                    for vectors, spec in spectra.items():
                        curves += [{"dataset": dataset, "method": method, "space": space, "vectors": vectors,
                                    "index": k, "eigenvalue": float(v)} for k, v in enumerate(spec.cov_eigenvalues)]
                rows.append(row)
    return rows, curves


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Rows under ``columns`` (empty cells for missing or NaN values), atomically."""
    with atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in columns])


def read_temporal_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A temporal table back, numbers as floats (empty cells None)."""
    text_columns = {"dataset", "method", "label", "space", "frame_order"}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(TEMPORAL_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a temporal table, missing columns {sorted(missing)}")
        return [{k: v if k in text_columns else (float(v) if v != "" else None) for k, v in r.items()} for r in reader]


def metric_columns(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The columns a temporal table adds to ``results/metrics.csv`` and the probe table, by
    (dataset, instance, space): ``cka_<order>`` and ``cosine_<order>`` per frame order, and
    the time-resolved :data:`TIME_METRICS`."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        columns = out.setdefault((str(r["dataset"]), str(r["method"]), str(r["space"])), {})
        order = r["frame_order"]
        if order == ORIGINAL:
            columns.update({k: r[k] for k in TIME_METRICS if r.get(k) is not None})
        else:
            columns.update({f"cka_{order}": r.get("linear_cka"), f"cosine_{order}": r.get("mean_cosine")})
    return out


def table_metric_columns(paths: Iterable[str | os.PathLike[str]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """:func:`metric_columns` of the temporal tables at ``paths``, together."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        out.update(metric_columns(read_temporal_csv(path)))
    return out


#: Per frame order, the metrics-table columns :func:`metric_columns` writes.
INTERVENTION_METRICS = tuple(f"{kind}_{order}" for kind in ("cka", "cosine") for order in INTERVENTIONS)


def _pair(row: Mapping[str, Any], original: Mapping[str, Any], key: str, digits: int, scale: float = 1.0) -> str:
    """``value (value with the original frames)`` of one column."""
    shown = [None if v is None else scale * float(v) for v in (row.get(key), original.get(key))]
    return f"{number_cell(shown[0], digits)} ({number_cell(shown[1], digits)})"


def temporal_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The temporal table for reading: interventions, then time-resolved spaces, with notes."""
    lines = ["# Does the model use time?", ""]
    orders = [r for r in rows if r["frame_order"] != ORIGINAL]
    if orders:
        originals = {(r["method"], r["space"]): r for r in rows if r["frame_order"] == ORIGINAL}
        lines += ["## Frame-order interventions", "",
                  "| Model | Space | Frames | Linear CKA | Mean cosine | RankMe (original) | AUC (original) "
                  "| TwoNN (original) | k-NN % (original) | Linear % (original) |", "|" + "---|" * 10]
        for r in orders:
            o = originals.get((r["method"], r["space"]), {})
            lines.append(f"| {r['label']} | {r['space']} | {r['frame_order']} | "
                         f"{number_cell(r.get('linear_cka'), 4)} | {number_cell(r.get('mean_cosine'), 4)} | "
                         f"{_pair(r, o, 'rankme', 1)} | "
                         f"{_pair(r, o, 'auc_sigma', 3)} | {_pair(r, o, 'twonn', 1)} | "
                         f"{_pair(r, o, 'knn_accuracy', 1, 100)} | {_pair(r, o, 'linear_accuracy', 1, 100)} |")
        lines += ["", "Linear CKA and mean cosine compare each clip's features with its original-order features: "
                  "1 = the change of frame order changed nothing. reversed: frames in reverse order; shuffled: a "
                  "permutation seeded by each clip's store key; frozen: the middle frame repeated.", ""]
    resolved = [r for r in rows if r["frame_order"] == ORIGINAL and r.get("temporal_share") is not None]
    if resolved:
        lines += ["## Time-resolved spaces", "",
                  "| Model | Space | T′ | Temporal share | RankMe within clips | RankMe of time steps (N·T′) "
                  "| RankMe of clip means (N) | AUC time steps | AUC clip means |", "|" + "---|" * 9]
        for r in resolved:
            lines.append(f"| {r['label']} | {r['space']} | {int(float(r['timesteps']))} | "
                         f"{number_cell(r['temporal_share'], 4)} | {number_cell(r.get('within_clip_rankme'), 1)} | "
                         f"{number_cell(r.get('timestep_rankme'), 1)} | {number_cell(r.get('clip_mean_rankme'), 1)} | "
                         f"{number_cell(r.get('timestep_auc'), 3)} | {number_cell(r.get('clip_mean_auc'), 3)} |")
        lines += ["", "Temporal share: variance within clips (over time steps) over the total; 0 = every time step "
                  "of a clip is the same (temporal collapse). RankMe within clips: directions the features move in "
                  "over time.", ""]
    return "\n".join(lines)


def write_temporal_markdown(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    write_text(path, temporal_markdown(rows))


__all__ = ["INTERVENTION_METRICS", "SPECTRA_COLUMNS", "TEMPORAL_COLUMNS", "TIME_METRICS", "clip_means",
           "intervention_measures", "mean_cosine", "metric_columns", "read_temporal_csv", "scatter_rankme",
           "table_metric_columns",
           "temporal_markdown", "temporal_rows", "temporal_share", "time_resolved_measures", "within_clip_scatter",
           "write_csv", "write_temporal_markdown"]
