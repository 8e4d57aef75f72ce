# Input side: demo videos -> manifest (listing + probing) -> clip cache -> failures,
# and the notes on videos used with a caveat (short, rotated).


rule demo_videos:
    output:
        "resources/demo/{dataset}.json",
    params:
        root=lambda w: config["datasets"][w.dataset]["root"],
        split=lambda w: config["datasets"][w.dataset].get("split"),
        demo=lambda w: config["datasets"][w.dataset]["demo"],
        code=stage_code("demo_videos"),
    log:
        "logs/demo_videos/{dataset}.log",
    benchmark:
        "results/benchmarks/demo_videos/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENVS["video"]
    script:
        "../scripts/demo_videos.py"


rule manifest:
    input:
        demo_input,
    output:
        manifest="results/manifests/{dataset}.csv",
        failures="results/manifests/{dataset}.failures.csv",
    params:
        dataset=listing_config,
        fingerprint=dataset_fingerprint,
        on_error=EXTRACTION["on_error"],
        code=stage_code("manifest"),
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "results/benchmarks/manifest/{dataset}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        ENVS["video"]
    script:
        "../scripts/manifest.py"


rule clip_cache:
    input:
        manifest="results/manifests/{dataset}.csv",
    output:
        # the cache directory itself is not an output: Snakemake would delete it before a
        # rerun, and a rebuild reuses the frames of unchanged videos from it
        marker="results/clips/{dataset}/{pkey}.cache.json",
        failures="results/clips/{dataset}/{pkey}.failures.csv",
    params:
        on_error=EXTRACTION["on_error"],
        protocol=lambda w: jobs.sampling_protocols(config, w.dataset)[w.pkey].to_dict(),
        code=stage_code("clip_cache"),
    log:
        "logs/clip_cache/{dataset}/{pkey}.log",
    benchmark:
        "results/benchmarks/clip_cache/{dataset}/{pkey}.tsv"
    threads: max(1, EXTRACTION["workers"])
    resources:
        mem_mb=4000,
        runtime=720,
    conda:
        ENVS["video"]
    script:
        "../scripts/clip_cache.py"


rule failures:
    input:
        manifest="results/manifests/{dataset}.csv",
        stages=stage_failures,
    output:
        failures="results/failures/{dataset}.csv",
        index="results/features/{dataset}/index.csv",
    params:
        code=stage_code("failures"),
    log:
        "logs/failures/{dataset}.log",
    benchmark:
        "results/benchmarks/failures/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENVS["video"]
    script:
        "../scripts/failures.py"


rule notes:
    input:
        manifest="results/manifests/{dataset}.csv",
        index="results/features/{dataset}/index.csv",
        shards=lambda w: [f for m in STUDY_MODELS for f in shard_files(w.dataset, m)],
    output:
        "results/failures/{dataset}.notes.csv",
    params:
        samplings=lambda w: {
            m: {"protocol": protocol(w.dataset, m).name, "sampling": protocol(w.dataset, m).sampling_key}
            for m in STUDY_MODELS
        },
        code=stage_code("notes"),
    log:
        "logs/notes/{dataset}.log",
    benchmark:
        "results/benchmarks/notes/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENVS["video"]
    script:
        "../scripts/notes.py"
