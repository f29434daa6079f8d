"""The facet alignment matrix: which head's item sub-embeddings organise items by which
metadata field, measured against two null baselines.

Score: **kNN label agreement**. Among the items that have a label for the field, take each
item's k nearest neighbours by cosine similarity of the head's sub-embedding (k = 10) and count
the share that carries the same label; average over items. Chance level depends on the label
distribution (a field dominated by one label agrees by accident), hence the nulls:

* **permuted labels**: the same neighbour graph, labels shuffled among the items
  (``n_permutations`` times) -> mean, std, z-score and a permutation p-value
  ``(1 + #{null >= observed}) / (1 + n_permutations)``;
* **random initialisation**: the same model class and config, freshly initialised (seeded),
  scored the same way -> what the architecture gives before any training.

The grid tests every (embedding, field) pair at once, so the p-values are Holm-adjusted across
it (``p_adjusted``; :func:`famekit.analysis.stats.holm`), and ``p_floor`` = 1 / (1 +
``n_permutations``) says how small p could get. A head is called *aligned* with a field when it
beats both nulls: ``p_adjusted`` < ``alpha`` and agreement above the best random-init agreement.

*Aligned* is not *specialised*: on a model without facets every head is aligned with every
field (any trained embedding clusters items by what co-occurs). :func:`head_specialisation`
asks the question FAME is about: does a head rank another field first than the other heads do,
by a margin whose bootstrap interval (over items) excludes 0?

Across fields, compare the **chance-corrected** agreement
``(agreement - perm_mean) / (1 - perm_mean)`` (0 = chance, 1 = every neighbour shares the
label), not the lift ``agreement / perm_mean``: lift is bounded by 1 / chance, so a 30-value
field reaches 10x where a 4-value field cannot pass 4x. :func:`facet_margins` uses it to say
whether each facet of a FAME+ run sits on its own head.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from famekit.analysis.embeddings import cosine_knn, full_embedding, head_embeddings
from famekit.analysis.metadata import encode_labels, item_labels, label_fields
from famekit.analysis.stats import DEFAULT_BOOTSTRAP, LEVEL, bootstrap_ci, holm
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.validation import is_whole_number

__all__ = [
    "DEFAULT_PERMUTATIONS",
    "agreement_with_nulls",
    "alignment_matrix",
    "chance_corrected",
    "facet_margins",
    "head_specialisation",
    "knn_agreement",
    "per_item_agreement",
    "random_init_like",
]

# Permuted-label draws: p can go down to 1/2000; Holm multiplies the smallest p by the grid's
# size (15 cells on the synthetic world, 20 on Beauty), which still leaves it at or below 0.01
# (docs/decisions.md, "Report statistics and verdicts").
DEFAULT_PERMUTATIONS = 1999

# A facet "sits on its head" when its head's chance-corrected agreement is at least this many
# times the best other head's (docs/decisions.md, "FAME+ facet objective").
MARGIN_TARGET = 1.5


def knn_agreement(vectors: np.ndarray, codes: np.ndarray, k: int = 10) -> float:
    """Mean share of each labelled item's k cosine neighbours (among labelled items) that carry
    its label. ``codes``: int64 [M] with -1 = unlabelled (ignored entirely)."""
    return agreement_with_nulls(vectors, codes, k=k, n_permutations=0)["agreement"]


def per_item_agreement(vectors: np.ndarray, codes: np.ndarray, k: int = 10) -> np.ndarray:
    """[M] float: each labelled item's share of its k neighbours (among labelled items) with its
    label; NaN for unlabelled items. Its mean over labelled items is :func:`knn_agreement`."""
    vectors, codes = np.asarray(vectors), np.asarray(codes)
    keep = codes >= 0
    out = np.full(len(codes), np.nan)
    if keep.sum() > k:
        labelled = codes[keep]
        neighbours, _ = cosine_knn(vectors[keep], k)  # [M', k]
        out[keep] = (labelled[neighbours] == labelled[:, None]).mean(axis=1)
    return out


def agreement_with_nulls(
    vectors: np.ndarray, codes: np.ndarray, k: int = 10,
    n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0
) -> dict:
    """kNN label agreement and its permuted-label null (see the module docstring)."""
    vectors = np.asarray(vectors)
    codes = np.asarray(codes)
    if len(vectors) != len(codes):
        raise ParameterError(
            f"{len(vectors)} vectors but {len(codes)} labels. Fix: pass one label per vector"
        )
    _check_counts(k=k, n_permutations=n_permutations)
    keep = codes >= 0
    if keep.sum() <= k:
        raise ParameterError(
            f"only {int(keep.sum())} labelled items, need more than k={k}. "
            "Fix: use a field with more labelled items or a smaller k"
        )
    labelled = codes[keep]
    neighbours, _ = cosine_knn(vectors[keep], k)  # [M, k]

    def score(labels: np.ndarray) -> float:
        return float((labels[neighbours] == labels[:, None]).mean())

    observed = score(labelled)
    result = {"agreement": observed, "items": int(keep.sum())}
    if n_permutations:
        rng = np.random.default_rng(seed)
        null = np.array([score(rng.permutation(labelled)) for _ in range(n_permutations)])
        std = float(null.std(ddof=1)) if n_permutations > 1 else 0.0
        result.update(
            perm_mean=float(null.mean()),
            perm_std=std,
            z=float((observed - null.mean()) / std) if std > 0 else float("inf"),
            p_value=float((1 + (null >= observed).sum()) / (1 + n_permutations)),
            p_floor=1.0 / (1 + n_permutations),
        )
    return result


def _check_counts(**counts) -> None:
    """k >= 1 neighbours, n_permutations >= 0 draws (notebook parameters K, N_PERMUTATIONS)."""
    for name, value in counts.items():
        least = 1 if name == "k" else 0
        if not is_whole_number(value) or value < least:
            raise ParameterError(f"{name}={value!r} is invalid. Fix: pass a whole number "
                                 f">= {least} (e.g. {name}={10 if name == 'k' else 20})")


def random_init_like(model, seed: int):
    """A freshly initialised model of the same class and config (the random-init null)."""
    devices = {p.device for p in model.parameters()}
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    finally:
        torch.random.set_rng_state(state)  # do not disturb the caller's random stream
    return fresh.to(next(iter(devices))).eval()


def _embedding_views(model) -> dict[str, np.ndarray]:
    sub = head_embeddings(model)[1:]  # [V, H, d']
    views = {f"head {h}": sub[:, h] for h in range(sub.shape[1])}
    views["full"] = full_embedding(model)[1:]  # [V, d]
    return views


def alignment_matrix(
    model,
    dataset: SeqDataset,
    fields=None,
    k: int = 10,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    n_random_inits: int = 2,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Heads (+ the full embedding) x metadata fields, with both nulls.

    Long format, one row per (embedding, field): embedding ("head 0", ..., "full"), head
    (int, -1 for full), field, agreement, items, perm_mean, perm_std, z, p_value, p_floor,
    p_adjusted (Holm across the grid), random_init (mean agreement of ``n_random_inits``
    fresh models), random_init_max, lift (agreement / perm_mean), chance_corrected
    ((agreement - perm_mean) / (1 - perm_mean), comparable across fields), aligned (bool).
    """
    _check_counts(k=k, n_permutations=n_permutations, n_random_inits=n_random_inits)
    if n_permutations == 0:
        raise ParameterError("n_permutations=0 leaves the alignment without its null. Fix: "
                             f"pass n_permutations >= 20 (default {DEFAULT_PERMUTATIONS})")
    fields = label_fields(dataset) if fields is None else list(fields)
    if not fields:
        raise ParameterError(
            f"dataset {dataset.name!r} has no categorical metadata to align with. "
            "Fix: use a dataset with item metadata (e.g. beauty, ml-100k, synthetic)"
        )
    views = _embedding_views(model)
    cells = len(views) * len(fields)  # the family Holm corrects over
    smallest_p = cells / (1 + n_permutations)  # the smallest adjusted p-value possible
    if smallest_p >= alpha:
        raise ParameterError(
            f"n_permutations={n_permutations} cannot reach an adjusted p-value below "
            f"alpha={alpha} over {cells} cells (the smallest is {min(smallest_p, 1.0):.3f}). "
            f"Fix: use n_permutations >= {int(np.ceil(cells / alpha))} (default "
            f"{DEFAULT_PERMUTATIONS})"
        )
    null_views = [_embedding_views(random_init_like(model, seed + 1000 + i))
                  for i in range(n_random_inits)]
    rows = []
    for field in fields:
        codes, _ = encode_labels(item_labels(dataset, field)[1:])  # [V]
        for name, vectors in views.items():
            res = agreement_with_nulls(vectors, codes, k, n_permutations, seed)
            randoms = [knn_agreement(nv[name], codes, k) for nv in null_views]
            rand_mean = float(np.mean(randoms)) if randoms else float("nan")
            rand_max = float(np.max(randoms)) if randoms else float("-inf")
            rows.append({
                "embedding": name,
                "head": int(name.split()[1]) if name.startswith("head") else -1,
                "field": field,
                **res,
                "random_init": rand_mean,
                "random_init_max": rand_max,
                "lift": res["agreement"] / res["perm_mean"] if res.get("perm_mean") else np.nan,
                "chance_corrected": chance_corrected(res["agreement"],
                                                     res.get("perm_mean", np.nan)),
            })
    frame = pd.DataFrame(rows)
    frame.insert(frame.columns.get_loc("p_floor") + 1, "p_adjusted", holm(frame["p_value"]))
    frame["aligned"] = (frame["p_adjusted"] < alpha) & (frame["agreement"] > frame["random_init_max"])
    return frame


