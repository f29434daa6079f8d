"""Per-user recommendation anatomy: what each head recommends, what the gate makes of it, and
every fused score decomposed into gate x head-score contributions.

For the user's state at the last input position, FAME's fused score of item v is
``P(v) = s * sum_h g_h * P^h(v)`` with ``P^h(v) = F^h . x_v^h`` and the constant
``s = model.fused_scale`` (see ``ModelConfig.fused_scale``); head h contributes
``s * g_h * P^h(v)``. This module recomputes those terms
from the cached head representations, gates and item sub-embeddings; tests pin that the sum
equals ``model.score_last``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from famekit.analysis.activations import GATES, HEAD_REPR, require_fame
from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.user_batches import UserBatches
from famekit.validation import check_int, is_whole_number

__all__ = ["Anatomy", "head_scores", "recommendation_anatomy"]


@dataclass
class Anatomy:
    """The anatomy of one user's recommendations.

    Attributes:
        user: dataset row of the user.
        history: DataFrame of the user's input items (position, item, metadata).
        gates: float [H], gate weights at the last position.
        fused: DataFrame of the fused top-k: rank, item, score, ``contrib h`` (s g_h P^h(v)) for
            every head, metadata columns.
        per_head: {head: DataFrame of that head's own top-k by P^h: rank, item, head_score,
            metadata}.
        target: the split's held-out item, and its fused rank among the candidates.
    """

    user: int
    history: pd.DataFrame
    gates: np.ndarray
    fused: pd.DataFrame
    per_head: dict
    target: int
    target_rank: int


def head_scores(model, input_ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(gates [B, H], head scores P^h(v) [B, V+1, H]) at the last position of each row."""
    require_fame(model)
    with torch.inference_mode():
        _, cache = model.run_with_cache(input_ids, names_filter=[GATES, HEAD_REPR])
        heads = cache[HEAD_REPR][:, -1].float()  # [B, H, d']
        sub = model.item_sub_embeddings().float()  # [V+1, H, d']
        scores = torch.einsum("bhd,vhd->bvh", heads, sub)  # [B, V+1, H]
        gates = cache[GATES][:, -1].float()  # [B, H]
    return gates.cpu().numpy(), scores.cpu().numpy()


def _with_metadata(frame: pd.DataFrame, dataset: SeqDataset, columns) -> pd.DataFrame:
    meta = dataset.items.reindex(frame["item"].to_numpy())[list(columns)].reset_index(drop=True)
    return pd.concat([frame.reset_index(drop=True), meta], axis=1)


def recommendation_anatomy(
    model, dataset: SeqDataset, user_row: int, k: int = 10, split: str = "test",
    exclude_history: bool = True, columns=None,
) -> Anatomy:
    """Top-k lists per head and fused, with score contributions, for dataset row ``user_row``.

    The user's ``split`` input is scored once at the last position (the state that predicts the
    held-out item); a row that is not in the split is refused with a :class:`ParameterError`.
    """
    require_fame(model)
    if not is_whole_number(user_row):
        raise ParameterError(f"user_row must be a dataset row (a whole number), got "
                             f"{user_row!r}. Fix: pass a row in 0..{dataset.n_users - 1}")
    batches = UserBatches(model, dataset, split, users=[user_row], batch_size=1)
    k = check_int("k", k, minimum=1, fix="pass k=10")
    with batches:
        (batch,) = batches  # one user: one batch of one row
        gates, scores = head_scores(model, batch.input_ids)  # [1, H], [1, V+1, H]
    seq, target = batch.inputs[0], int(batch.targets[0])
    gates, scores = gates[0], scores[0]  # [H], [V+1, H]
    contrib = model.fused_scale * scores * gates[None, :]  # [V+1, H]
    fused = contrib.sum(axis=1)  # [V+1]
    blocked = np.zeros(len(fused), dtype=bool)
    blocked[0] = True
    if exclude_history:
        blocked[seq] = True
        blocked[target] = False
    columns = [c for c in (columns or dataset.items.columns) if c in dataset.items.columns]

    def top(values: np.ndarray) -> np.ndarray:
        masked = np.where(blocked, -np.inf, values)
        order = np.argsort(-masked, kind="stable")[:k]
        return order[np.isfinite(masked[order])]

    best = top(fused)
    fused_frame = pd.DataFrame({"rank": np.arange(1, len(best) + 1), "item": best,
                                "score": fused[best]})
    for h in range(len(gates)):
        fused_frame[f"contrib {h}"] = contrib[best, h]
    per_head = {}
    for h in range(len(gates)):
        items = top(scores[:, h])
        per_head[h] = _with_metadata(
            pd.DataFrame({"rank": np.arange(1, len(items) + 1), "item": items,
                          "head_score": scores[items, h]}), dataset, columns)
    candidates = np.where(blocked, -np.inf, fused)
    # 0-based and pessimistic, as in famekit.evaluation: items tied with the target rank above
    # it (the target itself is always a candidate and is not counted).
    target_rank = int((candidates >= fused[target]).sum()) - 1
    history = _with_metadata(
        pd.DataFrame({"position": np.arange(len(seq)), "item": seq}), dataset, columns)
    return Anatomy(int(user_row), history, gates, _with_metadata(fused_frame, dataset, columns),
                   per_head, target, target_rank)
