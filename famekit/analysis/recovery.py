"""Ground-truth recovery on the synthetic facet world: does FAME find what was planted?

Three measurements, each against a chance level computed the same way on shuffled answers.
They are measurements, not targets: a model may well not recover the planted structure.

1. **Facets -> heads**: for each planted facet, the head whose sub-embeddings agree best with
   it (kNN label agreement, from :func:`famekit.analysis.alignment.alignment_matrix`), vs the
   permuted-label level.
2. **Driving facet -> argmax gate**: map each head to the facet it aligns with best (largest
   lift over chance); predict a user's driving facet as the facet of their top-gated head
   (gates averaged over the user's positions); accuracy vs the majority-class rate.
3. **Active interest -> routed expert**: for users driven by facet f, at every planted position,
   the normalised mutual information between the active interest and the top expert of the
   head mapped to f, vs the NMI after shuffling the experts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.analysis.activations import Activations
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError

__all__ = [
    "driving_facet_accuracy",
    "facet_recovery",
    "facet_routing_accuracy",
    "head_facet_map",
    "interest_expert_nmi",
    "normalized_mutual_information",
    "require_ground_truth",
]


def require_ground_truth(dataset: SeqDataset) -> dict:
    gt = dataset.ground_truth
    if not gt or "user_facet" not in gt:
        raise ParameterError(
            f"dataset {dataset.name!r} has no planted ground truth. "
            "Fix: ground-truth recovery only applies to the synthetic facet world"
        )
    return gt


def normalized_mutual_information(a, b) -> float:
    """NMI of two labelings (arithmetic-mean normalisation; 1 = identical partitions).

    Two constant labelings count as identical (1.0); one constant vs a varied one gives 0.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ParameterError("labelings must be 1-D and of equal length")
    if len(a) == 0:
        return float("nan")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= len(a)
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
    ha = float(-(pa * np.log(pa)).sum())
    hb = float(-(pb * np.log(pb)).sum())
    if ha == 0.0 and hb == 0.0:
        return 1.0
    denom = (ha + hb) / 2
    return max(0.0, mi / denom) if denom > 0 else 0.0


def facet_recovery(alignment: pd.DataFrame, dataset: SeqDataset) -> pd.DataFrame:
    """Per planted facet: the best-aligned head, its agreement, the chance level, the lift."""
    gt = require_ground_truth(dataset)
    heads = alignment[alignment["head"] >= 0]
    rows = []
    for facet in gt["facets"]:
        sub = heads[heads["field"] == facet]
        if sub.empty:
            raise ParameterError(
                f"the alignment matrix has no rows for facet {facet!r}. "
                "Fix: compute it with fields including every planted facet"
            )
        best = sub.loc[sub["agreement"].idxmax()]
        rows.append({"facet": facet, "best_head": int(best["head"]),
                     "agreement": best["agreement"], "chance": best["perm_mean"],
                     "lift": best["agreement"] / best["perm_mean"],
                     "beats_nulls": bool(best["aligned"])})
    return pd.DataFrame(rows)


def head_facet_map(alignment: pd.DataFrame, dataset: SeqDataset) -> dict[int, str]:
    """{head: the planted facet it aligns with best (largest lift over chance)}."""
    gt = require_ground_truth(dataset)
    heads = alignment[(alignment["head"] >= 0) & alignment["field"].isin(list(gt["facets"]))]
    heads = heads.assign(lift=heads["agreement"] / heads["perm_mean"])
    return {int(h): str(g.loc[g["lift"].idxmax(), "field"]) for h, g in heads.groupby("head")}


def driving_facet_accuracy(
    acts: Activations, dataset: SeqDataset, head_facet: dict[int, str]
) -> dict:
    """Accuracy of "driving facet = facet of the user's top-gated head" vs chance."""
    gt = require_ground_truth(dataset)
    facets = list(gt["facets"])
    missing = set(range(acts.n_heads)) - set(head_facet)
    if missing:
        raise ParameterError(f"heads {sorted(missing)} have no facet in head_facet. "
                             "Fix: pass head_facet_map(alignment, dataset)")
    mean_gates = np.add.reduceat(acts.gates, acts.offsets[:-1], axis=0)  # [U, H] sums
    top_head = mean_gates.argmax(axis=1)
    predicted = np.array([facets.index(head_facet[int(h)]) for h in top_head])
    truth = gt["user_facet"][acts.users]
    majority = np.bincount(truth, minlength=len(facets)).max() / len(truth)
    return {
        "accuracy": float((predicted == truth).mean()),
        "chance": float(majority),
        "uniform_chance": 1.0 / len(facets),
        "users": len(truth),
        "facets_predicted": len(np.unique(predicted)),
    }


