"""Probes (k-NN, linear), splits, LiDAR and metrics against sample size, each against an
independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import sqrtm

from dimcollapse.analysis.spectrum import analyze
from dimcollapse.data.datasets import official_split
from dimcollapse.analysis.spectral import lidar, sample_size_curve, sample_sizes
from dimcollapse.analysis.probes import (
    assign_split,
    fit_linear_probe,
    fit_logistic,
    knn_accuracy,
    linear_probe,
    run_probes,
    stratified_split,
)



pytestmark = pytest.mark.usefixtures("one_torch_thread")

def mixture(n_per_class: int, n_classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mixture: class means at distance ~``spread``, unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread / np.sqrt(dim)
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(size=(y.size, dim))
    return x.astype(np.float32), y


def knn_reference(train_x, train_y, test_x, k, temperature):
    """Direct numpy weighted k-NN with the full similarity matrix, in float64."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    b = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sims = b @ a.T
    classes = np.unique(train_y)
    preds = []
    for row in sims:
        top = np.argsort(-row)[:k]
        scores = [np.exp(row[top][train_y[top] == c] / temperature).sum() for c in classes]
        preds.append(classes[int(np.argmax(scores))])
    return np.array(preds)


def test_knn_matches_direct_numpy_and_chunking_changes_nothing() -> None:
    x, y = mixture(30, 5, 16, spread=3.0, seed=0)
    y = y * 7 + 3  # arbitrary label values, not 0..C-1
    roles = stratified_split(y, 0.4, seed=1)
    tr, te = roles == "train", roles == "test"
    expected = float((knn_reference(x[tr], y[tr], x[te], 20, 0.07) == y[te]).mean())
    assert 0.3 < expected < 1.0  # neither trivial nor impossible: the comparison means something
    whole = knn_accuracy(x[tr], y[tr], x[te], y[te], k=20, temperature=0.07, device="cpu")
    # a block of 3 × n_train similarities: many chunks, the last one partial
    chunked = knn_accuracy(x[tr], y[tr], x[te], y[te], k=20, temperature=0.07, device="cpu",
                           block_elements=3 * int(tr.sum()))
    assert whole == pytest.approx(expected) and chunked == pytest.approx(expected)


