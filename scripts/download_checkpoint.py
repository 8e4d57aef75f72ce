"""Script of rule `download_checkpoint`: see dimcollapse.stages.download_checkpoint."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.download_checkpoint(snakemake)  # noqa: F821
