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
from famekit.evaluation import target_ranks
from famekit.user_batches import UserBatches
from famekit.validation import check_int, is_whole_number

__all__ = ["Anatomy", "head_scores", "recommendation_anatomy"]


@dataclass
class Anatomy:
    """The anatomy of one user's recommendations at one input position.

    Attributes:
        user: dataset row of the user.
        history: DataFrame of the user's input items (position, item, metadata).
        gates: float [H], gate weights at ``position``.
        fused: DataFrame of the fused top-k: rank, item, score, ``contrib h`` (s g_h P^h(v)) for
            every head, metadata columns.
        per_head: {head: DataFrame of that head's own top-k by P^h: rank, item, head_score,
            metadata}.
        target: the item the state at ``position`` predicts (the next input item, or the
            split's held-out item at the last position), and its fused rank (0-based,
            pessimistic, as in :mod:`famekit.evaluation`).
        position: the model position scored (0 = the oldest item the model sees); None or the
            last position: the state that predicts the held-out item.
        head_target_ranks: int64 [H], the target's rank among the candidates under each head's
            own score P^h alone (0-based, pessimistic); None when not computed.
        n_positions: how many positions the model sees (at most ``max_len``).
        target_title: the target's title in the item metadata (None without one).
    """

    user: int
    history: pd.DataFrame
    gates: np.ndarray
    fused: pd.DataFrame
    per_head: dict
    target: int
    target_rank: int
    position: int | None = None
    head_target_ranks: np.ndarray | None = None
    n_positions: int | None = None  # positions the model sees (None: the whole history)
    target_title: str | None = None

    @property
    def at_last_position(self) -> bool:
        """Whether this is the state that predicts the split's held-out item."""
        return self.position is None or self.history_row == len(self.history) - 1

    @property
    def history_row(self) -> int:
        """The history row of the scored position (the input can exceed ``max_len``)."""
        if self.position is None:
            return len(self.history) - 1
        seen = self.n_positions if self.n_positions is not None else len(self.history)
        return int(self.position) + len(self.history) - seen


def head_scores(model, input_ids: torch.Tensor,
                position: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(gates [B, H], head scores P^h(v) [B, V+1, H]) at column ``position`` of each row
    (default the last, which scores the next item after the whole input)."""
    require_fame(model)
    with torch.inference_mode():
        _, cache = model.run_with_cache(input_ids, names_filter=[GATES, HEAD_REPR])
        heads = cache[HEAD_REPR][:, position].float()  # [B, H, d']
        sub = model.item_sub_embeddings().float()  # [V+1, H, d']
        scores = torch.einsum("bhd,vhd->bvh", heads, sub)  # [B, V+1, H]
        gates = cache[GATES][:, position].float()  # [B, H]
    return gates.cpu().numpy(), scores.cpu().numpy()


def _with_metadata(frame: pd.DataFrame, dataset: SeqDataset, columns) -> pd.DataFrame:
    meta = dataset.items.reindex(frame["item"].to_numpy())[list(columns)].reset_index(drop=True)
    return pd.concat([frame.reset_index(drop=True), meta], axis=1)


def recommendation_anatomy(
    model, dataset: SeqDataset, user_row: int, k: int = 10, split: str = "test",
    exclude_history: bool = True, columns=None, position: int | None = None,
) -> Anatomy:
    """Top-k lists per head and fused, with score contributions, for dataset row ``user_row``.

    The user's ``split`` input is scored at model position ``position`` (0 = the oldest item
    the model sees; None = the last, the state that predicts the held-out item); a row that is
    not in the split is refused with a :class:`ParameterError`. Before the last position the
    target is the next input item and ``exclude_history`` drops only the items seen up to
    ``position`` (what the model has seen), so each state is ranked as if it were the last.
    """
    require_fame(model)
    if not is_whole_number(user_row):
        raise ParameterError(f"user_row must be a dataset row (a whole number), got "
                             f"{user_row!r}. Fix: pass a row in 0..{dataset.n_users - 1}")
    batches = UserBatches(model, dataset, split, users=[user_row], batch_size=1)
    k = check_int("k", k, minimum=1, fix="pass k=10")
    with batches:
        (batch,) = batches  # one user: one batch of one row, no padding: column = position
        n_positions = int(batch.input_ids.shape[1])
        if position is None:
            position = n_positions - 1
        elif not is_whole_number(position) or not 0 <= position < n_positions:
            raise ParameterError(f"position={position!r} is outside user row {user_row}'s "
                                 f"sequence. Fix: choose 0..{n_positions - 1}")
        position = int(position)
        gates, scores = head_scores(model, batch.input_ids, position)  # [1, H], [1, V+1, H]
    seq = batch.inputs[0]
    seen = position + len(seq) - n_positions + 1  # history rows up to this position
    target = int(batch.targets[0]) if seen == len(seq) else int(seq[seen])
    gates, scores = gates[0], scores[0]  # [H], [V+1, H]
    contrib = model.fused_scale * scores * gates[None, :]  # [V+1, H]
    fused = contrib.sum(axis=1)  # [V+1]
    blocked = np.zeros(len(fused), dtype=bool)
    blocked[0] = True
    if exclude_history:
        blocked[seq[:seen]] = True
        blocked[target] = False
    columns = [c for c in (columns or dataset.items.columns) if c in dataset.items.columns]

    def top(values: np.ndarray) -> np.ndarray:
        masked = np.where(blocked, -np.inf, values)
        if k < len(masked):  # the k best in any order, then sorted (ties by item id)
            best = np.argpartition(-masked, k - 1)[:k]
            kth = masked[best].min()
            best = np.flatnonzero(masked >= kth)  # every item tied with the k-th, too
        else:
            best = np.arange(len(masked))
        order = best[np.argsort(-masked[best], kind="stable")][:k]
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
    # the target's rank under the fused score and under each head's own, as the evaluation
    # ranks it (0-based, pessimistic, the items seen so far excluded)
    rows = torch.from_numpy(np.column_stack([fused, scores]).T.copy())  # [1 + H, V+1]
    seen_items = torch.from_numpy(np.asarray(seq[:seen], dtype=np.int64))[None]  # [1, seen]
    ranks = target_ranks(rows, torch.full((len(rows),), target, dtype=torch.long),
                         seen_items.expand(len(rows), -1) if exclude_history else None)
    target_rank, head_ranks = int(ranks[0]), ranks[1:].numpy().astype(np.int64)  # [H]
    history = _with_metadata(
        pd.DataFrame({"position": np.arange(len(seq)), "item": seq}), dataset, columns)
    title = (dataset.items["title"].get(target) if "title" in dataset.items.columns else None)
    return Anatomy(int(user_row), history, gates, _with_metadata(fused_frame, dataset, columns),
                   per_head, target, target_rank, position, head_ranks, n_positions,
                   str(title) if isinstance(title, str) and title else None)
