"""Script of rule `merge_features`: see dimcollapse.stages.merge_features."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.merge_features(snakemake)  # noqa: F821
