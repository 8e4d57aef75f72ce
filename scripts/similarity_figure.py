"""Script of rule `similarity_figure`: see dimcollapse.stages.similarity.similarity_figure."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import similarity

    similarity.similarity_figure(snakemake)  # noqa: F821
