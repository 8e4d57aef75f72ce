"""Downstream probes: how well a frozen feature space classifies the dataset's labels.

Two standard read-outs of a representation, used to ask whether a collapse metric
predicts downstream quality:

* :func:`knn_accuracy` — the weighted k-NN classifier of Wu et al. (2018) as DINO's
  ``eval_knn`` uses it: cosine similarity of L2-normalised rows; the ``k`` most similar
  training rows vote for their label with weight ``exp(similarity / temperature)``;
  top-1 accuracy. Test rows are processed in chunks sized so that a chunk's similarity
  block stays below :data:`KNN_BLOCK_ELEMENTS` values, so 10^5 × 10^5 never exists.
* :func:`linear_probe` (and :func:`fit_linear_probe`, which also returns the chosen
  penalty and the validation scores) — multinomial logistic regression on standardised features
  (mean and standard deviation of the training rows), fitted full-batch with L-BFGS in
  float64 (so the optimum, not the optimiser's path, decides the result) on CUDA when it
  is available. The L2 penalty (on weights, not biases; loss = mean cross-entropy +
  ``wd``/2 · ‖W‖², i.e. scikit-learn's ``C = 1 / (n · wd)``) is chosen from a grid by
  accuracy on a seeded stratified validation split of the training rows, then the model
  is refitted on all training rows.

Splits (:func:`stratified_split`, :func:`assign_split`): datasets with an official
train/test split (UCF101, HMDB51) use it; any other gets a seeded stratified split, and
the returned description says which was used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KNN_BLOCK_ELEMENTS = 1 << 25
"""Largest similarity block (test chunk × training rows) held at once: 128 MiB in float32."""

DEFAULT_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""Grid of L2 penalties searched by the linear probe (loss = mean CE + wd/2 ‖W‖²)."""

TRAIN, TEST = "train", "test"


def _device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return device


def _check_xy(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"{name}: features must be 2-D (N × D), got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name}: {y.shape[0] if y.ndim else 0} labels for {x.shape[0]} rows")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return x, y


