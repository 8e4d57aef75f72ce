"""Script of rule `extract`: see dimcollapse.stages.extract."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.extract(snakemake)  # noqa: F821
