# Feature extraction: one job per (dataset, model instance, shard), then a merge per
# feature space that keeps the rows aligned across methods.


rule extract:
    input:
        unpack(extract_input),
    output:
        "results/features/{dataset}/{method}/shards/{shard}-of-{nshards}.npz",
    params:
        job=extraction_params,
        # Not the derived code version every other rule carries (dimcollapse/code_versions.py),
        # on purpose: a change that keeps the numbers reruns no GPU job (see
        # dimcollapse/extraction/numerics.py); the feature store is keyed by it too.
        numerics=NUMERICS_VERSION,
        max_rel_error=EXTRACTION["max_rel_error"],
    log:
        "logs/extract/{dataset}/{method}/{shard}-of-{nshards}.log",
    benchmark:
        "results/benchmarks/extract/{dataset}/{method}/{shard}-of-{nshards}.tsv"
    threads: EXTRACTION["threads"]
    resources:
        gpu=gpu_jobs(),
        mem_mb=8000,
        runtime=720,
        **EXTRACTION_RUN,
    conda:
        ENVS["extract"]
    script:
        "../scripts/extract.py"


rule merge_features:
    input:
        shards=lambda w: shard_files(w.dataset, w.method, frame_order(w)),
        index="results/features/{dataset}/index.csv",
        manifest="results/manifests/{dataset}.csv",
    output:
        features="results/features/{dataset}/{method}/{space}.npy",
        sidecar="results/features/{dataset}/{method}/{space}.json",
        **VIEWS_OUTPUT,
    params:
        job=extraction_params,
        code=stage_code("merge_features"),
    log:
        "logs/merge_features/{dataset}/{method}/{space}.log",
    benchmark:
        "results/benchmarks/merge_features/{dataset}/{method}/{space}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENVS["extract"]
    script:
        "../scripts/merge_features.py"
