"""Script of rule `merge_time_resolved`: see dimcollapse.stages.temporal.merge_time_resolved."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import temporal

    temporal.merge_time_resolved(snakemake)  # noqa: F821
