# Collapse metrics along an axis: depth (instances with `layers:`) and training
# progress (checkpoint series). Present only when the study has such instances.


rule layer_figure:
    input:
        metrics=lambda w: [f for m in LAYERED for f in spectrum_files(w.dataset, m, "json")],
    output:
        png=report(
            "results/figures/layers/{dataset}.png",
            caption="../report/layers.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "metrics against depth"},
        ),
        pdf="results/figures/layers/{dataset}.pdf",
    params:
        trends=trend_params(),
        code=stage_code("layer_figure"),
    log:
        "logs/layer_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/layer_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/layer_figure.py"


rule series_figure:
    input:
        metrics=lambda w: [
            f for members in SERIES.values() for m in members for f in spectrum_files(w.dataset, m, "json")
        ],
    output:
        png=report(
            "results/figures/series/{dataset}.png",
            caption="../report/series.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "metrics against training progress"},
        ),
        pdf="results/figures/series/{dataset}.pdf",
    params:
        trends=trend_params(),
        code=stage_code("series_figure"),
    log:
        "logs/series_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/series_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/series_figure.py"
