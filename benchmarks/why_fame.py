"""Why FAME does or does not beat SASRec: how much of its machinery a trained FAME uses.

    .venv/bin/python benchmarks/why_fame.py runs/bench/beauty-fame-seed0 [more FAME runs]

For each FAME run (test inputs of every user, famekit.analysis): how far the gate is from
uniform (mean per-user gate entropy / log H, the largest mean head weight), how far each head's
router is from uniform (mean entropy / log N, and the entropy of its average load), and the
share of users whose top head is each head. A gate or router at ~1.0 normalised entropy mixes
(almost) uniformly, which the ablations fame:gate=uniform / fame:router=uniform test directly.
Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from famekit import analysis as A
from famekit.workspace import open_run


def diagnose(run_dir: Path) -> dict:
    opened = open_run(run_dir=run_dir, progress=False)
    acts = A.collect_activations(opened.model, opened.dataset, split="test")
    gates = A.gate_summary(acts)
    routing = A.routing_entropy(acts)
    return {
        "run": run_dir.name,
        "gate_entropy": gates.attrs["mean_entropy"] / gates.attrs["max_entropy"],
        "largest_mean_gate": float(gates["mean_gate"].max()),
        "top_head_shares": " ".join(f"{x:.2f}" for x in gates["top_head_share"]),
        "router_entropy": " ".join(f"{x:.2f}" for x in routing["normalised_entropy"]),
        "load_entropy": " ".join(f"{x / np.log(acts.n_experts):.2f}"
                                 for x in routing["load_entropy"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="FAME run directories")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [diagnose(run) for run in args.runs]
    print("| run | gate entropy / log H | largest mean gate | top-head share per head "
          "| router entropy / log N per head | load entropy / log N per head |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['gate_entropy']:.3f} | {r['largest_mean_gate']:.3f} | "
              f"{r['top_head_shares']} | {r['router_entropy']} | {r['load_entropy']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