def _encode(train_y: np.ndarray, test_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels as 0..C-1 over the union of train and test labels (C = number of classes)."""
    classes, codes = np.unique(np.concatenate([train_y, test_y]), return_inverse=True)
    return codes[: train_y.size], codes[train_y.size :], int(classes.size)


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
    *,
    device: str | None = "auto",
    block_elements: int = KNN_BLOCK_ELEMENTS,
) -> float:
    """Top-1 accuracy of the weighted k-NN classifier (Wu et al. 2018; DINO).

    Each test row takes the ``min(k, n_train)`` training rows of highest cosine
    similarity; each votes for its label with weight ``exp(sim / temperature)``; the
    class with the largest summed weight wins (ties: the smallest class in sorted label
    order). Similarities are computed in float32 blocks of at most ``block_elements``.
    """
    import torch

    train_x, train_y = _check_xy(train_x, train_y, "knn training rows")
    test_x, test_y = _check_xy(test_x, test_y, "knn test rows")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"knn: training rows have {train_x.shape[1]} columns, test rows {test_x.shape[1]}")
    if k < 1 or temperature <= 0:
        raise ValueError(f"knn: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    tr_codes, te_codes, n_classes = _encode(train_y, test_y)
    dev = _device(device)
    k = min(k, train_x.shape[0])
    train = torch.nn.functional.normalize(torch.as_tensor(train_x, dtype=torch.float32, device=dev), dim=1)
    train_labels = torch.as_tensor(tr_codes, device=dev)
    chunk = max(1, block_elements // train.shape[0])
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        block = torch.as_tensor(test_x[start : start + chunk], dtype=torch.float32, device=dev)
        sims = torch.nn.functional.normalize(block, dim=1) @ train.T
        top_sim, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(block.shape[0], n_classes, dtype=torch.float64, device=dev)
        votes.scatter_add_(1, train_labels[top_idx], torch.exp(top_sim.double() / temperature))
        pred = votes.argmax(dim=1).cpu().numpy()
        correct += int((pred == te_codes[start : start + chunk]).sum())
    return correct / test_x.shape[0]


@dataclass(frozen=True)
class LinearProbeResult:
    """Test accuracy of the linear probe and how it was obtained."""

    accuracy: float
    weight_decay: float
    """The L2 penalty chosen on the validation split."""
    val_accuracy: dict[float, float]
    """Validation accuracy of every penalty tried."""
    n_val: int
    device: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["val_accuracy"] = {repr(k): v for k, v in self.val_accuracy.items()}
        return d


def _standardise(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every column by the training rows' mean and std (constant columns: std 1)."""
    x = np.asarray(train_x, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-12] = 1.0
    return [(np.asarray(a, dtype=np.float64) - mean) / std for a in (x, *others)]


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, weight_decay: float, *, device: str = "cpu",
    max_iter: int = 200, tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: minimise mean CE + wd/2 · ‖W‖² (bias free).

    Full-batch L-BFGS in float64 from zero weights, so the result is deterministic for a
    given input. Returns ``(W, b)`` with ``W`` of shape D × C.

    With fewer rows than columns the penalised optimum lies in the rows' span (W = VᵀA
    for the right singular vectors V of ``x``; the penalty ‖W‖² equals ‖A‖² there), so the
    fit runs on the n coordinates ``x Vᵀ`` and maps back: the same optimum at n × n cost.
    """
    import torch

    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < x.shape[1]:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        w, b = fit_logistic(x @ vt.T, y, n_classes, weight_decay, device=device, max_iter=max_iter, tol=tol)
        return vt.T @ w, b
    xt = torch.as_tensor(x, dtype=torch.float64, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ weight + bias, yt) + 0.5 * weight_decay * (weight * weight).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach().cpu().numpy(), bias.detach().cpu().numpy()


def _accuracy(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(((x @ w + b).argmax(axis=1) == y).mean())


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    **options: Any,
) -> float:
    """Top-1 test accuracy of the linear probe (:func:`fit_linear_probe`'s options)."""
    return fit_linear_probe(train_x, train_y, test_x, test_y, **options).accuracy


def fit_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str | None = "auto",
    max_iter: int = 200,
) -> LinearProbeResult:
    """Test accuracy of a multinomial logistic regression on standardised features.

    The penalty is the one of ``weight_decays`` with the best accuracy on a stratified
    validation split (``val_fraction`` of each class of the training rows, drawn with
    ``seed``; ties go to the larger penalty); the final model is refitted on all
    training rows, standardised with their statistics.
    """
    train_x, train_y = _check_xy(train_x, train_y, "linear probe training rows")
    test_x, test_y = _check_xy(test_x, test_y, "linear probe test rows")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"linear probe: training rows have {train_x.shape[1]} columns, test rows {test_x.shape[1]}")
    if not weight_decays or any(wd < 0 for wd in weight_decays):
        raise ValueError(f"linear probe: weight_decays must be a non-empty list of values >= 0, got {weight_decays}")
    tr_codes, te_codes, n_classes = _encode(train_y, test_y)
    dev = _device(device)
    fit_role = stratified_split(tr_codes, val_fraction, seed)
    fit, val = fit_role == TRAIN, fit_role == TEST
    scores: dict[float, float] = {}
    if val.any():
        xf, xv = _standardise(train_x[fit], train_x[val])
        for wd in sorted(weight_decays):
            w, b = fit_logistic(xf, tr_codes[fit], n_classes, wd, device=dev, max_iter=max_iter)
            scores[float(wd)] = _accuracy(w, b, xv, tr_codes[val])
        best = max(scores.values())
        chosen = max(wd for wd, s in scores.items() if s == best)
    else:  # too few rows per class for a validation split: the middle of the grid
        chosen = float(sorted(weight_decays)[len(weight_decays) // 2])
    xtr, xte = _standardise(train_x, test_x)
    w, b = fit_logistic(xtr, tr_codes, n_classes, chosen, device=dev, max_iter=max_iter)
    return LinearProbeResult(
        accuracy=_accuracy(w, b, xte, te_codes), weight_decay=chosen, val_accuracy=scores,
        n_val=int(val.sum()), device=dev,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Seeded stratified train/test roles (``"train"``/``"test"`` per row).

    Within each class (in sorted label order) the rows are permuted with one
    ``numpy.random.default_rng(seed)`` stream and the first ``round(test_fraction · n_c)``
    go to test, but never all of a class: a class of one row stays in train.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test fraction must be in [0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    roles = np.full(labels.shape[0], TRAIN, dtype=object)
    rng = np.random.default_rng(seed)
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        n_test = min(int(round(test_fraction * rows.size)), rows.size - 1)
        roles[rng.permutation(rows)[:n_test]] = TEST
    return roles


@dataclass(frozen=True)
class SplitChoice:
    """Train/test role of every feature row and where it came from."""

    roles: np.ndarray
    description: str
    official: bool


def assign_split(
    ids: Sequence[str], labels: np.ndarray, official: Mapping[str, str] | None, *,
    official_name: str = "", test_fraction: float = 0.3, seed: int = 0,
) -> SplitChoice:
    """Use the official split when it gives the rows both train and test members.

    ``official`` maps video ids to ``"train"``/``"test"`` (others, such as HMDB51's
    unused videos, are left out of both: role ``""``). Without an official split, or
    when the rows hold only one side of it (e.g. a study of the test subset alone), the
    rows get :func:`stratified_split` and the description says so.
    """
    labels = np.asarray(labels)
    if official is not None:
        roles = np.array([official.get(i, "") for i in ids], dtype=object)
        n_train, n_test = int((roles == TRAIN).sum()), int((roles == TEST).sum())
        if n_train and n_test:
            left = len(roles) - n_train - n_test
            note = f"; {left} rows in neither (left out)" if left else ""
            return SplitChoice(roles, f"official {official_name}: {n_train} train, {n_test} test{note}", True)
    roles = stratified_split(labels, test_fraction, seed)
    why = " (the rows hold only one side of the official split)" if official is not None else ""
    return SplitChoice(
        roles,
        f"seeded stratified split{why}: seed {seed}, test fraction {test_fraction} per class, "
        f"{int((roles == TRAIN).sum())} train, {int((roles == TEST).sum())} test",
        False,
    )


def run_probes(
    features: np.ndarray, labels: np.ndarray, roles: np.ndarray, *, k: int = 20, temperature: float = 0.07,
    val_fraction: float = 0.2, seed: int = 0, weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    device: str | None = "auto", linear: bool = True, knn: bool = True,
) -> dict[str, object]:
    """Both probes on the rows of ``features`` whose role is train or test.

    Returns a flat record (accuracies as fractions in 0..1, ``None`` for a disabled probe)."""
    features, labels = _check_xy(features, labels, "probe features")
    roles = np.asarray(roles)
    if roles.shape != labels.shape:
        raise ValueError(f"probe: {roles.shape[0]} split roles for {labels.shape[0]} rows")
    tr, te = roles == TRAIN, roles == TEST
    if not tr.any() or not te.any():
        raise ValueError(f"probe: need training and test rows, got {int(tr.sum())} train, {int(te.sum())} test")
    out: dict[str, object] = {
        "n_train": int(tr.sum()), "n_test": int(te.sum()), "n_classes": int(np.unique(labels[tr | te]).size),
        "knn_k": k, "knn_temperature": temperature, "knn_accuracy": None,
        "linear_accuracy": None, "linear_weight_decay": None, "linear_val_fraction": val_fraction,
        "seed": seed, "device": _device(device),
    }
    if knn:
        out["knn_accuracy"] = knn_accuracy(features[tr], labels[tr], features[te], labels[te], k, temperature,
                                           device=device)
    if linear:
        res = fit_linear_probe(features[tr], labels[tr], features[te], labels[te], weight_decays=weight_decays,
                               val_fraction=val_fraction, seed=seed, device=device)
        out.update(linear_accuracy=res.accuracy, linear_weight_decay=res.weight_decay,
                   linear_val_accuracy=res.to_dict()["val_accuracy"])
    return out


# --------------------------------------------------------------------------------------
# Collapse metrics against probe accuracy

#: Metrics set against accuracy: metrics-table column -> axis label.
CORRELATED_METRICS = {
    "auc_sigma": "AUC (σ-based CEV, paper)",
    "auc_lambda": "AUC (λ-based CEV)",
    "rankme": "RankMe",
    "alpha_req": "α-ReQ",
    "lidar": "LiDAR",
    "twonn": "TwoNN intrinsic dimension",
    "twonn_mle": "TwoNN intrinsic dimension (MLE)",
    "gride": "GRIDE intrinsic dimension",
    "ph0": "PH₀ intrinsic dimension",
    "self_clustering": "Self-clustering",
    "uniformity": "Uniformity",
    "alignment": "Alignment",
    # temporal reliance, where the study has interventions or time-resolved spaces
    "temporal_share": "Temporal share of variance",
    "within_clip_rankme": "RankMe within clips",
    "timestep_rankme": "RankMe of time steps",
    "cka_shuffled": "CKA with shuffled frames",
    "cka_reversed": "CKA with reversed frames",
    "cka_frozen": "CKA with a frozen frame",
}
#: Probe accuracies: probes-table column -> axis label.
ACCURACIES = {"knn_accuracy": "k-NN top-1 accuracy", "linear_accuracy": "Linear probe top-1 accuracy"}


def _finite_pairs(rows: Sequence[Mapping[str, Any]], metric: str, accuracy: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(r[metric]), float(r[accuracy])) for r in rows
             if r.get(metric) is not None and r.get(accuracy) is not None
             and math.isfinite(float(r[metric])) and math.isfinite(float(r[accuracy]))]
    arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def spearman_with_interval(
    x: np.ndarray, y: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
) -> tuple[float, float, float]:
    """Spearman's ρ of paired values and a percentile bootstrap interval over the pairs.

    Resamples whose ranks are constant in x or y (ρ undefined) are dropped; with fewer
    than 3 pairs, no resamples (``n_boot=0``), or fewer than half of them defined, the
    interval is NaN.
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    nan = (math.nan, math.nan, math.nan)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = []
    for idx in picks:
        xs, ys = x[idx], y[idx]
        if np.ptp(xs) > 0 and np.ptp(ys) > 0:
            boots.append(spearmanr(xs, ys).statistic)
    if not boots or len(boots) < n_boot / 2:
        return rho, math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boots, [tail, 100 - tail])
    return rho, float(low), float(high)


MIN_FAMILIES_FOR_INTERVAL = 5
"""Fewest families for a bootstrap interval of the ``across`` correlation."""
SCOPES = ("all", "within", "across")
"""Which points a correlation pools: all of a dataset's, those of one model family
(``within``, one row per family), or one point per family, its medians (``across``)."""


def _family_medians(rows: Sequence[Mapping[str, object]], metric: str, accuracy: str) -> tuple[np.ndarray, np.ndarray]:
    by_family: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        x, y = _finite_pairs([r], metric, accuracy)
        if x.size:
            by_family.setdefault(str(r["family"]), []).append((float(x[0]), float(y[0])))
    medians = np.array([np.median(np.array(v), axis=0) for v in by_family.values()]).reshape(-1, 2)
    return medians[:, 0], medians[:, 1]


#: A feature space of a study: (dataset, instance, space).
Key = tuple[str, str, str]

PROBE_TABLE_COLUMNS = (
    "dataset", "method", "label", "family", "space", "n_samples", "dim", "rank_limited", "split", "n_train",
    "n_test", "n_classes", "knn_k", "knn_temperature", "knn_accuracy", "linear_accuracy", "linear_weight_decay",
    "auc_sigma", "auc_lambda", "rankme", "alpha_req", "lidar", "twonn", "twonn_mle", "gride", "ph0",
    "self_clustering", "uniformity", "alignment",
    # temporal reliance (results/temporal/<dataset>.csv), where the study has it
    "temporal_share", "within_clip_rankme", "timestep_rankme", "cka_reversed", "cka_shuffled", "cka_frozen",
)


CORRELATION_COLUMNS = (
    "dataset", "accuracy", "metric", "scope", "family", "n_points", "spearman_rho", "ci_low", "ci_high", "ci_level",
    "bootstrap_n", "bootstrap_seed",
)


def probe_table_rows(
    probes: Mapping[Key, Mapping[str, Any]], spectra: Mapping[Key, Mapping[str, Any]],
    lidars: Mapping[Key, Mapping[str, Any]], temporal: Mapping[Key, Mapping[str, Any]], *,
    labels: Mapping[str, str], families: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per probed (dataset, instance, space): its accuracies beside every metric of its
    spectrum JSON, its LiDAR and temporal columns where computed, its label and model family
    (columns :data:`PROBE_TABLE_COLUMNS`, sorted by dataset, instance and space)."""
    rows = []
    for key, probe_row in probes.items():
        row = {**spectra[key], **probe_row, "label": labels[key[1]], "family": families[key[1]],
               "lidar": lidars.get(key, {}).get("lidar"), **temporal.get(key, {})}
        rows.append({c: row.get(c) for c in PROBE_TABLE_COLUMNS})
    return sorted(rows, key=lambda r: (r["dataset"], r["method"], r["space"]))


def metric_accuracy_correlations(
    rows: Sequence[Mapping[str, object]], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
) -> list[dict[str, object]]:
    """Spearman's ρ between each collapse metric and each probe accuracy, per dataset.

    ``rows`` are probes-table rows (one per dataset, instance and space, with the metric
    columns). Scope ``all`` pools every space of a dataset, one point per instance and
    space. When rows carry a ``family`` (:attr:`dimcollapse.config.ModelInstance.model_family`),
    scope ``within`` gives ρ over the points of each family with at least 3 (column
    ``family``), and ``across`` ρ over one point per family (the medians of its points),
    with at least 3 families (its bootstrap interval with at least
    :data:`MIN_FAMILIES_FOR_INTERVAL`): a measure that tracks accuracy only across families
    may just tell architectures apart, not collapse within one.
    """
    out: list[dict[str, object]] = []

    def add(dataset: str, accuracy: str, metric: str, scope: str, family: str, x: np.ndarray,
            y: np.ndarray) -> None:
        # no interval across fewer families: resampling 3 or 4 points gives intervals that look certain
        boots = 0 if scope == "across" and x.size < MIN_FAMILIES_FOR_INTERVAL else n_boot
        rho, low, high = spearman_with_interval(x, y, n_boot=boots, seed=seed, level=level)
        out.append({"dataset": dataset, "accuracy": accuracy, "metric": metric, "scope": scope, "family": family,
                    "n_points": int(x.size), "spearman_rho": rho, "ci_low": low, "ci_high": high,
                    "ci_level": level, "bootstrap_n": boots, "bootstrap_seed": seed})

    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        subset = [r for r in rows if str(r["dataset"]) == dataset]
        families = list(dict.fromkeys(str(r["family"]) for r in subset if r.get("family")))
        for accuracy in ACCURACIES:
            for metric in CORRELATED_METRICS:
                x, y = _finite_pairs(subset, metric, accuracy)
                if x.size == 0:
                    continue
                add(dataset, accuracy, metric, "all", "", x, y)
                for family in families:
                    fx, fy = _finite_pairs([r for r in subset if str(r.get("family")) == family], metric, accuracy)
                    if fx.size >= 3:
                        add(dataset, accuracy, metric, "within", family, fx, fy)
                mx, my = _family_medians([r for r in subset if r.get("family")], metric, accuracy)
                if mx.size >= 3:
                    add(dataset, accuracy, metric, "across", "", mx, my)
    return out
