"""Script of rule `clip_cache`: see dimcollapse.stages.clip_cache."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.clip_cache(snakemake)  # noqa: F821
