# Pretrained weights: each configured checkpoint is fetched once into
# resources/checkpoints/<instance>/<file> (download with resume and SHA-256 check, or a
# copy of a local file) with a JSON sidecar recording its hash. The download retries by
# itself for a few seconds; a Snakemake-level retry would only repeat a lasting failure.
# A local file's size and mtime are a param, so a file fixed or replaced in place is copied again.

from dimcollapse.models.download import local_source_state


rule download_checkpoint:
    output:
        checkpoint="resources/checkpoints/{method}/{filename}",
        sidecar="resources/checkpoints/{method}/{filename}.json",
    params:
        source=checkpoint_source,
        local=lambda w: local_source_state(MODELS[w.method].checkpoint),
        sha256=lambda w: MODELS[w.method].sha256,
        code=stage_code("download_checkpoint"),
    log:
        "logs/download_checkpoint/{method}/{filename}.log",
    benchmark:
        "results/benchmarks/download_checkpoint/{method}/{filename}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    conda:
        ENVS["extract"]
    script:
        "../scripts/download_checkpoint.py"
