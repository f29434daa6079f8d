"""Is training on CUDA deterministic on one machine? The same seed trained twice, per precision.

Trains FAME on Beauty for ``--epochs`` epochs twice under each precision ("fp32", "bf16") on the
same GPU and prints whether the per-epoch training losses and the final weights are bit-identical
(and the largest weight difference when they are not). Beauty comes as in gpu_check.py. Exits 2
without CUDA.

    FAMEKIT_SHARED_DATA=.gpu-data PYTHONPATH=. python3 benchmarks/gpu_determinism.py --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import _load_beauty


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms(True) first (needs "
                             "CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment)")
    args = parser.parse_args()
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    from famekit.checkpoints import load_run
    from famekit.training import train

    data = _load_beauty()
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            runs = []
            for attempt in range(2):
                out = Path(tmp) / f"{precision}-{attempt}"
                result = train(data, kind="fame", out_dir=out, epochs=args.epochs, seed=0,
                               device="cuda", progress=False, dropout=0.5, precision=precision,
                               loss_weighting="target")
                weights = load_run(out, dataset=data, device="cpu").model.state_dict()
                runs.append(([row["train_loss"] for row in result.history], weights))
            (loss_a, w_a), (loss_b, w_b) = runs
            largest = max(float((w_a[k].float() - w_b[k].float()).abs().max()) for k in w_a)
            print(f"{precision}: losses {'identical' if loss_a == loss_b else 'differ'} "
                  f"({loss_a[-1]:.6f} vs {loss_b[-1]:.6f}); weights "
                  f"{'identical' if largest == 0 else f'differ (largest {largest:.2e})'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
