"""Metric-trend figures: layer-wise (depth) and checkpoint series (training progress)."""

from __future__ import annotations

import numpy as np
import pytest

from dimcollapse.analysis.trends import TREND_METRICS, layer_figure, series_figure


def _row(label: str, method: str, space: str, auc: float, rankme: float, alpha: float,
         limited: bool = False) -> dict:
    return {"label": label, "method": method, "space": space, "auc_sigma": auc, "rankme": rankme,
            "alpha_req": alpha, "rank_limited": limited}


def _line_data(ax) -> list[tuple[list[float], list[float]]]:
    """(x, y) of the connecting lines of a panel (markers are separate 1-point artists)."""
    return [(list(l.get_xdata()), list(l.get_ydata())) for l in ax.get_lines() if len(l.get_xdata()) > 1]


def test_layer_figure_places_spaces_by_relative_depth() -> None:
    rows = [
        _row("A", "a", "layer.s1", 0.9, 10, 0.5), _row("A", "a", "layer.s2", 0.8, 20, 0.7),
        _row("A", "a", "representation", 0.7, 30, 0.9),
        _row("B", "b", "layer.x", 0.6, 5, 1.1), _row("B", "b", "representation", 0.5, 6, 1.3, limited=True),
    ]
    fig = layer_figure(rows, {"A": ["layer.s1", "layer.s2", "representation"], "B": ["layer.x", "representation"]},
                       colors={"A": "#ff0000", "B": "#0000ff"})
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["AUC (σ-based CEV, paper)", "RankMe", "α-ReQ"]
    lines = _line_data(axes[1])  # RankMe
    assert ([0.0, 0.5, 1.0], [10.0, 20.0, 30.0]) in lines
    assert ([0.0, 1.0], [5.0, 6.0]) in lines
    # the rank-limited point is hollow, the others filled
    markers = [l for l in axes[2].get_lines() if len(l.get_xdata()) == 1]
    hollow = [l for l in markers if l.get_markerfacecolor() == "white"]
    assert len(markers) == 5 and len(hollow) == 1 and hollow[0].get_ydata()[0] == 1.3


def test_layer_figure_single_model_names_layers() -> None:
    rows = [_row("A", "a", "layer.blocks.1", 0.9, 1, 1), _row("A", "a", "representation", 0.8, 2, 2)]
    fig = layer_figure(rows, {"A": ["layer.blocks.1", "representation"]})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["blocks.1", "representation"]


def test_layer_figure_missing_row_is_an_error() -> None:
    with pytest.raises(ValueError, match="no metrics row"):
        layer_figure([_row("A", "a", "representation", 1, 1, 1)], {"A": ["layer.x", "representation"]})


def test_series_figure_orders_points_by_progress() -> None:
    rows = [
        _row("S@200", "s@200", "representation", 0.6, 30, 1.0), _row("S@200", "s@200", "embedding", 0.5, 9, 2.0),
        _row("S@0", "s@0", "representation", 0.9, 10, 0.2), _row("S@0", "s@0", "embedding", 0.8, 3, 0.4),
        _row("S@100", "s@100", "representation", 0.7, 20, 0.6), _row("S@100", "s@100", "embedding", 0.6, 6, 1.2),
    ]
    fig = series_figure(rows, {"S": [(200, "s@200"), (0, "s@0"), (100, "s@100")]}, order_label="epoch")
    for ax, metric in zip(fig.axes, TREND_METRICS):
        assert ax.get_xlabel() == "epoch"
        lines = {l.get_linestyle(): (list(l.get_xdata()), list(l.get_ydata()))
                 for l in ax.get_lines() if len(l.get_xdata()) > 1}
        assert lines["-"][0] == [0, 100, 200]
        expected = {"auc_sigma": [0.9, 0.7, 0.6], "rankme": [10, 20, 30], "alpha_req": [0.2, 0.6, 1.0]}[metric]
        np.testing.assert_allclose(lines["-"][1], expected)
        assert lines["--"][0] == [0, 100, 200]


def test_series_figure_needs_rows_for_every_checkpoint() -> None:
    with pytest.raises(ValueError, match="no metrics rows"):
        series_figure([_row("S@0", "s@0", "representation", 1, 1, 1)], {"S": [(0, "s@0"), (5, "s@5")]})
