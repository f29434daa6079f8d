"""GPU check: FAME on Beauty on CUDA agrees with the CPU and trains at a measured speed.

1. Builds one FAME model (seeded, dropout 0 so both devices compute the same function) and the
   first ``--steps`` length-bucketed training batches of Beauty; computes the loss of each batch
   on the CPU (fp32), on CUDA (fp32) and on CUDA under bf16 autocast, and checks the CUDA losses
   against the CPU's (relative tolerance 1e-4 for fp32, 2e-2 for bf16).
2. Trains ``--epochs`` epochs of FAME on CUDA with famekit.train (bf16 autocast, the default on
   CUDA) and prints the epoch times and validation NDCG@10.

Beauty comes through the loopback mirror of ../shared/data when FAMEKIT_SHARED_DATA is set
(see warm_cache.py), else from the cache. Exits 0 when every check passed, 1 otherwise, and
2 when there is no CUDA device.

    FAMEKIT_SHARED_DATA=../shared/data python benchmarks/gpu_check.py --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_beauty():
    from famekit import datasets

    shared = os.environ.get("FAMEKIT_SHARED_DATA")
    if shared and not os.environ.get("FAMEKIT_MIRROR"):
        sys.path.insert(0, str(ROOT / "tests"))
        from mirror import Mirror

        with tempfile.TemporaryDirectory() as tmp, \
                Mirror.serving_shared_data(shared, tmp).start() as server:
            os.environ["FAMEKIT_MIRROR"] = server.base_url
            try:
                return datasets.load("beauty")
            finally:
                del os.environ["FAMEKIT_MIRROR"]
    return datasets.load("beauty")


def loss_agreement(ds, steps: int) -> bool:
    from famekit.batching import NextItemBatches
    from famekit.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(n_items=ds.n_items, kind="fame", dropout=0.0, attn_dropout=0.0)
    cpu_model = build_model(cfg).train()
    gpu_model = build_model(cfg).cuda().train()
    gpu_model.load_state_dict(cpu_model.state_dict())
    batches = NextItemBatches(ds.split().train_sequences(), max_len=cfg.max_len, batch_size=256)
    ok = True
    print(f"{'batch':>5} {'cpu fp32':>10} {'cuda fp32':>10} {'cuda bf16':>10}")
    import numpy as np

    for step, rows in enumerate(batches.epoch(np.random.default_rng(0))[:steps]):
        inputs, targets = (torch.from_numpy(a) for a in batches.materialise(rows))
        with torch.no_grad():
            cpu = cpu_model(inputs, targets).item()
            gpu = gpu_model(inputs.cuda(), targets.cuda()).item()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = gpu_model(inputs.cuda(), targets.cuda()).item()
        fp32_ok = abs(gpu - cpu) <= 1e-4 * abs(cpu)
        bf16_ok = abs(bf16 - cpu) <= 2e-2 * abs(cpu)
        ok &= fp32_ok and bf16_ok
        print(f"{step:>5} {cpu:10.5f} {gpu:10.5f}{'' if fp32_ok else '!'} "
              f"{bf16:10.5f}{'' if bf16_ok else '!'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="batches compared CPU vs CUDA")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ds = _load_beauty()
    agree = loss_agreement(ds, args.steps)
    print(f"loss agreement CPU vs CUDA: {'ok' if agree else 'FAILED'}")

    from famekit.training import train

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(ds, kind="fame", out_dir=Path(tmp) / "run", epochs=args.epochs,
                       device="cuda", progress=False, dropout=0.5)
        total = time.perf_counter() - start
    for row in result.history:
        print(f"epoch {row['epoch']}: train {row['train_seconds']:.2f} s, "
              f"total {row['seconds']:.2f} s, valid NDCG@10 {row['valid_NDCG@10']:.4f}")
    print(f"{args.epochs} epochs in {total:.1f} s (incl. evaluation); "
          f"test NDCG@10 {result.test['NDCG@10']:.4f}")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