def test_knn_temperature_and_k_matter_as_defined() -> None:
    # one test row; 3 neighbours of class 0 slightly closer than 4 of class 1 among k=7
    train = np.array([[1, 0.10], [1, 0.11], [1, 0.12], [1, 0.3], [1, 0.31], [1, 0.32], [1, 0.33]], np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    test = np.array([[1.0, 0.0]], np.float32)
    # sharp weights: the 3 closer votes win; flat weights: the 4 votes win
    assert knn_accuracy(train, labels, test, np.array([0]), k=7, temperature=0.001, device="cpu") == 1.0
    assert knn_accuracy(train, labels, test, np.array([1]), k=7, temperature=100.0, device="cpu") == 1.0
    # k=3 sees only class 0
    assert knn_accuracy(train, labels, test, np.array([0]), k=3, temperature=100.0, device="cpu") == 1.0


def test_fit_logistic_reaches_sklearns_optimum() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = mixture(40, 4, 10, spread=2.0, seed=3)
    x = x.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    wd = 1e-2
    w, b = fit_logistic(x, y, 4, wd)
    ref = sklearn.LogisticRegression(C=1.0 / (len(y) * wd), tol=1e-10, max_iter=10_000).fit(x, y)
    ours = np.exp(x @ w + b)
    ours /= ours.sum(1, keepdims=True)
    np.testing.assert_allclose(ours, ref.predict_proba(x), atol=1e-4)


def test_fit_logistic_with_more_columns_than_rows_reaches_sklearns_optimum() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = mixture(6, 3, 40, spread=1.0, seed=7)  # 18 rows, 40 columns: fitted in an 18-d row space
    x = x.astype(np.float64)
    w, b = fit_logistic(x, y, 3, 0.1)
    ref = sklearn.LogisticRegression(C=1.0 / (len(y) * 0.1), tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(x @ w + b - (x @ w + b).mean(1, keepdims=True),
                               ref.decision_function(x) - ref.decision_function(x).mean(1, keepdims=True), atol=1e-4)
    np.testing.assert_allclose(w - w.mean(1, keepdims=True), ref.coef_.T - ref.coef_.T.mean(1, keepdims=True),
                               atol=1e-4)


def test_linear_probe_within_one_point_of_sklearn_on_a_mixture() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = mixture(300, 6, 16, spread=2.5, seed=4)
    roles = stratified_split(y, 0.3, seed=0)
    tr, te = roles == "train", roles == "test"
    res = fit_linear_probe(x[tr], y[tr], x[te], y[te], seed=0, device="cpu")
    assert linear_probe(x[tr], y[tr], x[te], y[te], seed=0, device="cpu") == res.accuracy
    mean, std = x[tr].mean(0), x[tr].std(0)
    xtr, xte = (x[tr] - mean) / std, (x[te] - mean) / std
    # scikit-learn's default (C = 1) and scikit-learn at the penalty the probe chose
    for c in (1.0, 1.0 / (tr.sum() * res.weight_decay)):
        ref_acc = sklearn.LogisticRegression(C=c, max_iter=5000).fit(xtr, y[tr]).score(xte, y[te])
        assert 0.5 < ref_acc < 0.97  # not saturated: a wrong probe would show
        assert abs(res.accuracy - ref_acc) <= 0.01 + 1e-9
    assert res.n_val == pytest.approx(0.2 * tr.sum(), abs=6)
    assert set(res.val_accuracy) == {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1}


def test_linear_probe_is_deterministic_and_picks_the_penalty_on_validation() -> None:
    x, y = mixture(30, 3, 64, spread=2.0, seed=5)  # few rows, many dims: the penalty matters
    roles = stratified_split(y, 0.3, seed=0)
    tr, te = roles == "train", roles == "test"
    a = fit_linear_probe(x[tr], y[tr], x[te], y[te], seed=2, device="cpu", weight_decays=(1e-4, 1.0, 100.0))
    b = fit_linear_probe(x[tr], y[tr], x[te], y[te], seed=2, device="cpu", weight_decays=(1e-4, 1.0, 100.0))
    assert a == b
    best = max(a.val_accuracy.values())
    assert a.val_accuracy[a.weight_decay] == best
    assert a.weight_decay == max(wd for wd, s in a.val_accuracy.items() if s == best)


def test_stratified_split_is_seeded_and_per_class() -> None:
    y = np.repeat([0, 1, 2], [10, 20, 1])
    a, b, c = stratified_split(y, 0.3, 0), stratified_split(y, 0.3, 0), stratified_split(y, 0.3, 1)
    assert (a == b).all() and not (a == c).all()
    assert [(a[y == k] == "test").sum() for k in (0, 1, 2)] == [3, 6, 0]  # a singleton class stays in train


def test_assign_split_uses_official_roles_only_when_both_sides_are_present() -> None:
    ids = ["a", "b", "c", "d"]
    y = np.array([0, 0, 1, 1])
    chosen = assign_split(ids, y, {"a": "train", "b": "test", "c": "train"}, official_name="ucf101 split 1")
    assert list(chosen.roles) == ["train", "test", "train", ""] and chosen.official
    assert "official ucf101 split 1" in chosen.description and "1 rows in neither" in chosen.description
    only_test = assign_split(ids, y, {i: "test" for i in ids}, test_fraction=0.5, seed=0)
    assert not only_test.official and "only one side" in only_test.description
    assert sorted(only_test.roles) == ["test", "test", "train", "train"]
    none = assign_split(ids, y, None, test_fraction=0.5, seed=3)
    assert "seed 3" in none.description and not none.official


def test_official_split_ids_match_the_listing(tmp_path) -> None:
    root = tmp_path / "ucf"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 Run\n2 Jump\n")
    names = {"Run": ["v_Run_g01_c01", "v_Run_g02_c01"], "Jump": ["v_Jump_g01_c01", "v_Jump_g02_c01"]}
    for cls, vids in names.items():
        (root / cls).mkdir()
        for v in vids:
            (root / cls / f"{v}.avi").write_bytes(b"")
    (lists / "trainlist01.txt").write_text("Run/v_Run_g02_c01.avi 1\r\nJump/v_Jump_g02_c01.avi 2\r\n")
    (lists / "testlist01.txt").write_text("Run/v_Run_g01_c01.avi\r\nJump/v_Jump_g01_c01.avi\r\n")
    from dimcollapse.data.datasets import list_videos

    cfg = {"layout": "ucf101", "root": str(root)}  # split "all": every video, roles from split 1
    roles, name = official_split(cfg)
    listed = [r.id for r in list_videos(cfg).records]
    assert sorted(roles) == sorted(listed)
    assert roles["Run/v_Run_g01_c01"] == "test" and roles["Jump/v_Jump_g02_c01"] == "train"
    assert "ucf101 split 1" in name
    assert official_split({"layout": "folder", "root": str(root)}) is None


def test_run_probes_reports_both_accuracies() -> None:
    x, y = mixture(20, 3, 8, spread=6.0, seed=6)
    roles = stratified_split(y, 0.5, 0)
    roles[0] = ""  # a row in neither side is left out
    out = run_probes(x, y, roles, k=5, device="cpu", weight_decays=(1e-3,))
    assert out["n_train"] + out["n_test"] == len(y) - 1
    assert out["knn_accuracy"] > 0.9 and out["linear_accuracy"] > 0.9
    with pytest.raises(ValueError, match="need training and test rows"):
        run_probes(x, y, np.full(len(y), "train", dtype=object), device="cpu")


def lidar_reference(views: np.ndarray, delta: float, eps: float) -> float:
    """LiDAR straight from the definition, float64, with scipy's matrix square root."""
    v = views.astype(np.float64)
    n, q, d = v.shape
    means = v.mean(axis=1)
    sb = np.cov(means, rowvar=False, ddof=1)
    dev = v - means[:, None]
    sw = np.einsum("nqi,nqj->ij", dev, dev) / (n * (q - 1)) + delta * np.eye(d)
    root_inv = np.linalg.inv(np.real(sqrtm(sw)))
    lam = np.clip(np.linalg.eigvalsh(root_inv @ sb @ root_inv), 0, None)
    p = lam / lam.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("delta", [1e-3, 1e-1])
def test_lidar_matches_direct_float64_definition(delta: float) -> None:
    rng = np.random.default_rng(0)
    # 5 informative directions of the class means, view noise in all 12
    means = np.zeros((50, 12))
    means[:, :5] = rng.normal(size=(50, 5)) * [3, 2, 1, 0.5, 0.2]
    views = (means[:, None, :] + 0.3 * rng.normal(size=(50, 4, 12))).astype(np.float32)
    expected = lidar_reference(views, delta, 1e-7)
    assert lidar(views, delta=delta) == pytest.approx(expected, rel=1e-9)
    assert lidar(views, delta=delta, chunk_rows=7) == pytest.approx(expected, rel=1e-9)
    assert 1.5 < expected < 5.5  # about the 5 informative directions


def test_lidar_rejects_single_views_and_nan() -> None:
    with pytest.raises(ValueError, match="at least 2 samples and 2 views"):
        lidar(np.zeros((5, 1, 3)))
    bad = np.ones((4, 2, 3))
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        lidar(bad, source="x_views.npy")


def test_sample_size_curve_subsets_are_seeded_and_end_at_all_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 20))
    assert sample_sizes(100, 10) == [10, 20, 40, 80, 100]
    rows = sample_size_curve(x, smallest=10, repeats=2, seed=0)
    assert [(r["n"], r["repeat"]) for r in rows] == [(10, 0), (10, 1), (20, 0), (20, 1), (40, 0), (40, 1),
                                                     (80, 0), (80, 1), (100, 0)]
    full = analyze(x)
    assert rows[-1]["rankme"] == pytest.approx(full.rankme) and rows[-1]["auc_sigma"] == pytest.approx(full.auc)
    assert rows[0]["rank_limited"] and not rows[-1]["rank_limited"]
    # the first subset is the seeded draw of 10 rows; below D = 20 the n × n route gives
    # analyze's numbers, with and without normalisation
    pick = np.sort(np.random.default_rng(0).choice(100, size=10, replace=False))
    ref = analyze(x[pick])
    assert rows[0]["rankme"] == pytest.approx(ref.rankme, rel=1e-10)
    assert rows[0]["auc_sigma"] == pytest.approx(ref.auc, rel=1e-10)
    assert rows[0]["auc_lambda"] == pytest.approx(ref.auc_variance, rel=1e-10)
    raw = sample_size_curve(x * 3 + 1, smallest=10, repeats=1, seed=0, normalize=False)[0]
    ref_raw = analyze((x * 3 + 1)[pick], normalize=False)
    assert (raw["rankme"], raw["auc_sigma"]) == pytest.approx((ref_raw.rankme, ref_raw.auc), rel=1e-10)
    assert rows == sample_size_curve(x, smallest=10, repeats=2, seed=0)


