"""Peak memory of full-ranking evaluation at ML-20m size: it grows with the batch, not the users.

Builds an ML-20m-sized synthetic world (138k users, 27k items; shorter sequences than ML-20m's,
which changes the interactions, not the score matrix) and an untrained FAME (memory does not
depend on the weights), then runs :func:`famekit.evaluation.evaluate` on the test split in a
fresh child process per setting, so that no run inherits another's heap:

* batch 128 and batch 1024 on every user;
* batch 1024 on half of the users;
* with ``--malloc-check``, the same three again with glibc's mmap threshold fixed at 1 MiB
  (``MALLOC_MMAP_THRESHOLD_``): the gap to the plain runs is memory glibc keeps after tensors
  are freed (its dynamic threshold serves mid-sized tensors from a heap that fragments as the
  batch widths change), not memory famekit holds.

Each child prints its RSS before evaluating, the peak during evaluation (VmHWM of
/proc/self/status after resetting it through /proc/self/clear_refs, where Linux allows) and the
peak of the whole process (VmHWM). The score matrix of one batch is batch x (V+1) float32, about
14 MB at 128 and 110 MB at 1024; a dense users x items matrix would be 138k x 27k x 4 B = 15 GB.

    .venv/bin/python benchmarks/bench_eval_memory.py                 # ~3 minutes on 1 core
    .venv/bin/python benchmarks/bench_eval_memory.py --users 20000   # a quick look
    .venv/bin/python benchmarks/bench_eval_memory.py --malloc-check  # + the allocator's share
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "bench-eval-memory"


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS ("5" > /proc/self/clear_refs, Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args) -> None:
    """One measurement: load the saved world, build FAME, evaluate, print one JSON line."""
    import torch

    from famekit.analysis.knockouts import subsample_users
    from famekit.datasets import fetch
    from famekit.evaluation import evaluate
    from famekit.model import ModelConfig, build_model

    torch.set_num_threads(args.threads)
    arrays, meta = fetch.load_processed(NAME, "world", args.cache)
    dataset = fetch.unpack_dataset(arrays, meta)
    if args.users_fraction < 1:
        dataset = subsample_users(dataset, int(dataset.n_users * args.users_fraction), seed=0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=dataset.n_items, kind="fame", max_len=args.max_len,
                                    d_model=64, n_heads=4, n_experts=4)).eval()
    del arrays
    rss_before = status_kib("VmRSS")
    was_reset = reset_peak()
    started = time.perf_counter()
    metrics = evaluate(model, dataset, split="test", batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"users": int(metrics["users"]), "batch_size": args.batch_size,
                      "rss_before_mib": rss_before / 1024,
                      "eval_peak_mib": status_kib("VmHWM") / 1024 if was_reset else None,
                      "process_peak_mib": None if was_reset else status_kib("VmHWM") / 1024,
                      "seconds": seconds, "ndcg10": metrics["NDCG@10"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=138_000)
    parser.add_argument("--items", type=int, default=27_000)
    parser.add_argument("--max-len", type=int, default=200, help="model window (ML-20m: 200)")
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[128, 1024])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--malloc-check", action="store_true",
                        help="one more run with glibc's mmap threshold fixed at 1 MiB")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--users-fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from famekit.datasets import fetch, synthetic

    with tempfile.TemporaryDirectory(prefix="famekit-bench-") as cache:
        started = time.perf_counter()
        world = synthetic.generate(n_users=args.users, n_items=args.items, n_brands=30,
                                   mean_extra_length=10.0, max_length=60, seed=0)
        generated = time.perf_counter() - started
        print(f"world: {world.n_users:,} users, {world.n_items:,} items, "
              f"{world.n_interactions:,} interactions (mean length {world.lengths.mean():.1f}); "
              f"generated in {generated:.1f} s")
        fetch.save_processed(NAME, "world", *fetch.pack_dataset(world), cache_dir=cache)
        del world

        small, large = args.batch_sizes
        runs = [(small, 1.0, {}), (large, 1.0, {}), (large, 0.5, {})]
        if args.malloc_check:
            fixed = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
            runs += [(small, 1.0, fixed), (large, 1.0, fixed), (large, 0.5, fixed)]
        rows = []
        for batch_size, fraction, env in runs:
            done = subprocess.run(
                [sys.executable, __file__, "--child", "--cache", cache, "--batch-size",
                 str(batch_size), "--users-fraction", str(fraction), "--items", str(args.items),
                 "--max-len", str(args.max_len), "--threads", str(args.threads)],
                capture_output=True, text=True, check=False, env={**os.environ, **env})
            if done.returncode != 0:
                sys.exit(f"child failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["note"] = " ".join(f"{k}={v}" for k, v in env.items())
            rows.append(row)

    peak_key = "eval_peak_mib" if rows[0]["eval_peak_mib"] is not None else "process_peak_mib"
    print(f"FAME d=64 H=4 N=4 max_len={args.max_len}, untrained; test split, full ranking; "
          f"{args.threads} thread(s); peak = "
          f"{'VmHWM reset before evaluate' if peak_key == 'eval_peak_mib' else 'process VmHWM'}")
    print(f"{'users':>8} {'batch':>6} {'RSS before':>11} {'peak':>9} {'peak - before':>14} "
          f"{'seconds':>8} {'users/s':>8}  note")
    for row in rows:
        peak = row[peak_key]
        print(f"{row['users']:>8,} {row['batch_size']:>6} {row['rss_before_mib']:>8.0f} MiB "
              f"{peak:>5.0f} MiB {peak - row['rss_before_mib']:>10.0f} MiB "
              f"{row['seconds']:>8.1f} {row['users'] / row['seconds']:>8.0f}  {row['note']}")

    def above(row) -> float:  # the evaluation's own peak: above the loaded world and model
        return row[peak_key] - row["rss_before_mib"]

    for label, group in (("glibc defaults", rows[0:3]), ("mmap threshold fixed", rows[3:6])):
        if len(group) == 3:
            with_small, with_large, half = group
            print(f"{label}: batch {large} / batch {small} = "
                  f"x{above(with_large) / above(with_small):.2f}; all users / half the users "
                  f"(batch {large}) = x{above(with_large) / above(half):.2f}")
    print(f"score matrix of one batch: {small} x {args.items + 1} x 4 B = "
          f"{small * (args.items + 1) * 4 / 2**20:.0f} MiB, {large} x {args.items + 1} x 4 B = "
          f"{large * (args.items + 1) * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
