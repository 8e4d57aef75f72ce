"""Script of rule `metrics`: see dimcollapse.stages.metrics."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.metrics(snakemake)  # noqa: F821
