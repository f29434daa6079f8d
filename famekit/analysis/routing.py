"""Expert routing: how each head's router spreads positions over its experts, and which item
metadata goes to which expert.

Router probabilities are read at every real position (``Activations.router``, [T, H, N]).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.analysis.activations import Activations
from famekit.analysis.gates import entropy
from famekit.errors import ParameterError

__all__ = [
    "expert_enrichment",
    "expert_load",
    "router_distribution",
    "routing_entropy",
    "user_routing",
]


def router_distribution(acts: Activations, bins: int = 20) -> pd.DataFrame:
    """Histogram of router probabilities per head and expert over all positions.

    Long format: head, expert, bin_left, bin_right, share (shares of one head/expert sum to 1).
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for h in range(acts.n_heads):
        for e in range(acts.n_experts):
            counts, _ = np.histogram(acts.router[:, h, e], bins=edges)
            share = counts / max(1, counts.sum())
            rows += [(h, e, edges[b], edges[b + 1], share[b]) for b in range(bins)]
    return pd.DataFrame(rows, columns=["head", "expert", "bin_left", "bin_right", "share"])


def expert_load(acts: Activations) -> pd.DataFrame:
    """Per head and expert: mean router probability (soft load) and the share of positions
    whose top expert it is (hard load). A balanced head has both near 1/N."""
    soft = acts.router.mean(axis=0, dtype=np.float64)  # [H, N]
    top = acts.router.argmax(axis=2)  # [T, H]
    rows = []
    for h in range(acts.n_heads):
        hard = np.bincount(top[:, h], minlength=acts.n_experts) / max(1, len(top))
        rows += [(h, e, float(soft[h, e]), float(hard[e])) for e in range(acts.n_experts)]
    return pd.DataFrame(rows, columns=["head", "expert", "soft_load", "top_share"])


def routing_entropy(acts: Activations) -> pd.DataFrame:
    """Per head: mean entropy of the router distribution over positions (nats), its maximum
    log(N), the normalised value (0 = always one expert, 1 = uniform), and the entropy of the
    head's average load (low = a few experts take everything)."""
    ent = entropy(acts.router, axis=2)  # [T, H]
    load = acts.router.mean(axis=0, dtype=np.float64)  # [H, N]
    max_ent = np.log(acts.n_experts)
    return pd.DataFrame(
        {
            "head": np.arange(acts.n_heads),
            "mean_entropy": ent.mean(axis=0),
            "max_entropy": max_ent,
            "normalised_entropy": ent.mean(axis=0) / max_ent if max_ent > 0 else 0.0,
            "load_entropy": entropy(load, axis=1),
        }
    )


def user_routing(acts: Activations, user_row: int, head: int) -> pd.DataFrame:
    """Router probabilities of one user and head at every position (positions x experts)."""
    if not 0 <= head < acts.n_heads:
        raise ParameterError(f"head {head} does not exist. Fix: choose 0..{acts.n_heads - 1}")
    sl = acts.user_slice(acts.index_of(user_row))
    frame = pd.DataFrame(acts.router[sl, head],
                         columns=[f"expert {e}" for e in range(acts.n_experts)])
    frame.insert(0, "item", acts.items[sl])
    frame.insert(0, "position", np.arange(sl.stop - sl.start))
    return frame


def expert_enrichment(
    acts: Activations, item_labels: np.ndarray, min_count: int = 20
) -> pd.DataFrame:
    """Which labels of the *input items* route to which expert, with lift over the base rate.

    For head h and expert e, the routing mass of label l is the sum of router probabilities
    p(e | position) over positions whose input item has label l. Then
    ``share = mass(e, l) / mass(e)`` and ``lift = share / base_rate(l)``, where
    ``base_rate(l)`` is l's share of labelled positions. Lift > 1: the expert prefers l.
    Labels seen at fewer than ``min_count`` positions are left out (their lift is noise).
    Long format: head, expert, label, positions, mass, share, base_rate, lift.
    """
    labels = np.asarray(item_labels, dtype=object)
    if labels.ndim != 1 or len(labels) <= int(acts.items.max(initial=0)):
        raise ParameterError(
            f"item_labels has {len(labels)} entries but items go up to {int(acts.items.max())}. "
            "Fix: pass famekit.analysis.item_labels(dataset, field) for the run's dataset"
        )
    position_labels = labels[acts.items]  # [T]
    known = np.array([v is not None for v in position_labels])
    if not known.any():
        return pd.DataFrame(columns=["head", "expert", "label", "positions", "mass", "share",
                                     "base_rate", "lift"])
    classes, codes = np.unique(position_labels[known].astype(str), return_inverse=True)
    counts = np.bincount(codes, minlength=len(classes))
    base = counts / counts.sum()
    router = acts.router[known]  # [T', H, N]
    rows = []
    for h in range(acts.n_heads):
        # mass[l, e] = sum of p(e) over positions labelled l
        mass = np.zeros((len(classes), acts.n_experts))
        np.add.at(mass, codes, router[:, h, :])
        expert_total = mass.sum(axis=0)  # [N]
        for e in range(acts.n_experts):
            for c in np.flatnonzero(counts >= min_count):
                share = mass[c, e] / expert_total[e] if expert_total[e] > 0 else 0.0
                rows.append((h, e, classes[c], int(counts[c]), float(mass[c, e]), float(share),
                             float(base[c]), float(share / base[c])))
    return pd.DataFrame(rows, columns=["head", "expert", "label", "positions", "mass", "share",
                                       "base_rate", "lift"])
