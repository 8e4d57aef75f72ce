"""Script of rule `probe_split`: see dimcollapse.stages.probes.probe_split."""

import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import probes

    probes.probe_split(snakemake)  # noqa: F821
