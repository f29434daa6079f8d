#!/usr/bin/env bash
# GPU check for a CUDA machine: CPU/CUDA loss agreement on Beauty's first batches, then 2
# epochs of FAME on CUDA with their epoch times (see gpu_check.py). Run from the repo root:
#   FAMEKIT_SHARED_DATA=../shared/data bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PY" benchmarks/gpu_check.py --epochs "${EPOCHS:-2}" "$@"
