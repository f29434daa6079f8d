#!/usr/bin/env bash
# Beauty FAME + SASRec to convergence on CUDA (bf16 autocast: famekit.training turns it on
# for every CUDA device), with epoch times and test metrics beside the committed CPU runs.
# One prepared script for a short session on a GPU machine (<= 10 minutes including its start).
#
# It needs a python3 with torch (CUDA), numpy, pandas, safetensors and tqdm; famekit comes from
# this tree (PYTHONPATH), so no virtual environment is needed. Beauty's files are read from
# FAMEKIT_SHARED_DATA (a folder holding beauty/), served through the loopback mirror so that the
# normal fetch path (sha256 checks, join, cache) runs. On a machine without ../shared, copy them
# into the git-ignored .gpu-data/ first:
#   mkdir -p .gpu-data && cp -r ../shared/data/beauty .gpu-data/
#   FAMEKIT_SHARED_DATA=.gpu-data bash benchmarks/gpu_beauty.sh [OUT]
# Steps: fill the cache (warm_cache.py); CPU/CUDA loss agreement on real batches and 1 epoch
# (gpu_check.py; a disagreement is reported and the exit status says so, but the runs still go
# on); both models with the Beauty recipe (reproduce.py, seed 0) into runs/gpu/; the table to
# OUT (default reports/benchmarks/gpu/) with a comparison against the CPU runs of
# reports/benchmarks/runs.csv. Exits 2 without CUDA, 1 when the loss check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-reports/benchmarks/gpu}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)' && rc=0 || rc=$?
if [ "$rc" -ne 0 ]; then
  [ "$rc" -eq 2 ] && echo "gpu_beauty.sh: no CUDA device (torch.cuda.is_available() is False)" >&2
  exit "$rc"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
"$PY" benchmarks/warm_cache.py beauty
check=0
"$PY" benchmarks/gpu_check.py --epochs 1 || check=$?
start=$(date +%s)
"$PY" benchmarks/reproduce.py --datasets beauty --models popularity sasrec fame --seeds 0 \
    --device cuda --threads 4 --runs-dir runs/gpu --out "$OUT"
echo "reproduce.py: $(( $(date +%s) - start )) s for popularity, sasrec and fame"
"$PY" - "$OUT/runs.csv" reports/benchmarks/runs.csv <<'PY'
import sys
import pandas as pd

# each run's metrics.csv has per-epoch train/eval seconds; runs.csv has test metrics per run
gpu, cpu = (pd.read_csv(p, dtype={"seed": str}) for p in sys.argv[1:3])
cpu = cpu[(cpu["dataset"] == "beauty") & (cpu["seed"] == "0")]
print(f"{'model':8} {'device':6} {'epochs':>6} {'best':>5} {'s/epoch':>8} {'eval s':>7} "
      f"{'total s':>8} {'NDCG@10':>8} {'HR@10':>7}")
for kind in ("sasrec", "fame"):
    for device, table in (("cuda", gpu), ("cpu", cpu)):
        row = table[table["model"] == kind]
        if row.empty:
            print(f"{kind:8} {device:6} (no run)")
            continue
        row = row.iloc[0]
        per_epoch = eval_s = float("nan")
        if device == "cuda":
            h = pd.read_csv(f"runs/gpu/beauty-{kind}-seed0/metrics.csv")
            per_epoch = h["train_seconds"].mean()
            eval_s = (h["seconds"] - h["train_seconds"]).mean()
        print(f"{kind:8} {device:6} {int(row['epochs']):>6} {int(row['best_epoch']):>5} "
              f"{per_epoch:8.2f} {eval_s:7.2f} {row['seconds']:8.1f} "
              f"{row['NDCG@10']:8.4f} {row['HR@10']:7.4f}")
PY
cat "$OUT/results.md"
exit "$check"