def test_spearman_and_its_bootstrap_interval() -> None:
    from scipy.stats import spearmanr

    from dimcollapse.analysis.probes import spearman_with_interval

    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + 0.5 * rng.normal(size=12)
    rho, low, high = spearman_with_interval(x, y, n_boot=500, seed=1)
    assert rho == pytest.approx(spearmanr(x, y).statistic)
    assert -1 <= low < rho < high <= 1
    assert (rho, low, high) == spearman_with_interval(x, y, n_boot=500, seed=1)  # seeded
    assert spearman_with_interval(x, -y, n_boot=500, seed=1)[0] == pytest.approx(-rho)
    assert all(np.isnan(v) for v in spearman_with_interval(x[:2], y[:2]))  # too few points
    assert all(np.isnan(v) for v in spearman_with_interval(x, np.ones(12)))  # constant accuracy


def test_correlations_per_dataset_skip_missing_metrics() -> None:
    from dimcollapse.analysis.probes import metric_accuracy_correlations

    rows = [{"dataset": ds, "method": f"m{i}", "space": "representation", "auc_sigma": 0.5 + i / 10,
             "auc_lambda": 0.6, "rankme": 10.0 * i, "alpha_req": None, "lidar": None,
             "knn_accuracy": i / 10 if ds == "a" else 1 - i / 10, "linear_accuracy": None}
            for ds in ("a", "b") for i in range(5)]
    corr = metric_accuracy_correlations(rows, n_boot=50)
    keys = {(c["dataset"], c["accuracy"], c["metric"]) for c in corr}
    assert keys == {(ds, "knn_accuracy", m) for ds in ("a", "b") for m in ("auc_sigma", "auc_lambda", "rankme")}
    by = {(c["dataset"], c["metric"]): c for c in corr}
    assert by[("a", "rankme")]["spearman_rho"] == pytest.approx(1.0)
    assert by[("b", "rankme")]["spearman_rho"] == pytest.approx(-1.0)
    assert np.isnan(by[("a", "auc_lambda")]["spearman_rho"]) and by[("a", "rankme")]["n_points"] == 5


