"""Causal knockouts: switch a head off, or force a head's router onto one expert, and measure
what full-ranking accuracy loses, overall and per metadata group of the target item.

Both interventions are hook functions on FAME's canonical activations (no model surgery):

* head knockout: ``fame.hook_gate_weights`` -> the removed heads' gates set to 0 and the rest
  renormalised to sum to 1 (removing all heads but one = scoring with that head alone);
* expert forcing: ``fame.hook_router_probs`` -> one head's router replaced by a one-hot on the
  chosen expert.

Every change comes with a paired percentile-bootstrap interval: the same users are scored with
and without the intervention, so the interval resamples users and averages their own changes
(``delta NDCG@10 low`` / ``high``), which is much narrower than comparing two independent means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from famekit.analysis.activations import GATES, ROUTER, require_fame
from famekit.analysis.stats import DEFAULT_BOOTSTRAP, bootstrap_ci
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.evaluation import evaluate, metrics_from_ranks
from famekit.validation import is_whole_number

__all__ = [
    "evaluate_intervention",
    "expert_forcing_table",
    "force_expert_hook",
    "head_knockout_table",
    "remove_heads_hook",
    "subsample_users",
]


def remove_heads_hook(heads, n_heads: int):
    """A gate hook that zeroes ``heads`` and renormalises the remaining gate weights."""
    heads = sorted(set(int(h) for h in heads))
    if any(not 0 <= h < n_heads for h in heads):
        raise ParameterError(f"heads {heads} out of range. Fix: choose from 0..{n_heads - 1}")
    if len(heads) >= n_heads:
        raise ParameterError("cannot remove every head. Fix: keep at least one head")

    def hook(gates: torch.Tensor, hook=None) -> torch.Tensor:  # [batch, pos, head]
        keep = torch.ones(n_heads, dtype=gates.dtype, device=gates.device)
        keep[heads] = 0.0
        kept = gates * keep
        return kept / kept.sum(dim=-1, keepdim=True)

    return hook


def force_expert_hook(head: int, expert: int, n_heads: int, n_experts: int):
    """A router hook that sends every position of ``head`` to ``expert`` (one-hot)."""
    if not (0 <= head < n_heads and 0 <= expert < n_experts):
        raise ParameterError(
            f"head {head} / expert {expert} out of range. "
            f"Fix: head in 0..{n_heads - 1}, expert in 0..{n_experts - 1}"
        )

    def hook(probs: torch.Tensor, hook=None) -> torch.Tensor:  # [batch, pos, head, expert]
        forced = probs.clone()
        forced[:, :, head, :] = 0.0
        forced[:, :, head, expert] = 1.0
        return forced

    return hook


def subsample_users(dataset: SeqDataset, max_users: int | None, seed: int = 0) -> SeqDataset:
    """The same dataset restricted to ``max_users`` random users (all when None)."""
    if max_users is not None and (not is_whole_number(max_users) or max_users < 1):
        raise ParameterError(f"max_users={max_users!r} is invalid. Fix: pass a whole number "
                             ">= 1, or None for every user")
    if max_users is None or max_users >= dataset.n_users:
        return dataset
    rows = np.sort(np.random.default_rng(seed).choice(dataset.n_users, max_users, replace=False))
    sub = SeqDataset.from_sequences(
        dataset.name, [dataset.sequence(r) for r in rows], dataset.n_items, dataset.items,
        dataset.user_ids[rows],
    )
    sub.info = {**dataset.info, "subsample_of_rows": rows}
    return sub


def evaluate_intervention(model, dataset: SeqDataset, fwd_hooks=(), split: str = "test",
                          batch_size: int = 256):
    """(metrics, per-user rank frame) of ``model`` with ``fwd_hooks`` attached."""
    with model.hooks(fwd_hooks):
        return evaluate(model, dataset, split=split, batch_size=batch_size, progress=False,
                        return_ranks=True)


DELTA_CUTOFF = 10  # the deltas (and their intervals) are of HR@10 and NDCG@10


def _per_user(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """float [U] each: every user's HR@10 and NDCG@10 (their means are the metrics)."""
    hit = ranks < DELTA_CUTOFF
    return {f"HR@{DELTA_CUTOFF}": hit.astype(float),
            f"NDCG@{DELTA_CUTOFF}": np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)}


