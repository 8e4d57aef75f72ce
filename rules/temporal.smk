# Does the model use time? Frame-order interventions (one extraction per instance, order
# and shard, whose spaces <space>@<order> are merged, analysed and probed like any other),
# time-resolved arrays <space>_time.npy beside the pooled ones, and per dataset the table
# and figure that compare them with the original frames.


# The extraction rule itself (extraction_params reads the {order} wildcard into the job), with its own
# outputs: resources, GPU requests included, are the same.
use rule extract as extract_intervened with:
    output:
        "results/features/{dataset}/{method}/shards/{order}/{shard}-of-{nshards}.npz",
    log:
        "logs/extract/{dataset}/{method}/{order}/{shard}-of-{nshards}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{method}/{order}/{shard}-of-{nshards}.tsv"


rule merge_time_resolved:
    input:
        shards=lambda w: shard_files(w.dataset, w.method),
        index="results/features/{dataset}/index.csv",
        manifest="results/manifests/{dataset}.csv",
    output:
        features="results/features/{dataset}/{method}/{space}_time.npy",
        sidecar="results/features/{dataset}/{method}/{space}_time.json",
    params:
        job=extraction_params,
        code=stage_code("merge_time_resolved"),
    log:
        "logs/merge_time_resolved/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/merge_time_resolved/{dataset}/{method}/{space}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENVS["extract"]
    script:
        "../scripts/merge_time_resolved.py"


rule temporal:
    input:
        unpack(temporal_input),
    output:
        table=report(
            "results/temporal/{dataset}.csv",
            caption="../report/temporal_table.rst",
            category="Temporal",
            labels={"dataset": "{dataset}", "table": "temporal reliance"},
        ),
        markdown="results/temporal/{dataset}.md",
        spectra="results/temporal/{dataset}.spectra.csv",
    params:
        plan=TEMPORAL_PLAN,
        labels=LABELS,
        spectrum={k: SPECTRUM[k] for k in ("normalize", "alpha_req_range")},
        code=stage_code("temporal"),
    log:
        "logs/temporal/{dataset}.log",
    benchmark:
        "results/benchmarks/temporal/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/temporal.py"


rule temporal_figure:
    input:
        table="results/temporal/{dataset}.csv",
        spectra="results/temporal/{dataset}.spectra.csv",
    output:
        png=report(
            "results/figures/temporal/{dataset}.png",
            caption="../report/temporal.rst",
            category="Figures",
            labels={"dataset": "{dataset}", "figure": "does the model use time"},
        ),
        pdf="results/figures/temporal/{dataset}.pdf",
    params:
        view=figure_params(),
        code=stage_code("temporal_figure"),
    log:
        "logs/temporal_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/temporal_figure/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENVS["analysis"]
    script:
        "../scripts/temporal_figure.py"
