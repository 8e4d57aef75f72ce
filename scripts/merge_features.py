"""Script of rule `merge_features`: see dimcollapse.stages.extract.merge_features."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import extract

    extract.merge_features(snakemake)  # noqa: F821
