"""Figures: structure read back from the Figure objects, colours, saving."""

from __future__ import annotations

import warnings

import matplotlib.image
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from dimcollapse.analysis.figures import (
    CEV_LABEL,
    LOG_LABEL,
    NORMALIZED_RANK_LABEL,
    RANK_LABEL,
    method_colors,
    metrics_figure,
    overview_figure,
    save_figure,
    spectrum_figure,
)
from dimcollapse.analysis.tables import SpectrumCurves, metrics_row
from dimcollapse.analysis.spectrum import RankLimitedWarning, analyze


def spec(n: int, d: int, seed: int, rank: int | None = None, **kwargs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.linspace(1, 0.05, d) + 0.2
    if rank is not None:
        x[:, rank:] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankLimitedWarning)
        return analyze(x.astype(np.float32), **kwargs)


@pytest.fixture(scope="module")
def dataset_a():
    # the paper's layout: three SSL methods with embeddings, a supervised model without
    return {
        "SimCLR": {"representation": spec(200, 64, 1, rank=50), "embedding": spec(200, 16, 2)},
        "MoCo": {"representation": spec(200, 64, 3), "embedding": spec(200, 16, 4)},
        "SwAV": {"representation": spec(200, 64, 5), "embedding": spec(200, 16, 6, rank=9)},
        "Supervised": {"representation": spec(200, 64, 7)},
    }


@pytest.fixture(scope="module")
def dataset_b():
    # fewer videos than dimensions, and only two of the methods
    return {
        "MoCo": {"representation": spec(40, 64, 8), "embedding": spec(40, 16, 9)},
        "Supervised": {"representation": spec(40, 64, 10)},
    }


COLORS = method_colors(["SimCLR", "MoCo", "SwAV", "Supervised"])


def method_of(line) -> str:
    """The method a line belongs to (curves, and the zero-eigenvalue strips of log panels)."""
    return line.get_label().removeprefix("_zero start ").removeprefix("_zero ").split(" (AUC")[0]


def line_colors(ax) -> dict[str, str]:
    colors: dict[str, set[str]] = {}
    for line in ax.get_lines():
        if line.get_label().startswith("_") and not line.get_label().startswith("_zero"):
            continue  # unlabelled guides (the base line of the zero strips)
        colors.setdefault(method_of(line), set()).add(to_hex(line.get_color()))
    assert all(len(c) == 1 for c in colors.values())
    return {m: c.pop() for m, c in colors.items()}


def curves_of(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_paper_figure_layout_labels_and_legends(dataset_a):
    fig = spectrum_figure(dataset_a, title="demo — untrained weights (demo)", colors=COLORS)
    axes = fig.get_axes()
    assert len(axes) == 4
    (rep_log, rep_cev), (emb_log, emb_cev) = axes[:2], axes[2:]
    assert [ax.get_title() for ax in axes] == ["Representation Space"] * 2 + ["Embedding Space"] * 2
    for ax in axes:
        assert ax.get_xlabel() == RANK_LABEL
    assert rep_log.get_ylabel() == emb_log.get_ylabel() == LOG_LABEL == "Log of Singular Values"
    assert rep_cev.get_ylabel() == emb_cev.get_ylabel() == CEV_LABEL == "Cumulative Explained Variance"
    assert fig.get_suptitle() == "demo — untrained weights (demo)"
    # one line per method; the model without embeddings only in the representation row
    assert [line.get_label() for line in curves_of(rep_log)] == ["SimCLR", "MoCo", "SwAV", "Supervised"]
    assert [line.get_label() for line in curves_of(emb_log)] == ["SimCLR", "MoCo", "SwAV"]
    assert len(rep_cev.get_lines()) == 4 and len(emb_cev.get_lines()) == 3
    legend = [t.get_text() for t in emb_cev.get_legend().get_texts()]
    assert legend == [f"{m} (AUC={dataset_a[m]['embedding'].auc:.2f})" for m in ("SimCLR", "MoCo", "SwAV")]
    # legends sit beside the CEV panels, off every curve; the log panels have none
    assert rep_log.get_legend() is None and emb_log.get_legend() is None
    assert emb_cev.get_legend().get_bbox_to_anchor().x0 > emb_cev.get_window_extent().x1
    # the plotted data are the spectrum's own curves, against the 0-based rank index
    line = curves_of(rep_log)[1]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(64))
    np.testing.assert_array_equal(line.get_ydata(), dataset_a["MoCo"]["representation"].log_spectrum)
    np.testing.assert_array_equal(emb_cev.get_lines()[2].get_ydata(), dataset_a["SwAV"]["embedding"].cev)


