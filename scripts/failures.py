"""Script of rule `failures`: see dimcollapse.stages.failures."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.failures(snakemake)  # noqa: F821
