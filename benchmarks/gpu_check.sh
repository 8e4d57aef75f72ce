#!/usr/bin/env bash
# GPU check for a lent accelerator, whole in under 6 minutes on a bare GPU node: every model
# family on CUDA against the CPU, the demo workflow on the GPU against a CPU run, the uint8
# data path end to end, throughput at fp32/tf32/bf16, a Kinetics-400 projection; a summary
# last. Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                         # from the repository root
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh  # another interpreter (default .venv/bin/python, else python3)
#   bash benchmarks/gpu_check.sh --device cpu --quick    # every part at tiny sizes, on a CPU
#
# A GPU node without a package index has its own Python, torch and transformers but not av,
# pytorchvideo, snakemake, …: make a wheels folder on a machine that has the index
# (`bash ../shared/gpu/wheels.sh .whl`, about 60 MB) and bring it along as .whl (or name it
# in GPU_WHEELS); when the interpreter lacks those packages they are installed from it into
# $TMPDIR/dimcollapse-gpu-site (no network) and put first on PYTHONPATH.
#
# Without a CUDA device it says so and exits 0. GPU_CHECK_TIMEOUT (seconds, default 360)
# bounds the Python part; extra arguments go to gpu_check.py.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "gpu_check: no Python interpreter at '$PYTHON' (create the venv with 'make test', or set PYTHON=...)" >&2
    exit 1
fi

needs="import av, pytorchvideo, snakemake, skdim"
if ! "$PYTHON" -c "$needs" 2>/dev/null; then
    wheels="${GPU_WHEELS:-.whl}"
    site="${TMPDIR:-/tmp}/dimcollapse-gpu-site"
    if ! PYTHONPATH="$site" "$PYTHON" -c "$needs" 2>/dev/null; then
        if ! compgen -G "$wheels/*.whl" >/dev/null; then
            echo "gpu_check: $PYTHON lacks av, pytorchvideo, snakemake or scikit-dimension, and '$wheels' holds no" \
                 "wheels: make them with 'bash ../shared/gpu/wheels.sh $wheels' where a package index is reachable" >&2
            exit 1
        fi
        echo "gpu_check: installing $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl || exit 1
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error  # the checkpoints it writes: no progress bars

limit="${GPU_CHECK_TIMEOUT:-360}"
timeout --kill-after=10 "$limit" "$PYTHON" benchmarks/gpu_check.py "$@"
rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "gpu_check: stopped after ${limit} s (GPU_CHECK_TIMEOUT); the figures printed so far stand" >&2
fi
exit $rc
