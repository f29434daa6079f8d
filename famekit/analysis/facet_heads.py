"""FAME+ on the synthetic world: the gate and the knockouts, read by each user's driving facet.

Notebook 07 asks of a run whose heads carry named facets (``Run.facets``):

* :func:`gates_by_driving_facet` — the mean gate of every head for the users driven by each
  planted facet (a FAME+ gate that routes by facet puts each facet's users on its head);
* :func:`facet_knockouts` — remove one assigned head at a time and measure how much NDCG@10
  each group of users (by driving facet) loses: a head that carries facet f should hurt the
  users driven by f most;
* :func:`accuracy_table` — test metrics of several runs side by side.

The share of users routed to their facet's head is
:func:`famekit.analysis.recovery.facet_routing_accuracy`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.analysis.activations import GATES, Activations, require_fame
from famekit.analysis.gates import gates_by_group
from famekit.analysis.knockouts import evaluate_intervention, remove_heads_hook, subsample_users
from famekit.analysis.recovery import require_ground_truth
from famekit.datasets import SeqDataset
from famekit.evaluation import metrics_from_ranks
from famekit.facets import head_label

__all__ = ["accuracy_table", "driving_facet_names", "facet_knockouts", "gates_by_driving_facet"]


def driving_facet_names(dataset: SeqDataset, users: np.ndarray) -> np.ndarray:
    """object [len(users)]: the planted driving facet of each dataset row in ``users``."""
    gt = require_ground_truth(dataset)
    names = np.array(list(gt["facets"]), dtype=object)
    return names[gt["user_facet"][np.asarray(users)]]


def gates_by_driving_facet(acts: Activations, dataset: SeqDataset) -> pd.DataFrame:
    """Mean last-position gate of each head per driving facet (long format: group = the
    facet, head, mean_gate, users), as :func:`famekit.analysis.gates.gates_by_group`."""
    return gates_by_group(acts, driving_facet_names(dataset, acts.users), min_users=1)


def facet_knockouts(model, dataset: SeqDataset, facets, split: str = "test",
                    max_users: int | None = None, seed: int = 0) -> pd.DataFrame:
    """NDCG@10 lost by each group of users (by driving facet) when one assigned head is
    removed (its gate set to 0, the others renormalised).

    One row per (removed head, driving facet): head, head_label, facet (the users' driving
    facet), users, NDCG@10 (with the head removed), base (unmodified), delta, relative, and
    ``own`` (True where the removed head is the one assigned to that facet).
    """
    require_fame(model)
    require_ground_truth(dataset)
    facets = list(facets)
    data = subsample_users(dataset, max_users, seed)
    n_heads = model.config.n_heads

    def by_facet(ranks: pd.DataFrame) -> dict[str, dict]:
        groups = driving_facet_names(dataset, ranks["user"].to_numpy())
        return {f: metrics_from_ranks(ranks["rank"].to_numpy()[groups == f])
                for f in dict.fromkeys(dataset.ground_truth["facets"])}

    _, ranks = evaluate_intervention(model, data, split=split)
    base = by_facet(ranks)
    rows = []
    for head, assigned in enumerate(facets):
        hook = remove_heads_hook([head], n_heads)
        _, ranks = evaluate_intervention(model, data, [(GATES, hook)], split)
        for facet, metrics in by_facet(ranks).items():
            before = base[facet]["NDCG@10"]
            delta = metrics["NDCG@10"] - before
            rows.append({"head": head, "head_label": head_label(head, facets), "facet": facet,
                         "users": metrics["users"], "NDCG@10": metrics["NDCG@10"],
                         "base": before, "delta": delta,
                         "relative": delta / before if before else np.nan,
                         "own": facet == assigned})
    return pd.DataFrame(rows)


def accuracy_table(runs: dict) -> pd.DataFrame:
    """Test metrics of runs side by side: ``runs`` maps a model label to a loaded
    :class:`famekit.checkpoints.Run`; one row per model (NDCG@10, HR@10, MRR, best epoch)."""
    rows = []
    for label, run in runs.items():
        summary = run.meta.get("summary") or {}
        test = summary.get("test") or {}
        rows.append({"model": label, "NDCG@10": test.get("NDCG@10"), "HR@10": test.get("HR@10"),
                     "MRR": test.get("MRR"), "best_epoch": summary.get("best_epoch")})
    return pd.DataFrame(rows).set_index("model")