def _grouped(label: str, ranks: pd.DataFrame, groups: np.ndarray | None,
             base: pd.DataFrame | None = None, n_boot: int = DEFAULT_BOOTSTRAP,
             seed: int = 0) -> list[dict]:
    """Metrics of ``ranks`` overall and per target group; with ``base`` (the unmodified
    model's ranks of the same users), the paired bootstrap interval of each delta."""
    selections = [("all", np.ones(len(ranks), dtype=bool))]
    if groups is not None:
        target_groups = groups[ranks["target"].to_numpy()]
        selections += [(g, np.array([v == g for v in target_groups]))
                       for g in sorted({v for v in target_groups if v is not None})]
    if base is not None and not np.array_equal(base["user"].to_numpy(), ranks["user"].to_numpy()):
        raise ParameterError("the knocked-out and unmodified passes scored different users. "
                             "Fix: evaluate both on the same dataset and split")
    mine = _per_user(ranks["rank"].to_numpy())
    theirs = _per_user(base["rank"].to_numpy()) if base is not None else None
    rows = []
    for group, sel in selections:
        row = {"intervention": label, "group": group,
               **metrics_from_ranks(ranks["rank"].to_numpy()[sel])}
        if theirs is not None:
            for metric in mine:
                paired = mine[metric][sel] - theirs[metric][sel]  # [users of the group]
                row[f"delta {metric} low"], row[f"delta {metric} high"] = bootstrap_ci(
                    paired, n_boot=n_boot, seed=seed)
        rows.append(row)
    return rows


def _with_deltas(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    base = frame[frame["intervention"] == "none"].set_index("group")
    for metric in ("HR@10", "NDCG@10"):
        frame[f"delta {metric}"] = frame[metric] - frame["group"].map(base[metric])
        frame[f"relative {metric}"] = frame[f"delta {metric}"] / frame["group"].map(
            base[metric]).replace(0.0, np.nan)
        for end in ("low", "high"):  # the unmodified model differs from itself by nothing
            column = f"delta {metric} {end}"
            if column in frame:
                frame.loc[frame["intervention"] == "none", column] = 0.0
    return frame


def head_knockout_table(
    model, dataset: SeqDataset, item_groups: np.ndarray | None = None, split: str = "test",
    max_users: int | None = None, seed: int = 0, only: bool = False,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """HR/NDCG with each head removed (or, with ``only=True``, with each head alone).

    ``item_groups``: object [V+1] labels of items (e.g. ``item_labels(ds, "top_category")``);
    metrics are broken down by the label of each user's *target* item. Columns:
    intervention, group, HR@k, NDCG@k, MRR, users, delta/relative HR@10 and NDCG@10 against
    the unmodified model in the same group, and ``delta HR@10 low`` / ``high`` and ``delta
    NDCG@10 low`` / ``high``: their paired bootstrap interval over users (``n_boot`` resamples,
    95 %).
    """
    require_fame(model)
    data = subsample_users(dataset, max_users, seed)
    H = model.config.n_heads
    _, base = evaluate_intervention(model, data, split=split)
    rows = _grouped("none", base, item_groups)
    for h in range(H):
        removed = [x for x in range(H) if x != h] if only else [h]
        label = f"only head {h}" if only else f"remove head {h}"
        _, ranks = evaluate_intervention(model, data, [(GATES, remove_heads_hook(removed, H))],
                                         split)
        rows += _grouped(label, ranks, item_groups, base, n_boot, seed)
    return _with_deltas(rows)


def expert_forcing_table(
    model, dataset: SeqDataset, heads=None, item_groups: np.ndarray | None = None,
    split: str = "test", max_users: int | None = None, seed: int = 0,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """HR/NDCG with head h's router forced onto expert e, for every (h, e) of ``heads``; the
    columns of :func:`head_knockout_table`, intervals included."""
    require_fame(model)
    data = subsample_users(dataset, max_users, seed)
    H, N = model.config.n_heads, model.config.n_experts
    heads = range(H) if heads is None else heads
    _, base = evaluate_intervention(model, data, split=split)
    rows = _grouped("none", base, item_groups)
    for h in heads:
        for e in range(N):
            _, ranks = evaluate_intervention(
                model, data, [(ROUTER, force_expert_hook(h, e, H, N))], split)
            rows += _grouped(f"head {h} -> expert {e}", ranks, item_groups, base, n_boot, seed)
    return _with_deltas(rows)
