"""Script of rule `series_figure`: see dimcollapse.stages.trends.series_figure."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import trends

    trends.series_figure(snakemake)  # noqa: F821
