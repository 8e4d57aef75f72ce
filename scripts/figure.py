"""Script of rule `figure`: see dimcollapse.stages.figure."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.figure(snakemake)  # noqa: F821