def chance_corrected(agreement: float, chance: float) -> float:
    """``(agreement - chance) / (1 - chance)``: 0 at chance, 1 at perfect agreement, negative
    below chance (NaN when chance is 1 or unknown)."""
    if not np.isfinite(chance) or chance >= 1.0:
        return float("nan")
    return float((agreement - chance) / (1.0 - chance))


def facet_margins(alignment: pd.DataFrame, facets, target: float = MARGIN_TARGET
                  ) -> pd.DataFrame:
    """Does each assigned facet sit on its head? ``facets``: the fields of heads 0..k-1.

    One row per facet: its head, that head's chance-corrected agreement, the best other head
    and its score, ``margin`` = assigned / runner-up (inf when the runner-up is at or below
    chance), and ``passes``: the assigned head is the best of all heads by ``target``x.
    """
    heads = alignment[alignment["head"] >= 0]
    rows = []
    for head, field in enumerate(facets):
        scores = heads[heads["field"] == field].set_index("head")["chance_corrected"]
        if head not in scores.index:
            raise ParameterError(
                f"the alignment matrix has no row for head {head} and field {field!r}. Fix: "
                "compute it on the run's model with fields including every assigned facet")
        own = float(scores[head])
        others = scores.drop(index=head)
        runner = int(others.idxmax()) if len(others) else -1
        best_other = float(others.max()) if len(others) else float("nan")
        margin = own / best_other if best_other > 0 else (float("inf") if own > 0 else np.nan)
        rows.append({"facet": field, "head": head, "chance_corrected": own,
                     "runner_up_head": runner, "runner_up": best_other, "margin": margin,
                     "passes": bool(own > 0 and margin >= target)})
    return pd.DataFrame(rows, columns=["facet", "head", "chance_corrected", "runner_up_head",
                                       "runner_up", "margin", "passes"])


