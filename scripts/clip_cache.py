"""Script of rule `clip_cache`: see dimcollapse.stages.data.clip_cache."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import data

    data.clip_cache(snakemake)  # noqa: F821