def test_y_range_shows_the_data_or_the_papers_range(dataset_a):
    fig = spectrum_figure(dataset_a, colors=COLORS)
    rep_log = fig.get_axes()[0]
    low, high = rep_log.get_ylim()
    specs = [d["representation"] for d in dataset_a.values()]
    informative = np.concatenate([s.log_spectrum[s.cov_eigenvalues > 0] for s in specs])
    assert low < informative.min() and high > informative.max()
    # SimCLR's zero eigenvalues (rank 50 of 64) are marked at the bottom, not plotted to scale
    assert low > dataset_a["SimCLR"]["representation"].log_floor + 5
    simclr = [line for line in rep_log.get_lines() if method_of(line) == "SimCLR"]
    np.testing.assert_array_equal(simclr[0].get_xdata(), np.arange(50))
    assert [line.get_xdata()[0] for line in simclr[1:]] == [50, 50]  # the zero strip starts at index 50
    assert any(t.get_text().startswith("zero eigenvalues") for t in rep_log.texts)
    paper = spectrum_figure(dataset_a, colors=COLORS, y_range="paper")
    assert paper.get_axes()[0].get_ylim() == (-25.0, 0.0)
    assert list(paper.get_axes()[0].get_yticks()) == [0, -5, -10, -15, -20, -25]
    with pytest.raises(ValueError, match="y_range"):
        spectrum_figure(dataset_a, y_range="tight")


def test_lambda_convention_and_single_row(dataset_a):
    only_rep = {m: {"representation": d["representation"]} for m, d in dataset_a.items()}
    fig = spectrum_figure(only_rep, colors=COLORS, cev="lambda")
    axes = fig.get_axes()
    assert len(axes) == 2 and axes[1].get_ylabel().endswith("(λ-based)")
    np.testing.assert_array_equal(axes[1].get_lines()[0].get_ydata(), only_rep["SimCLR"]["representation"].cev_variance)


def test_rank_limited_spectra_are_shaded_from_n_minus_1(dataset_a, dataset_b):
    fig = spectrum_figure(dataset_b, colors=COLORS)
    spans = [p for p in fig.get_axes()[0].patches if isinstance(p, Rectangle)]
    assert len(spans) == 1
    assert spans[0].get_x() == pytest.approx(39)  # index N-1 = 39 is the first forced zero
    # the x axis shows the informative range, not the 64 indices of which 25 are zero
    assert 39 < fig.get_axes()[0].get_xlim()[1] < 45
    full = spectrum_figure(dataset_a, colors=COLORS)
    assert not [p for p in full.get_axes()[0].patches if isinstance(p, Rectangle)]


def test_method_colours_are_the_same_in_every_figure(dataset_a, dataset_b):
    figs = [spectrum_figure(dataset_a, colors=COLORS), spectrum_figure(dataset_b, colors=COLORS),
            overview_figure({"a": dataset_a, "b": dataset_b}, colors=COLORS)]
    for fig in figs:
        for ax in fig.get_axes():
            for label, color in line_colors(ax).items():
                assert color == COLORS[label]
    # dataset_b lacks SimCLR and SwAV, yet MoCo keeps MoCo's colour
    assert line_colors(figs[1].get_axes()[0])["MoCo"] == COLORS["MoCo"] != method_colors(["MoCo"])["MoCo"]
    rows = [metrics_row(s, dataset=ds, method=m, space=sp)
            for ds, data in (("a", dataset_a), ("b", dataset_b)) for m, by in data.items() for sp, s in by.items()]
    bars = metrics_figure(rows, colors=COLORS)
    for ax in bars.get_axes():
        for container in ax.containers:
            assert {to_hex(p.get_facecolor()) for p in container} == {COLORS[container.get_label()]}


