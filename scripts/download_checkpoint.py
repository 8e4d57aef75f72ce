"""Script of rule `download_checkpoint`: see dimcollapse.stages.checkpoints.download_checkpoint."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import checkpoints

    checkpoints.download_checkpoint(snakemake)  # noqa: F821
