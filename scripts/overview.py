"""Script of rule `overview`: see dimcollapse.stages.analysis.overview."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import analysis

    analysis.overview(snakemake)  # noqa: F821