def test_method_colors_are_deterministic_and_distinct():
    names = [f"m{i}" for i in range(20)]
    assert method_colors(names) == method_colors(names)
    assert len(set(method_colors(names).values())) == 20
    assert method_colors(["A", "B"]) == {"A": "#1f77b4", "B": "#ff7f0e"}  # matplotlib's default cycle
    with pytest.raises(ValueError, match="unique"):
        method_colors(["A", "A"])
    with pytest.raises(ValueError, match="no colour"):
        spectrum_figure({"Other": {"representation": SpectrumCurves(5, *[np.ones(3)] * 5)}}, colors=COLORS)


def test_overview_grid_and_normalised_rank(dataset_a, dataset_b):
    fig = overview_figure({"k400": dataset_a, "hmdb51": dataset_b}, normalized_rank=True, colors=COLORS,
                          title="Overview")
    axes = fig.get_axes()
    assert len(axes) == 4  # 2 datasets × 2 spaces
    assert [ax.get_title() for ax in axes] == [
        "k400 — Representation Space", "k400 — Embedding Space",
        "hmdb51 — Representation Space", "hmdb51 — Embedding Space",
    ]
    assert [len(curves_of(ax)) for ax in axes] == [4, 3, 2, 1]
    for ax in axes[:2]:
        assert ax.get_xlabel() == NORMALIZED_RANK_LABEL
        for line in curves_of(ax):
            x = line.get_xdata()
            # 64-d and 16-d full-rank spectra both end at k/D = 1 (rank-limited ones earlier)
            assert x[0] > 0 and (x[-1] == pytest.approx(1.0) or line.get_label() in ("SimCLR", "SwAV"))
    # N = 40 < D = 64: the curve ends at its last non-zero eigenvalue, index N-2
    assert curves_of(axes[2])[0].get_xdata()[-1] == pytest.approx(39 / 64)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["SimCLR", "MoCo", "SwAV", "Supervised"]
    assert fig.get_suptitle() == "Overview"
    cev = overview_figure({"k400": dataset_a}, quantity="cev", colors=COLORS)
    assert cev.get_axes()[0].get_ylabel() == CEV_LABEL
    assert cev.get_axes()[0].get_xlabel() == RANK_LABEL
    np.testing.assert_array_equal(cev.get_axes()[1].get_lines()[0].get_ydata(), dataset_a["SimCLR"]["embedding"].cev)


def test_overview_marks_empty_panels(dataset_a):
    only_rep = {m: {"representation": d["representation"]} for m, d in dataset_a.items()}
    fig = overview_figure({"a": dataset_a, "b": only_rep}, colors=COLORS)
    empty = fig.get_axes()[3]
    assert not empty.get_lines() and not empty.axison
    assert [t.get_text() for t in empty.texts] == ["no data"]


