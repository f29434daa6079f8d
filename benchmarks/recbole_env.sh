#!/usr/bin/env bash
# Create the benchmark-only RecBole environment (.venv-bench), separate from famekit's .venv.
# RecBole is an outside reference for the benchmarks (reports/benchmarks/), never a famekit
# dependency.
# Pins measured on this box: recbole 1.2.1 needs numpy<2, pandas<3, setuptools<81;
# torch==2.13.0 resolves to the CPU wheel that is on this disk.
# Usage: bash benchmarks/recbole_env.sh   (idempotent; ~1-2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-bench/bin/python ]; then
  "$PY" -m venv .venv-bench
fi
.venv-bench/bin/pip install --quiet \
  "recbole==1.2.1" "numpy<2" "pandas<3" "setuptools<81" "torch==2.13.0"
# RecBole's torch.load of its own checkpoints needs this with torch>=2.6 (weights_only default).
echo "ok: .venv-bench ready; run RecBole with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"
.venv-bench/bin/python -c "import recbole, torch, numpy, pandas; print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
