# Statistics and presentation: spectrum per feature matrix -> metrics table ->
# figures per dataset and overview -> report; plus the run's provenance record.

rule spectrum:
    input:
        unpack(spectrum_input),
    output:
        spectrum=report(
            "results/spectra/{dataset}/{method}/{space}.csv",
            caption="../report/spectrum.rst",
            category="Spectra",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "method": "{method}", "space": "{space}"},
        ),
        metrics="results/spectra/{dataset}/{method}/{space}.json",
    params:
        spectrum=SPECTRUM,
        geometry=GEOMETRY,
        code=stage_code("spectrum"),
    log:
        "logs/spectrum/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/spectrum/{dataset}/{method}/{space}.tsv"
    threads: 2
    resources:
        gpu=analysis_gpu(),
        analysis_device=ANALYSIS["device"],  # how, not what: the device changes no number
        mem_mb=4000,
        runtime=60,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/spectrum.py"


rule metrics:
    input:
        spectra=study_metrics(),
        lidar=lidar_files(),
        probes=probe_table_files(),
        correlations=probe_correlation_files(),
        notes=[f"results/failures/{ds}.notes.csv" for ds in DATASETS],
        temporal=temporal_tables(),
    output:
        table=report(
            "results/metrics.csv", caption="../report/metrics.rst", category="Metrics"
        ),
        markdown="results/metrics.md",
    params:
        labels=LABELS,
        code=stage_code("metrics"),
    log:
        "logs/metrics.log",
    benchmark:
        "results/benchmarks/metrics.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/metrics.py"


rule figure:
    input:
        spectra=lambda w: [f for m in STUDY_MODELS for f in spectrum_files(w.dataset, m)],
        metrics=lambda w: [f for m in STUDY_MODELS for f in spectrum_files(w.dataset, m, "json")],
    output:
        png=report(
            "results/figures/{dataset}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "spectrum and CEV"},
        ),
        pdf="results/figures/{dataset}.pdf",
    params:
        view=figure_params(),
        code=stage_code("figure"),
    log:
        "logs/figure/{dataset}.log",
    benchmark:
        "results/benchmarks/figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/figure.py"


rule id_scale_figure:
    input:
        metrics=lambda w: [f for m in STUDY_MODELS for f in spectrum_files(w.dataset, m, "json")],
    output:
        png=report(
            "results/figures/id_scale/{dataset}.png",
            caption="../report/id_scale.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "intrinsic dimension across scales"},
        ),
        pdf="results/figures/id_scale/{dataset}.pdf",
    params:
        view=figure_params(),
        gride_n1=GEOMETRY["gride_n1"],
        code=stage_code("id_scale_figure"),
    log:
        "logs/id_scale_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/id_scale_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/id_scale_figure.py"


rule overview:
    input:
        spectra=[f for ds in DATASETS for m in STUDY_MODELS for f in spectrum_files(ds, m)],
        metrics="results/metrics.csv",
    output:
        overview_png=report(
            "results/figures/overview.png",
            caption="../report/overview.rst",
            category="Figures",
            labels={"dataset": "all", "figure": "overview"},
        ),
        overview_pdf="results/figures/overview.pdf",
        metrics_png=report(
            "results/figures/metrics.png",
            caption="../report/metrics_chart.rst",
            category="Figures",
            labels={"dataset": "all", "figure": "metrics"},
        ),
        metrics_pdf="results/figures/metrics.pdf",
    params:
        view=figure_params(),
        datasets=DATASETS,
        code=stage_code("overview"),
    log:
        "logs/overview.log",
    benchmark:
        "results/benchmarks/overview.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/overview.py"


rule provenance:
    output:
        "results/provenance.json",
    params:
        config=config,
        commit=git_commit(workflow.basedir),
        code=stage_code("provenance"),
    log:
        "logs/provenance.log",
    benchmark:
        "results/benchmarks/provenance.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENVS["extract"]
    script:
        "../scripts/provenance.py"
