"""Script of rule `spectrum`: see dimcollapse.stages.spectrum."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.spectrum(snakemake)  # noqa: F821