def test_metrics_chart_bars_intervals_and_hatching():
    full = spec(100, 24, 1, n_boot=5)
    limited = spec(20, 24, 2)
    rows = [
        metrics_row(full, dataset="k400", method="moco", space="representation", label="MoCo"),
        metrics_row(full, dataset="k400", method="simclr", space="representation", label="SimCLR"),
        metrics_row(limited, dataset="hmdb51", method="moco", space="representation", label="MoCo"),
    ]
    fig = metrics_figure(rows, metrics=("rankme", "auc_sigma", "alpha_req"), colors=COLORS)
    axes = fig.get_axes()
    assert len(axes) == 3  # 3 metrics × 1 space
    assert axes[0].get_title() == "RankMe — Representation Space"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["k400", "hmdb51"]
    bars = {c.get_label(): c for c in axes[0].containers}
    assert sorted(bars) == ["MoCo", "SimCLR"]
    assert [b.get_height() for b in bars["MoCo"]] == [full.rankme, limited.rankme]
    assert [bool(b.get_hatch()) for b in bars["MoCo"]] == [False, True]
    # bootstrap intervals: one vertical segment per bootstrapped bar, from low to high
    segments = [seg for coll in axes[0].collections for seg in coll.get_segments()]
    assert len(segments) == 2
    lows_highs = sorted((seg[0][1], seg[1][1]) for seg in segments)
    assert lows_highs == [full.bootstrap.intervals["rankme"]] * 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["SimCLR", "MoCo", "N ≤ D (rank-limited)"]
    with pytest.raises(ValueError, match="unknown metrics"):
        metrics_figure(rows, metrics=("accuracy",))


def test_save_writes_png_at_dpi_and_reproducible_pdf(tmp_path, dataset_b):
    fig = spectrum_figure(dataset_b, colors=COLORS)
    png, pdf = tmp_path / "fig" / "demo.png", tmp_path / "fig" / "demo.pdf"
    save_figure(fig, png, pdf, dpi=200)
    height, width = matplotlib.image.imread(png).shape[:2]
    fig_w, fig_h = fig.get_size_inches()
    assert (width, height) == (round(fig_w * 200), round(fig_h * 200))
    first = pdf.read_bytes()
    assert first.startswith(b"%PDF")
    # the same data give the same bytes (no creation date), so a rerun changes nothing
    save_figure(spectrum_figure(dataset_b, colors=COLORS), tmp_path / "again.png", pdf, dpi=200)
    assert pdf.read_bytes() == first
    assert sorted(p.name for p in png.parent.iterdir()) == ["demo.pdf", "demo.png"]  # no temporaries left


def test_probe_figure_points_colours_markers_and_rho(dataset_a):
    from dimcollapse.analysis.probe_figures import probe_figure, space_markers
    from dimcollapse.analysis.probes import ACCURACIES, CORRELATED_METRICS, metric_accuracy_correlations

    rows = []
    for i, (label, by_space) in enumerate(dataset_a.items()):
        for space, s in by_space.items():
            rows.append({"dataset": "k400", "method": label.lower(), "label": label, "space": space,
                         "auc_sigma": s.auc, "auc_lambda": s.auc_variance, "rankme": s.rankme,
                         "alpha_req": s.alpha_req, "lidar": None, "knn_accuracy": 0.1 * i + 0.05,
                         "linear_accuracy": 0.1 * i + 0.1})
    corr = metric_accuracy_correlations(rows, n_boot=100)
    fig = probe_figure(rows, corr, metrics=CORRELATED_METRICS, accuracies=ACCURACIES, colors=COLORS)
    axes = fig.get_axes()
    assert len(axes) == 2 * 4  # (k-NN, linear) × 4 metrics; LiDAR has no value and no column
    assert [ax.get_xlabel() for ax in axes[:4]] == [CORRELATED_METRICS[m] for m in
                                                     ("auc_sigma", "auc_lambda", "rankme", "alpha_req")]
    rankme_knn = axes[2]
    c = next(c for c in corr if c["metric"] == "rankme" and c["accuracy"] == "knn_accuracy" and c["scope"] == "all")
    assert rankme_knn.get_title().startswith(f"ρ = {c['spearman_rho']:+.2f} [{c['ci_low']:+.2f}, ")
    assert rankme_knn.get_title().endswith(f"n = {len(rows)}")
    points = rankme_knn.collections
    assert len(points) == len(rows)
    for coll, row in zip(points, rows):
        assert to_hex(coll.get_facecolor()[0]) == COLORS[row["label"]]
        np.testing.assert_allclose(coll.get_offsets()[0], [row["rankme"], 100 * row["knn_accuracy"]])
    assert space_markers(["embedding", "representation", "layer.x"]) == {
        "representation": "o", "embedding": "^", "layer.x": "s"}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == list(COLORS) + ["Representation Space", "Embedding Space"]