def interest_expert_nmi(
    acts: Activations, dataset: SeqDataset, head_facet: dict[int, str],
    n_shuffles: int = 10, seed: int = 0,
) -> pd.DataFrame:
    """Per planted facet: NMI(active interest, top expert of the head mapped to it) vs chance.

    When several heads map to one facet, each is reported. Positions of noise steps
    (interest -1) are left out.
    """
    gt = require_ground_truth(dataset)
    facets = list(gt["facets"])
    interest = gt["interest"][acts.flat_index]  # [T]
    user_of_pos = np.repeat(np.arange(len(acts.users)), np.diff(acts.offsets))
    driving = gt["user_facet"][acts.users][user_of_pos]  # [T]
    top_expert = acts.router.argmax(axis=2)  # [T, H]
    rng = np.random.default_rng(seed)
    rows = []
    for head, facet in sorted(head_facet.items()):
        sel = (driving == facets.index(facet)) & (interest >= 0)
        if sel.sum() < 2:
            continue
        a, b = interest[sel], top_expert[sel, head]
        nmi = normalized_mutual_information(a, b)
        chance = float(np.mean([normalized_mutual_information(a, rng.permutation(b))
                                for _ in range(n_shuffles)]))
        rows.append({"facet": facet, "head": head, "positions": int(sel.sum()), "nmi": nmi,
                     "chance": chance, "experts_used": len(np.unique(b))})
    return pd.DataFrame(rows, columns=["facet", "head", "positions", "nmi", "chance",
                                       "experts_used"])


def facet_routing_accuracy(acts: Activations, dataset: SeqDataset, facets) -> pd.DataFrame:
    """Does the gate send each user to the head of their driving facet? (FAME+ runs.)

    ``facets``: the fields on heads 0..k-1 (``Run.facets``). For every user driven by one of
    them, the top-gated head *among the assigned heads* (gates averaged over the user's
    positions) is compared with the driving facet's head. One row per facet (users, accuracy,
    chance = 1/k, the rate of a uniformly random assigned head) and a last row ``"all"``
    (chance = the majority rate: always answering the most common driving facet).
    """
    gt = require_ground_truth(dataset)
    facets = list(facets)
    planted = list(gt["facets"])
    unknown = [f for f in facets if f not in planted]
    if not facets or unknown:
        raise ParameterError(
            f"facets {facets} are not all planted facets of this world ({planted}). Fix: pass "
            "the run's facet assignment (Run.facets) of a FAME+ run on the synthetic world")
    if len(facets) > acts.n_heads:
        raise ParameterError(f"{len(facets)} facets for {acts.n_heads} heads. Fix: pass the "
                             "run's own facet assignment")
    sums = np.add.reduceat(acts.gates, acts.offsets[:-1], axis=0)  # [U, H]: sums = means' order
    top = sums[:, :len(facets)].argmax(axis=1)  # [U]: top-gated assigned head
    driving = gt["user_facet"][acts.users]  # [U]: index into planted
    head_of = np.array([facets.index(f) if f in facets else -1 for f in planted])
    wanted = head_of[driving]  # [U]: the driving facet's head, -1 if unassigned
    scored = wanted >= 0
    rows = []
    for head, facet in enumerate(facets):
        mine = scored & (wanted == head)
        rows.append({"facet": facet, "head": head, "users": int(mine.sum()),
                     "accuracy": float((top[mine] == head).mean()) if mine.any() else np.nan,
                     "chance": 1.0 / len(facets)})
    shares = np.bincount(wanted[scored], minlength=len(facets)) / max(1, scored.sum())
    rows.append({"facet": "all", "head": -1, "users": int(scored.sum()),
                 "accuracy": float((top[scored] == wanted[scored]).mean()) if scored.any()
                 else np.nan, "chance": float(shares.max()) if scored.any() else np.nan})
    return pd.DataFrame(rows, columns=["facet", "head", "users", "accuracy", "chance"])
