"""Script of rule `manifest`: see dimcollapse.stages.manifest."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.manifest(snakemake)  # noqa: F821
