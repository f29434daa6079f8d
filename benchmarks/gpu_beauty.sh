#!/usr/bin/env bash
# Beauty FAME + SASRec to convergence on CUDA (bf16 autocast: famekit.training turns it on
# for every CUDA device), with epoch times and test metrics. One prepared script for a short
# session on a GPU machine (<= 10 minutes including its start); run from the repo root:
#   FAMEKIT_SHARED_DATA=../shared/data bash benchmarks/gpu_beauty.sh [OUT]
# It first checks CPU/CUDA loss agreement on real batches (gpu_check.py, 1 epoch), then trains
# both models with the Beauty recipe (benchmarks/reproduce.py, seed 0) into runs/gpu/ and writes
# the table to OUT (default reports/benchmarks/gpu/). Exits 2 without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-reports/benchmarks/gpu}
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)' || {
  echo "gpu_beauty.sh: no CUDA device (torch.cuda.is_available() is False)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/gpu_check.py --epochs 1
# each run's metrics.csv has per-epoch train/eval seconds; the table has the test metrics
time "$PY" benchmarks/reproduce.py --datasets beauty --models popularity sasrec fame --seeds 0 \
    --device cuda --threads 4 --runs-dir runs/gpu --out "$OUT"
for kind in sasrec fame; do
  echo "== $kind: epochs, mean train s/epoch, mean eval s"
  "$PY" - "runs/gpu/beauty-$kind-seed0/metrics.csv" <<'PY'
import sys, pandas as pd
h = pd.read_csv(sys.argv[1])
print(len(h), round(h["train_seconds"].mean(), 2), round((h["seconds"] - h["train_seconds"]).mean(), 2))
PY
done
cat "$OUT/results.md"
