"""Script of rule `extract`: see dimcollapse.stages.extract.extract."""

import os
import sys

if __name__ == "__main__":  # worker processes (spawn) re-import this file: run only once
    # Idle OpenMP threads must sleep, not spin: loader workers share the cores with the
    # model (measured by benchmarks/extract_bench.py). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821 - the package sits beside scripts/
    from dimcollapse.stages import extract

    extract.extract(snakemake)  # noqa: F821
