"""Script of rule `demo_videos`: see dimcollapse.stages.data.demo_videos."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import data

    data.demo_videos(snakemake)  # noqa: F821