def head_specialisation(model, dataset: SeqDataset, alignment: pd.DataFrame, k: int = 10,
                        n_boot: int = DEFAULT_BOOTSTRAP, level: float = LEVEL,
                        seed: int = 0) -> pd.DataFrame:
    """Does a head put another field first than the other heads do, significantly?

    ``alignment``: :func:`alignment_matrix` of ``model`` (its ``perm_mean`` is each field's
    chance level). One row per head: ``ranking`` (fields by chance-corrected agreement, best
    first), ``best_field``, ``others_field`` (the field the other heads score highest on
    average), ``margin`` = cc(best_field) - cc(others_field) on this
    head with its bootstrap interval over items (``ci_low``, ``ci_high``; items resampled
    together for both fields), and ``specialised``: the best field differs from the other heads'
    and the interval excludes 0.
    """
    heads = alignment[alignment["head"] >= 0]
    fields = list(dict.fromkeys(heads["field"]))
    chance = heads.groupby("field")["perm_mean"].first()
    table = heads.pivot(index="head", columns="field", values="chance_corrected")[fields]
    best = {h: str(table.loc[h].idxmax()) for h in table.index}
    sub = head_embeddings(model)[1:]  # [V, H, d']
    codes = {f: encode_labels(item_labels(dataset, f)[1:])[0] for f in fields}  # f -> [V]
    rows = []
    for h in table.index:
        others = table.drop(index=h)
        others_field = str(others.mean().idxmax()) if len(others) else best[h]
        row = {"head": int(h), "ranking": " > ".join(table.loc[h].sort_values(
            ascending=False).index), "best_field": best[h], "others_field": others_field,
            "margin": float(table.loc[h, best[h]] - table.loc[h, others_field]),
            "ci_low": np.nan, "ci_high": np.nan, "specialised": False}
        if best[h] != others_field:
            pair = np.stack([per_item_agreement(sub[:, h], codes[f], k)
                             for f in (best[h], others_field)], axis=1)  # [V, 2]
            base = np.array([chance[best[h]], chance[others_field]])

            def margin_of(resampled: np.ndarray, base=base) -> np.ndarray:  # [B, V, 2] -> [B]
                cc = (np.nanmean(resampled, axis=1) - base) / (1 - base)  # [B, 2]
                return cc[:, 0] - cc[:, 1]

            low, high = bootstrap_ci(pair, n_boot, level, seed + int(h), statistic=margin_of)
            row.update(ci_low=low, ci_high=high, specialised=bool(low > 0))
        rows.append(row)
    return pd.DataFrame(rows)
