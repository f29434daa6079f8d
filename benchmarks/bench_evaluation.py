"""How much length-sorted, trimmed batches speed up full-ranking evaluation (docs/fame-spec.md §5).

Compares :func:`famekit.evaluation.evaluate` (users sorted by input length, each batch trimmed
to its longest input) with the plain loop it replaces (users in file order, every batch padded
to ``max_len``), checks that both give the same ranks, and prints users/second for each.
The model is untrained: evaluation cost does not depend on the weights.

    .venv/bin/python benchmarks/bench_evaluation.py                       # synthetic data
    .venv/bin/python benchmarks/bench_evaluation.py --sequences ../shared/data/beauty/Beauty.txt
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from famekit import datasets
from famekit.batching import pad_left
from famekit.evaluation import METRIC_NAMES, evaluate, metrics_from_ranks, target_ranks
from famekit.model import ModelConfig, build_model


def plain_ranks(model, dataset, split: str, batch_size: int) -> np.ndarray:
    """The unsorted, untrimmed loop: same masking and ranking, every batch max_len wide."""
    inputs, targets, _ = dataset.split().eval_inputs(split)
    max_len = model.config.max_len
    ranks = np.empty(len(targets), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            rows = slice(start, start + batch_size)
            batch = inputs[rows]
            ids = torch.from_numpy(pad_left(batch, max_len, width=max_len))  # [B, max_len]
            history = np.zeros((len(batch), max(len(s) for s in batch)), dtype=np.int64)
            for row, seq in enumerate(batch):
                history[row, : len(seq)] = seq
            scores = model.score_last(ids)  # [B, V+1]
            ranks[rows] = target_ranks(scores, torch.from_numpy(targets[rows]),
                                       torch.from_numpy(history)).numpy()
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", help="a sequence file (default: the synthetic dataset)")
    parser.add_argument("--kind", default="sasrec", choices=["sasrec", "fame"])
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ds = datasets.load_files(args.sequences) if args.sequences else datasets.load("synthetic")
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=ds.n_items, kind=args.kind, max_len=args.max_len))
    model.eval()
    lengths = ds.lengths
    print(f"dataset {ds.name}: {ds.n_users} users, {ds.n_items} items, median length "
          f"{np.median(lengths):.0f}, max {lengths.max()}; model {args.kind}, max_len "
          f"{args.max_len}, batch {args.batch_size}, {args.threads} thread(s)")

    timings = {"plain (file order, max_len wide)": [], "evaluate (sorted, trimmed)": []}
    for _ in range(args.repeats):
        started = time.perf_counter()
        plain = plain_ranks(model, ds, "test", args.batch_size)
        timings["plain (file order, max_len wide)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        metrics, frame = evaluate(model, ds, batch_size=args.batch_size, progress=False,
                                  return_ranks=True)
        timings["evaluate (sorted, trimmed)"].append(time.perf_counter() - started)
    fast = frame["rank"].to_numpy()
    plain_metrics = metrics_from_ranks(plain)
    # Different batch compositions round float32 matmuls differently (~1e-7): a user whose
    # target nearly ties another item can move by one place. Untrained models tie a lot.
    print(f"users with a different rank: {int((plain != fast).sum())} of {len(fast)}; largest "
          f"metric difference: {max(abs(metrics[m] - plain_metrics[m]) for m in METRIC_NAMES):.2e}")
    best = {name: min(times) for name, times in timings.items()}
    for name, seconds in best.items():
        print(f"{name:36s} {seconds:7.2f} s  {metrics['users'] / seconds:9.0f} users/s")
    plain_s, fast_s = best.values()
    print(f"speed-up: {plain_s / fast_s:.2f}x   (NDCG@10 of the untrained model "
          f"{metrics['NDCG@10']:.4f})")


if __name__ == "__main__":
    main()
