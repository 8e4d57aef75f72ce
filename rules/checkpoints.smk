# Pretrained weights: each configured checkpoint is fetched once into
# resources/checkpoints/<instance>/<file> (download with resume and SHA-256 check, or a
# copy of a local file) with a JSON sidecar recording its hash.


rule download_checkpoint:
    output:
        checkpoint="resources/checkpoints/{method}/{filename}",
        sidecar="resources/checkpoints/{method}/{filename}.json",
    params:
        source=checkpoint_source,
        sha256=lambda w: MODELS[w.method].sha256,
    log:
        "logs/download_checkpoint/{method}/{filename}.log",
    benchmark:
        "results/benchmarks/download_checkpoint/{method}/{filename}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    retries: 2
    conda:
        ENVS["extract"]
    script:
        "../scripts/download_checkpoint.py"
