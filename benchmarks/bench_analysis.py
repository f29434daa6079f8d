"""Time every analysis on one FAME run (target on Beauty: all analyses <= 60 s on 2 CPU
cores excluding the first UMAP JIT; each UMAP <= 15 s after warm-up).

    python benchmarks/bench_analysis.py --run runs/beauty-fame-seed0
    FAMEKIT_SHARED_DATA=../shared/data python benchmarks/bench_analysis.py --dataset beauty

With ``--run`` the run's dataset is reloaded from its train_args.json (warm the cache first with
warm_cache.py on an offline machine); without, an untrained FAME of the dataset's size is used
(same cost, meaningless numbers). Prints one line per analysis and the totals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


class Timer:
    def __init__(self):
        self.rows: list[tuple[str, float]] = []

    def __call__(self, label, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
        self.rows.append((label, seconds))
        print(f"{label:<44} {seconds:7.2f} s", flush=True)
        return out


def _model_and_data(args):
    from famekit import datasets, workspace
    from famekit.model import ModelConfig, build_model

    if args.run:
        opened = workspace.open_run(run_dir=args.run, progress=False)
        return opened.model, opened.dataset
    if os.environ.get("FAMEKIT_SHARED_DATA") and args.dataset != "synthetic":
        sys.path.insert(0, str(ROOT / "tests"))
        import tempfile

        from mirror import Mirror

        with tempfile.TemporaryDirectory() as tmp, \
                Mirror.serving_shared_data(os.environ["FAMEKIT_SHARED_DATA"], tmp).start() as m:
            os.environ["FAMEKIT_MIRROR"] = m.base_url
            ds = datasets.load(args.dataset)
            del os.environ["FAMEKIT_MIRROR"]
    else:
        ds = datasets.load(args.dataset)
    torch.manual_seed(0)
    return build_model(ModelConfig(n_items=ds.n_items, kind="fame")).eval(), ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a FAME run directory")
    parser.add_argument("--dataset", default="beauty", help="without --run: dataset to size on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from famekit import analysis as A

    model, ds = _model_and_data(args)
    print(f"{ds.name}: {ds.n_users:,} users, {ds.n_items:,} items; "
          f"H={model.config.n_heads}, N={model.config.n_experts}; {args.threads} threads")
    t = Timer()
    fields = A.label_fields(ds)
    group = next((f for f in ("top_category", "genre") if f in fields), fields[0])
    labels = A.item_labels(ds, group)
    acts = t("collect activations (all test users)", A.collect_activations, model, ds)
    t("gate summary + per-user gates", lambda: (A.gate_summary(acts), A.user_gates(acts)))
    inputs = [ds.sequence(u)[:-1] for u in acts.users]
    groups = t(f"user groups by {group}", A.user_majority_labels, ds, group, inputs)
    t("gates by group", A.gates_by_group, acts, groups)
    t("gates along a sequence", A.gates_along_sequence, acts, int(acts.users[0]))
    t("routing: distribution, load, entropy", lambda: (
        A.router_distribution(acts), A.expert_load(acts), A.routing_entropy(acts)))
    t(f"expert x {group} enrichment", A.expert_enrichment, acts, labels)
    t(f"alignment matrix ({len(fields)} fields, 20 perms, 2 random inits)",
      A.alignment_matrix, model, ds)
    t("recommendation anatomy (one user)", A.recommendation_anatomy, model, ds,
      int(acts.users[0]))
    t(f"head knockouts by {group} ({model.config.n_heads + 1} evaluations)",
      A.head_knockout_table, model, ds, labels)
    t(f"expert forcing, head 0 ({model.config.n_experts + 1} evaluations)",
      A.expert_forcing_table, model, ds, heads=[0], item_groups=labels)
    if ds.ground_truth:
        def recovery():
            al = A.alignment_matrix(model, ds, fields=list(ds.ground_truth["facets"]))
            head_facet = A.head_facet_map(al, ds)
            return (A.facet_recovery(al, ds), A.driving_facet_accuracy(acts, ds, head_facet),
                    A.interest_expert_nmi(acts, ds, head_facet))

        t("ground-truth recovery (incl. its alignment)", recovery)
    analyses = sum(s for _, s in t.rows)

    sub = A.head_embeddings(model)[1:]
    rng = np.random.default_rng(0)
    warm = rng.normal(size=(200, sub.shape[2])).astype(np.float32)
    t("UMAP warm-up (numba JIT, 200 points)", A.umap_layout, warm, use_disk_cache=False)
    umaps = []
    for h in range(sub.shape[1]):
        start = time.perf_counter()
        t(f"UMAP head {h} ({sub.shape[0]:,} items)", A.umap_layout, sub[:, h],
          use_disk_cache=False)
        umaps.append(time.perf_counter() - start)
    print(f"\nall analyses (no UMAP): {analyses:.1f} s   (target <= 60 s)")
    print(f"UMAP after warm-up: max {max(umaps):.1f} s, mean {np.mean(umaps):.1f} s "
          f"(target <= 15 s each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