def test_correlations_within_and_across_model_families() -> None:
    """A measure that only tells families apart: across families it rises with accuracy,
    within each family it falls; pooled, the families dominate."""
    from dimcollapse.analysis.probes import metric_accuracy_correlations

    rows = [{"dataset": "a", "method": f"m{f}{i}", "family": f"fam{f}", "space": "representation",
             "rankme": 10.0 * f + i, "knn_accuracy": f / 3 - i / 100, "linear_accuracy": None}
            for f in range(3) for i in range(4)]
    rows.append({**rows[0], "method": "solo", "family": "alone", "rankme": -5.0, "knn_accuracy": -0.5})  # no "within"
    corr = metric_accuracy_correlations(rows, n_boot=50)
    by = {(c["scope"], c["family"]): c for c in corr if c["metric"] == "rankme"}
    assert set(by) == {("all", ""), ("within", "fam0"), ("within", "fam1"), ("within", "fam2"), ("across", "")}
    assert by[("all", "")]["spearman_rho"] > 0.7 and by[("all", "")]["n_points"] == 13
    assert all(by[("within", f"fam{f}")]["spearman_rho"] == pytest.approx(-1.0) for f in range(3))
    assert by[("across", "")]["spearman_rho"] == pytest.approx(1.0) and by[("across", "")]["n_points"] == 4
    assert np.isnan(by[("across", "")]["ci_low"])  # 4 families: no interval
    assert np.isfinite(by[("within", "fam0")]["ci_low"])
    assert {c["scope"] for c in metric_accuracy_correlations([{k: v for k, v in r.items() if k != "family"}
                                                                for r in rows], n_boot=10)} == {"all"}


