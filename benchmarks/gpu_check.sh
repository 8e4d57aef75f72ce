#!/usr/bin/env bash
# GPU check for a lent accelerator (an H100), under 7 minutes: throughput of every model at
# fp32 and bf16, the bf16-vs-fp32 error, end to end on the demo set, peak GPU memory; a
# short table last. Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                         # from the repository root
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh  # another interpreter (default .venv/bin/python)
#   bash benchmarks/gpu_check.sh --device cpu --quick    # its logic on CPU at tiny sizes
#
# Without a CUDA device it says so and exits 0. GPU_CHECK_TIMEOUT (seconds, default 400)
# bounds the whole run; extra arguments go to gpu_check.py.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "gpu_check: no Python interpreter at '$PYTHON' (create the venv with 'make test', or set PYTHON=...)" >&2
    exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

limit="${GPU_CHECK_TIMEOUT:-400}"
timeout --kill-after=10 "$limit" "$PYTHON" benchmarks/gpu_check.py "$@"
rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "gpu_check: stopped after ${limit} s (GPU_CHECK_TIMEOUT); the figures printed so far stand" >&2
fi
exit $rc
