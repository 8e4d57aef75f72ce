"""Script of rule `demo_videos`: see dimcollapse.stages.demo_videos."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # the package sits beside scripts/

from dimcollapse import stages  # noqa: E402

stages.demo_videos(snakemake)  # noqa: F821
