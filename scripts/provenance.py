"""Script of rule `provenance`: see dimcollapse.stages.provenance."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.provenance(snakemake)  # noqa: F821