def test_markdown_shows_probe_and_lidar_columns_only_when_present() -> None:
    from dimcollapse.analysis.tables import metrics_markdown, metrics_row

    rng = np.random.default_rng(0)
    row = metrics_row(analyze(rng.normal(size=(40, 8))), dataset="d", method="m", space="representation")
    assert "k-NN" not in metrics_markdown([row])
    text = metrics_markdown([{**row, "knn_accuracy": 0.625, "linear_accuracy": 0.75, "lidar": 3.25}])
    header, _, line = text.splitlines()[:3]
    assert header.endswith("| LiDAR | k-NN acc. % | Linear acc. % |")
    assert line.endswith("| 3.2 | 62.5 | 75.0 |") and "top-1 of the probes" in text


def test_official_hmdb51_split_leaves_unused_videos_out(tmp_path) -> None:
    root = tmp_path / "hmdb"
    splits = root / "split" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("run", "jump"):
        (root / "videos" / cls).mkdir(parents=True)
        for k in range(3):
            (root / "videos" / cls / f"{cls}_{k}.avi").write_bytes(b"")
        # split 1: video 0 train, 1 test, 2 unused; split 2 swaps train and test
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_0.avi 1\n{cls}_1.avi 2\n{cls}_2.avi 0\n")
        (splits / f"{cls}_test_split2.txt").write_text(f"{cls}_0.avi 2\n{cls}_1.avi 1\n{cls}_2.avi 0\n")
    roles, name = official_split({"layout": "hmdb51", "root": str(root)})
    assert roles == {"run/run_0": "train", "run/run_1": "test", "jump/jump_0": "train", "jump/jump_1": "test"}
    assert "hmdb51 split 1" in name
    roles2, _ = official_split({"layout": "hmdb51", "root": str(root), "split": 2})
    assert roles2["run/run_0"] == "test" and "run/run_2" not in roles2


def test_probe_table_rows_join_each_probed_space_with_its_metrics() -> None:
    from dimcollapse.analysis.probes import PROBE_TABLE_COLUMNS, probe_table_rows

    key_b, key_a = ("d", "b", "representation"), ("d", "a", "representation")
    probes = {key_b: {"dataset": "d", "method": "b", "space": "representation", "knn_accuracy": 0.4},
              key_a: {"dataset": "d", "method": "a", "space": "representation", "knn_accuracy": 0.6}}
    spectra = {key_a: {"rankme": 5.0, "unlisted": 1}, key_b: {"rankme": 4.0}}
    rows = probe_table_rows(probes, spectra, {key_a: {"lidar": 2.0}}, {key_b: {"temporal_share": 0.3}},
                            labels={"a": "A", "b": "B"}, families={"a": "slow_r50", "b": "dpc"})
    assert [r["method"] for r in rows] == ["a", "b"] and all(list(r) == list(PROBE_TABLE_COLUMNS) for r in rows)
    assert (rows[0]["label"], rows[0]["family"], rows[0]["rankme"], rows[0]["lidar"]) == ("A", "slow_r50", 5.0, 2.0)
    assert (rows[1]["lidar"], rows[1]["temporal_share"], rows[1]["knn_accuracy"]) == (None, 0.3, 0.4)
