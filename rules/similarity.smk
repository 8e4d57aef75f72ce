# How alike are the feature spaces? Linear and debiased CKA and mutual k-NN per dataset
# between the layers of an instance, between instances in each shared space, and between
# consecutive checkpoints of a series; one job for the tables and one for their figure per dataset.


rule similarity:
    input:
        features=lambda w: [f for m in STUDY_MODELS for f in feature_files(w.dataset, m)],
        index="results/features/{dataset}/index.csv",
    output:
        directory("results/similarity/{dataset}"),
    params:
        plan=similarity_plan(),
        similarity=SIMILARITY,
        code=stage_code("similarity"),
    log:
        "logs/similarity/{dataset}.log",
    benchmark:
        "results/benchmarks/similarity/{dataset}.tsv"
    threads: 2
    resources:
        gpu=analysis_gpu(),
        mem_mb=8000,
        runtime=60,
        analysis_device=ANALYSIS["device"],  # how, not what: the device changes no number
    conda:
        ENVS["analysis"]
    script:
        "../scripts/similarity.py"


rule similarity_figure:
    input:
        "results/similarity/{dataset}",
    output:
        png=report(
            "results/figures/similarity/{dataset}.png",
            caption="../report/similarity.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "similarity between spaces"},
        ),
        pdf="results/figures/similarity/{dataset}.pdf",
    params:
        view=figure_params(),
        code=stage_code("similarity_figure"),
    log:
        "logs/similarity_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/similarity_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/similarity_figure.py"
