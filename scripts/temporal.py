"""Script of rule `temporal`: see dimcollapse.temporal_stages.temporal."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse import temporal_stages

    temporal_stages.temporal(snakemake)  # noqa: F821
