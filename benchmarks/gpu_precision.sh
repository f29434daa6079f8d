#!/usr/bin/env bash
# bf16 vs fp32 on CUDA for Beauty, 3 seeds each, FAME first then SASRec: does bf16 autocast (the
# "auto" precision on CUDA) keep test NDCG@10 within one seed-std of fp32, and does a repeated
# seed give the same run? One prepared script for a GPU machine (see gpu_beauty.sh for the
# environment: a python3 with torch, famekit from this tree, Beauty under FAMEKIT_SHARED_DATA):
#   FAMEKIT_SHARED_DATA=.gpu-data bash benchmarks/gpu_precision.sh [OUT] [SECONDS]
# The small models leave the GPU mostly idle, so the runs go JOBS at a time (default 6) as
# separate processes: their accuracy is what this measures, not their speed (the epoch times of
# gpu_beauty.sh are from runs alone on the GPU). Seed 0 under "auto" comes from gpu_beauty.sh's
# table (reports/benchmarks/gpu/runs.csv) and is trained again here to check that a repeated
# seed gives the same run. Runs still going after SECONDS (default 480) are stopped; reproduce.py
# resumes them on the next call. OUT (default reports/benchmarks/gpu_precision/) gets runs.csv
# with every finished run. REPRODUCE_ARGS adds reproduce.py flags (a CPU smoke of the pipeline:
# REPRODUCE_ARGS="--device cpu --epochs 1" with the CUDA check skipped by NO_CUDA_CHECK=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-reports/benchmarks/gpu_precision}
BUDGET=${2:-480}
JOBS=${JOBS:-6}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PY OUT
export REPRODUCE_ARGS=${REPRODUCE_ARGS:-}
[ -n "${NO_CUDA_CHECK:-}" ] && rc=0 || {
  "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)' && rc=0 || rc=$?; }
if [ "$rc" -ne 0 ]; then
  [ "$rc" -eq 2 ] && echo "gpu_precision.sh: no CUDA device (torch.cuda.is_available() is False)" >&2
  exit "$rc"
fi
"$PY" benchmarks/warm_cache.py beauty
mkdir -p "$OUT/parts"
one_run() {  # MODEL SEED RUNS_DIR: one reproduce.py run with its own table folder
  local part="$OUT/parts/$(echo "$1-$2-$(basename "$3")" | tr ':=,' '---')"
  "$PY" benchmarks/reproduce.py --datasets beauty --models "$1" --seeds "$2" --device cuda \
      --threads 1 --runs-dir "$3" --out "$part" $REPRODUCE_ARGS > "$part.log" 2>&1 \
    && echo "done $1 seed $2 ($3)" || echo "stopped or failed $1 seed $2 ($3): $(tail -1 "$part.log")"
}
export -f one_run
start=$(date +%s)
printf '%s\n' \
  "fame:precision=fp32 0 runs/gpu" "fame:precision=fp32 1 runs/gpu" \
  "fame:precision=fp32 2 runs/gpu" "fame 1 runs/gpu" "fame 2 runs/gpu" "fame 0 runs/gpu-repeat" \
  "sasrec:precision=fp32 0 runs/gpu" "sasrec:precision=fp32 1 runs/gpu" \
  "sasrec:precision=fp32 2 runs/gpu" "sasrec 1 runs/gpu" "sasrec 2 runs/gpu" \
  | timeout "$BUDGET" xargs -P "$JOBS" -L 1 bash -c 'one_run "$@"' _ || true
echo "runs: $(( $(date +%s) - start )) s"
"$PY" - "$OUT" reports/benchmarks/gpu/runs.csv <<'PY'
import sys
from pathlib import Path

import pandas as pd

out, first_table = Path(sys.argv[1]), Path(sys.argv[2])
parts = []
for path in sorted(out.glob("parts/*/runs.csv")):
    part = pd.read_csv(path, dtype={"seed": str})
    part["source"] = "repeat" if path.parent.name.endswith("gpu-repeat") else "this call"
    parts.append(part)
if first_table.is_file():  # gpu_beauty.sh's seed-0 runs under "auto" (bf16 on CUDA)
    first = pd.read_csv(first_table, dtype={"seed": str})
    first = first[first["model"].isin(["sasrec", "fame"])].assign(source="gpu_beauty.sh")
    parts.append(first)
if not parts:
    raise SystemExit("no finished run")
runs = pd.concat(parts, ignore_index=True)
runs["precision"] = runs["model"].str.contains("fp32").map({True: "fp32", False: "bf16"})
runs["kind"] = runs["model"].str.split(":").str[0]
runs.to_csv(out / "runs.csv", index=False)
columns = ["kind", "precision", "seed", "source", "best_epoch", "epochs", "NDCG@10", "HR@10"]
print(runs[columns].sort_values(columns[:4]).to_string(index=False))
main = runs[runs["source"] != "repeat"]
summary = main.groupby(["kind", "precision"])["NDCG@10"].agg(["count", "mean", "std"])
print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
PY
