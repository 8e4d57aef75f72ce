"""Script of rule `overview`: see dimcollapse.stages.overview."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.overview(snakemake)  # noqa: F821
