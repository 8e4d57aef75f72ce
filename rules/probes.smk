# Does collapse matter? Downstream probes per (dataset, instance, space) on a train/test
# split, LiDAR of multi-view features, metrics of random subsets against N, and the table
# and figures that set the collapse metrics against probe accuracy.

rule probe_split:
    input:
        index="results/features/{dataset}/index.csv",
    output:
        split="results/probes/{dataset}/split.csv",
        description="results/probes/{dataset}/split.json",
    params:
        dataset=listing_config,
        fingerprint=dataset_fingerprint,
        probes={k: PROBES[k] for k in ("seed", "test_fraction")},
        code=stage_code("probe_split"),
    log:
        "logs/probe_split/{dataset}.log",
    benchmark:
        "results/benchmarks/probe_split/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/probe_split.py"


rule probe:
    input:
        features="results/features/{dataset}/{method}/{space}.npy",
        split="results/probes/{dataset}/split.csv",
        description="results/probes/{dataset}/split.json",
    output:
        "results/probes/{dataset}/{method}/{space}.json",
    params:
        probes=PROBES,
        code=stage_code("probe"),
    log:
        "logs/probe/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/probe/{dataset}/{method}/{space}.tsv"
    threads: 2
    resources:
        gpu=probe_gpu(),
        mem_mb=8000,
        runtime=120,
    conda:
        ENVS["extract"]
    script:
        "../scripts/probe.py"


rule lidar:
    input:
        "results/features/{dataset}/{method}/{space}_views.npy",
    output:
        "results/lidar/{dataset}/{method}/{space}.json",
    params:
        delta=PROBES["lidar_delta"],
        code=stage_code("lidar"),
    log:
        "logs/lidar/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/lidar/{dataset}/{method}/{space}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/lidar.py"


rule sample_size:
    input:
        "results/features/{dataset}/{method}/{space}.npy",
    output:
        "results/sample_size/{dataset}/{method}/{space}.csv",
    params:
        sample_size=SAMPLE_SIZE,
        normalize=SPECTRUM["normalize"],
        alpha_range=SPECTRUM["alpha_req_range"],
        code=stage_code("sample_size"),
    log:
        "logs/sample_size/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/sample_size/{dataset}/{method}/{space}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/sample_size.py"


rule sample_size_figure:
    input:
        lambda w: sample_size_files(w.dataset),
    output:
        png=report(
            "results/figures/sample_size/{dataset}.png",
            caption="../report/sample_size.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "metrics against sample size"},
        ),
        pdf="results/figures/sample_size/{dataset}.pdf",
    params:
        view=figure_params(),
        code=stage_code("sample_size_figure"),
    log:
        "logs/sample_size_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/sample_size_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/sample_size_figure.py"


rule probe_table:
    input:
        metrics=study_metrics(),
        probes=probe_files(),
        lidar=lidar_files(),
        temporal=temporal_tables(),
    output:
        table=report("results/probes.csv", caption="../report/probes.rst", category="Probes"),
        correlations="results/probe_correlations.csv",
    params:
        probes={k: PROBES[k] for k in ("bootstrap", "seed")},
        labels=LABELS,
        families=FAMILIES,
        code=stage_code("probe_table"),
    log:
        "logs/probe_table.log",
    benchmark:
        "results/benchmarks/probe_table.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/probe_table.py"


rule probe_figure:
    input:
        table="results/probes.csv",
        correlations="results/probe_correlations.csv",
    output:
        png=report(
            "results/figures/probes.png",
            caption="../report/probes_figure.rst",
            category="Figures",
            labels={"dataset": "all", "figure": "metrics against probe accuracy"},
        ),
        pdf="results/figures/probes.pdf",
    params:
        view=figure_params(),
        code=stage_code("probe_figure"),
    log:
        "logs/probe_figure.log",
    benchmark:
        "results/benchmarks/probe_figure.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/probe_figure.py"