def test_probe_figure_titles_give_rho_over_all_instances_whatever_the_row_order():
    from dimcollapse.analysis.probe_figures import probe_figure

    rows = [{"dataset": "k400", "method": f"m{i}", "label": f"M{i}", "space": "representation",
             "rankme": float(i), "knn_accuracy": 0.1 * i} for i in range(4)]
    key = {"dataset": "k400", "accuracy": "knn_accuracy", "metric": "rankme", "n_points": 4}
    corr = [{**key, "scope": "all", "spearman_rho": 1.0},
            {**key, "scope": "within", "spearman_rho": -0.5}]  # a later row of another scope
    fig = probe_figure(rows, corr, metrics={"rankme": "RankMe"}, accuracies={"knn_accuracy": "k-NN"})
    assert fig.get_axes()[0].get_title().startswith("ρ = +1.00")


def test_probe_figure_without_accuracies_says_so():
    from dimcollapse.analysis.probe_figures import NO_PROBE_NOTE, probe_figure

    rows = [{"dataset": "d", "method": "m", "space": "representation", "rankme": 3.0, "knn_accuracy": None}]
    fig = probe_figure(rows, [], metrics={"rankme": "RankMe"}, accuracies={"knn_accuracy": "k-NN"})
    assert [t.get_text() for t in fig.get_axes()[0].texts] == [NO_PROBE_NOTE]


def test_sample_size_figure_means_bands_and_n_equals_d():
    from dimcollapse.analysis.probe_figures import sample_size_figure
    from dimcollapse.analysis.spectral import sample_size_curve

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16))
    curves = {"MoCo": {"representation": sample_size_curve(x, smallest=8, repeats=3)},
              "SwAV": {"representation": sample_size_curve(x * np.linspace(1, 0.1, 16), smallest=8, repeats=3)}}
    fig = sample_size_figure(curves, colors=COLORS, title="t")
    rankme_ax, auc_ax = fig.get_axes()
    moco = [line for line in rankme_ax.get_lines() if line.get_label() == "MoCo"][0]
    np.testing.assert_array_equal(moco.get_xdata(), [8, 16, 32, 64, 80])
    first = [r["rankme"] for r in curves["MoCo"]["representation"] if r["n"] == 8]
    assert moco.get_ydata()[0] == pytest.approx(np.mean(first))
    assert to_hex(moco.get_color()) == COLORS["MoCo"]
    dashed = [line for line in rankme_ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [16]  # N = D
    assert rankme_ax.get_xscale() == "log" and auc_ax.get_ylabel().startswith("AUC")
    assert len(rankme_ax.collections) == 2  # a min-max band per method


def test_probe_figure_wraps_many_metrics_onto_rows_of_five():
    from dimcollapse.analysis.probe_figures import PROBE_PANELS_PER_ROW, probe_figure

    metrics = {f"m{i}": f"Metric {i}" for i in range(7)}
    rows = [{"dataset": "d", "method": f"x{j}", "space": "representation", "knn_accuracy": 0.1 * j,
             **{m: float(i * j) for i, m in enumerate(metrics)}} for j in range(4)]
    fig = probe_figure(rows, [], metrics=metrics, accuracies={"knn_accuracy": "k-NN"})
    axes = fig.get_axes()
    assert PROBE_PANELS_PER_ROW == 5 and len(axes) == 2 * 5
    shown = [ax for ax in axes if ax.axison]
    assert [ax.get_xlabel() for ax in shown] == list(metrics.values())
    assert [ax.get_ylabel().split("\n")[0] for ax in shown if ax.get_ylabel()] == ["d", "d"]
