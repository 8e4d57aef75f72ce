"""Report captions: valid reStructuredText after Snakemake's Jinja2 rendering."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

jinja2 = pytest.importorskip("jinja2")
docutils_core = pytest.importorskip("docutils.core")

REPORT = Path(__file__).resolve().parent.parent / "report"
CAPTIONS = ("spectrum", "figure", "overview", "metrics_chart", "metrics", "probes", "probes_figure", "sample_size",
            "similarity", "temporal", "temporal_table", "id_scale")


def render(name: str, wildcards: dict[str, str]) -> str:
    # the same Jinja2 settings and `snakemake` object Snakemake's report uses for captions
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = (REPORT / f"{name}.rst").read_text()
    rendered = env.from_string(text).render(snakemake=SimpleNamespace(wildcards=SimpleNamespace(**wildcards)))
    # halt_level 2: any docutils warning (bad markup) raises instead of rendering
    return docutils_core.publish_parts(
        rendered, writer="html", settings_overrides={"report_level": 2, "halt_level": 2}
    )["body"]


@pytest.mark.parametrize("name", CAPTIONS)
def test_caption_is_valid_rst(name):
    html = render(name, {"dataset": "hmdb51", "method": "simclr", "space": "embedding"})
    assert len(html) > 500
    assert "{{" not in html and "{%" not in html


def test_captions_name_their_wildcards_and_conventions():
    assert "hmdb51" in render("figure", {"dataset": "hmdb51"})
    spectrum = render("spectrum", {"dataset": "ucf101", "method": "moco", "space": "representation"})
    assert all(word in spectrum for word in ("ucf101", "moco", "representation", "cev_sigma", "cev_lambda"))
    metrics = render("metrics", {})
    for column in ("auc_sigma", "auc_lambda", "rankme", "alpha_req", "participation_ratio", "stable_rank",
                   "nesum", "dims_90_lambda", "rank_limited"):
        assert column in metrics
    for name in ("figure", "spectrum", "metrics", "overview", "metrics_chart"):
        assert "N ≤ D" in render(name, {})
