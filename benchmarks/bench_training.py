"""Training and evaluation cost of FAME vs SASRec: epoch time, their ratio, eval time, memory.

Targets (the first version's speed goals, on Beauty): FAME epoch <= 1.2x SASRec's, full-ranking
evaluation of every user <= 3 s per model, peak memory <= 2.5 GB while training and <= 1.5 GB
while evaluating.

Each measurement runs in a fresh Python process so that its peak resident memory
(``getrusage().ru_maxrss``: interpreter + torch + data + the phase itself) belongs to that
phase alone. Training epochs use famekit's own loop (length-bucketed batches, scoring only the
non-padding positions); ``--batching random`` times the same loop on unsorted batches padded
to their longest row, to show what bucketing buys. Evaluation uses an untrained model: its
cost does not depend on the weights.

    .venv/bin/python benchmarks/bench_training.py                          # synthetic world
    FAMEKIT_SHARED_DATA=../shared/data .venv/bin/python benchmarks/bench_training.py --dataset beauty
    .venv/bin/python benchmarks/bench_training.py --sequences ../shared/data/beauty/Beauty.txt

With ``--dataset NAME`` a real dataset is loaded through famekit's registry; when
``FAMEKIT_SHARED_DATA`` is set and ``FAMEKIT_MIRROR`` is not, the loopback mirror of
``tests/mirror.py`` serves the shared files (no network), cached in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TARGETS = {"epoch_ratio": 1.2, "eval_seconds": 3.0, "train_rss_gb": 2.5, "eval_rss_gb": 1.5}


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 30) if sys.platform == "darwin" else peak / (1 << 20)


@contextlib.contextmanager
def shared_data_mirror():
    """Serve ../shared/data through tests/mirror.py when real data is asked for offline."""
    shared = os.environ.get("FAMEKIT_SHARED_DATA")
    if not shared or os.environ.get("FAMEKIT_MIRROR"):
        yield
        return
    sys.path.insert(0, str(HERE.parent / "tests"))
    from mirror import Mirror

    with tempfile.TemporaryDirectory() as work:
        server = Mirror.serving_shared_data(shared, work)
        server.start()
        os.environ["FAMEKIT_MIRROR"] = server.base_url
        os.environ.setdefault("FAMEKIT_CACHE", str(Path(work) / "cache"))
        try:
            yield
        finally:
            server.stop()


def load_dataset(args):
    from famekit import datasets

    if args.sequences:
        return datasets.load_files(args.sequences)
    # Downloaded sources take progress=False (no download bars in the figures' output).
    options = {} if args.dataset == datasets.DEFAULT_DATASET else {"progress": False}
    return datasets.load(args.dataset, **options)


# ---------------------------------------------------------------------------------- phases
def phase_train(args) -> dict:
    """Time ``args.epochs`` training epochs of one model kind (run in its own process)."""
    import torch

    from famekit import distributed
    from famekit.batching import NextItemBatches
    from famekit.model import ModelConfig, build_model
    from famekit.training import epoch_rng, seed_torch_for_epoch, train_epoch

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args)
    rss_data = peak_rss_gb()
    ctx = distributed.DistContext(device=distributed.resolve_device(args.device))
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=dataset.n_items, kind=args.kind, max_len=args.max_len,
                                    d_model=args.d_model)).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = NextItemBatches(dataset.split().train_sequences(), args.max_len, args.batch_size)
    use_bf16 = ctx.device.type == "cuda"

    def autocast():
        return (torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16
                else contextlib.nullcontext())

    seconds, cpu_user, cpu_sys, losses, cells = [], [], [], [], []
    for epoch in range(1, args.epochs + 1):
        seed_torch_for_epoch(0, epoch, 0)
        rng = epoch_rng(0, epoch)
        if args.batching == "bucketed":
            epoch_batches = batches.epoch(rng)
        else:  # unsorted rows, each batch still trimmed to its longest row
            epoch_batches = np.array_split(rng.permutation(len(batches)),
                                           max(1, -(-len(batches) // args.batch_size)))
        cells.append(sum(len(b) * int(batches.n_targets[b].max()) for b in epoch_batches))
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        loss, _ = train_epoch(model, optimizer, batches, epoch_batches, ctx, autocast, None)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_user.append(after.ru_utime - usage.ru_utime)
        cpu_sys.append(after.ru_stime - usage.ru_stime)
        losses.append(loss)
    return {"kind": args.kind, "epoch_seconds": seconds, "epoch_user_seconds": cpu_user,
            "epoch_sys_seconds": cpu_sys, "train_loss": losses,
            "targets": batches.total_targets, "padded_cells": cells[-1],
            "batches": len(epoch_batches), "rss_after_data_gb": rss_data,
            "peak_rss_gb": peak_rss_gb(), "threads": args.threads, "device": str(ctx.device)}


def phase_eval(args) -> dict:
    """Time a full-ranking evaluation of every test user (run in its own process)."""
    import torch

    from famekit.distributed import resolve_device
    from famekit.evaluation import evaluate
    from famekit.model import ModelConfig, build_model

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args)
    rss_data = peak_rss_gb()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=dataset.n_items, kind=args.kind, max_len=args.max_len,
                                    d_model=args.d_model)).to(device)
    timings, cpu_seconds = [], []
    for _ in range(args.eval_repeats):
        usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        metrics = evaluate(model, dataset, split="test", batch_size=args.eval_batch_size,
                           progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_seconds.append(after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime)
    return {"kind": args.kind, "eval_seconds": min(timings), "eval_cpu_seconds": min(cpu_seconds),
            "users": metrics["users"],
            "rss_after_data_gb": rss_data, "peak_rss_gb": peak_rss_gb()}


# ---------------------------------------------------------------------------------- driver
def run_phase(phase: str, kind: str, argv: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--kind", kind,
               *argv]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{phase} {kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="registry name (synthetic)")
    parser.add_argument("--sequences", help="a sequence file instead of --dataset")
    parser.add_argument("--epochs", type=int, default=2,
                        help="timed epochs per model; the report uses the fastest (2)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--eval-repeats", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: leave the other cores to colleagues)")
    parser.add_argument("--device", help="cpu / cuda (default: CUDA when available)")
    parser.add_argument("--batching", choices=("bucketed", "random"), default="bucketed")
    parser.add_argument("--phase", choices=("train", "eval"), help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=("fame", "sasrec"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        with shared_data_mirror():
            result = phase_train(args) if args.phase == "train" else phase_eval(args)
        print(json.dumps(result))
        return

    argv = list(sys.argv[1:])
    train = {k: run_phase("train", k, argv) for k in ("sasrec", "fame")}
    evals = {k: run_phase("eval", k, argv) for k in ("sasrec", "fame")}
    source = args.sequences or args.dataset
    print(f"dataset {source}: {evals['fame']['users']} evaluated users, "
          f"{train['fame']['targets']} training targets/epoch in {train['fame']['batches']} "
          f"{args.batching} batches ({train['fame']['padded_cells']} padded cells), "
          f"device {train['fame']['device']}, {args.threads} thread(s), d={args.d_model}, "
          f"max_len={args.max_len}, batch {args.batch_size}")
    print(f"{'model':8} {'epoch wall s (each)':>24} {'best':>7} {'cpu s':>7} {'(sys)':>7} "
          f"{'eval s':>7} {'train GB':>9} {'eval GB':>8}")
    cpu = {}
    for kind in ("sasrec", "fame"):
        t, e = train[kind], evals[kind]
        each = " ".join(f"{s:.2f}" for s in t["epoch_seconds"])
        fastest = int(np.argmin(t["epoch_seconds"]))
        user, system = t["epoch_user_seconds"][fastest], t["epoch_sys_seconds"][fastest]
        cpu[kind] = min(u + s for u, s in zip(t["epoch_user_seconds"], t["epoch_sys_seconds"]))
        print(f"{kind:8} {each:>24} {t['epoch_seconds'][fastest]:7.2f} {user + system:7.2f} "
              f"{system:7.2f} {e['eval_seconds']:7.2f} {t['peak_rss_gb']:9.2f} "
              f"{e['peak_rss_gb']:8.2f}")
    ratio = min(train["fame"]["epoch_seconds"]) / min(train["sasrec"]["epoch_seconds"])
    print(f"FAME / SASRec epoch time: {ratio:.2f}x wall, {cpu['fame'] / cpu['sasrec']:.2f}x CPU "
          f"time (target <= {TARGETS['epoch_ratio']}; CPU time is the steadier figure on a "
          "shared machine)")
    worst_eval = max(e["eval_seconds"] for e in evals.values())
    worst_cpu = max(e["eval_cpu_seconds"] for e in evals.values())
    print(f"slowest evaluation: {worst_eval:.2f} s wall, {worst_cpu:.2f} s CPU "
          f"(target <= {TARGETS['eval_seconds']} s on Beauty)")
    print(f"peak memory: training {max(t['peak_rss_gb'] for t in train.values()):.2f} GB "
          f"(target <= {TARGETS['train_rss_gb']}), evaluation "
          f"{max(e['peak_rss_gb'] for e in evals.values()):.2f} GB "
          f"(target <= {TARGETS['eval_rss_gb']}); after loading the data alone: "
          f"{train['fame']['rss_after_data_gb']:.2f} GB")


if __name__ == "__main__":
    main()
