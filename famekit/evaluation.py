"""Full-ranking leave-one-out evaluation (docs/fame-spec.md §5), the protocol behind every
number famekit reports.

For every user with at least three items, the model scores *all* items as the next item after
the user's input sequence (validation: the training sequence; test: everything but the last
item). The target's **rank** is the number of candidate items that score strictly higher than
it, plus the candidates that score *the same* (ties are counted pessimistically, so a model that
gives every item the same score ranks every target last, never first). Ranks are 0-based:
rank 0 means the target scored above every other candidate.

Candidates are all item ids except

* the padding id 0 (always), and
* with ``exclude_history=True`` (the default, stated in every results table), every item of the
  user's **whole** input sequence, not only the ``max_len`` window the model sees.

The target itself is never excluded: if it also occurs in the user's history (a repeat
purchase), it is still ranked, against the remaining candidates.

Metrics, averaged over users: ``HR@k`` = share of users with rank < k; ``NDCG@k`` = mean of
``1 / log2(rank + 2)`` over users with rank < k (0 otherwise; one relevant item, so the ideal DCG
is 1); ``MRR`` = mean of ``1 / (rank + 1)`` (not truncated).

Memory stays bounded by the batch size: users are sorted by input length, each batch is trimmed
to its longest (``max_len``-truncated) input (:class:`famekit.user_batches.UserBatches`, the
pass shared with the analyses), scored as one [B, V+1] block, masked and reduced to
B ranks before the next batch. No users x items matrix ever exists. Sorting and trimming never
change a result (position ids count from each row's first real item), which a test pins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from famekit.datasets.core import SeqDataset
from famekit.errors import ParameterError
from famekit.user_batches import UserBatches

__all__ = [
    "CUTOFFS",
    "METRIC_NAMES",
    "batch_target_ranks",
    "evaluate",
    "hit_rate",
    "metrics_from_ranks",
    "mrr",
    "ndcg",
    "target_ranks",
]

# The cut-offs of every results table.
CUTOFFS: tuple[int, ...] = (5, 10, 20)
METRIC_NAMES: tuple[str, ...] = (
    *(f"HR@{k}" for k in CUTOFFS),
    *(f"NDCG@{k}" for k in CUTOFFS),
    "MRR",
)


# ---------------------------------------------------------------------------------------- metrics
def _as_rank_array(ranks) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ParameterError(f"ranks must be one-dimensional, got shape {ranks.shape}. "
                             "Fix: pass one 0-based rank per user")
    if len(ranks) and (ranks.min() < 0):
        raise ParameterError("ranks must be >= 0 (0 = the target scored above every candidate). "
                             "Fix: pass 0-based ranks")
    return ranks


def hit_rate(ranks, k: int) -> float:
    """Share of users whose target is in the top ``k`` (0-based ``rank < k``)."""
    ranks = _as_rank_array(ranks)
    return float(np.mean(ranks < k)) if len(ranks) else math.nan


def ndcg(ranks, k: int) -> float:
    """Mean of ``1 / log2(rank + 2)`` over users with ``rank < k``, 0 for the others.

    With a single relevant item the ideal DCG is 1, so DCG is already normalised.
    """
    ranks = _as_rank_array(ranks)
    if not len(ranks):
        return math.nan
    gains = np.where(ranks < k, 1.0 / np.log2(ranks.astype(np.float64) + 2.0), 0.0)
    return float(gains.mean())


def mrr(ranks) -> float:
    """Mean reciprocal rank ``1 / (rank + 1)`` over all users (no cut-off)."""
    ranks = _as_rank_array(ranks)
    if not len(ranks):
        return math.nan
    return float(np.mean(1.0 / (ranks.astype(np.float64) + 1.0)))


def metrics_from_ranks(ranks) -> dict[str, Any]:
    """Every metric of a results table from 0-based ranks, plus the number of ``users``.

    Use it to break results down by group, e.g.
    ``ranks.groupby("length_bucket")["rank"].apply(lambda r: pd.Series(metrics_from_ranks(r)))``.
    """
    ranks = _as_rank_array(ranks)
    out: dict[str, Any] = {}
    for k in CUTOFFS:
        out[f"HR@{k}"] = hit_rate(ranks, k)
    for k in CUTOFFS:
        out[f"NDCG@{k}"] = ndcg(ranks, k)
    out["MRR"] = mrr(ranks)
    out["users"] = len(ranks)
    return out


# ------------------------------------------------------------------------------------------ ranks
def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based pessimistic rank of each row's target among its candidates.

    Args:
        scores: float [B, V+1], column ``v`` = score of item ``v`` (column 0 = padding).
        targets: int64 [B], the item id to rank in each row (1..V).
        exclude: optional int64 [B, L] item ids to drop from each row's candidates (the user's
            history); 0 entries are padding and harmless since column 0 is always dropped.

    Returns:
        int64 [B]: candidates (padding, excluded items and the target itself left out) whose
        score is >= the target's score. A NaN score counts as lower than any number (-inf
        included), so a model that outputs NaN for the target ranks it last rather than first.
    """
    scores = scores.float()                                               # [B, V+1]
    # NaN compares false with everything, which would rank a NaN target first. Only a batch
    # holding NaN/inf pays for the cleaned copy (one more [B, V+1] float; memory:
    # docs/fame-spec.md §5).
    if not bool(torch.isfinite(scores).all()):
        scores = torch.nan_to_num(scores, nan=-math.inf)
    target_col = targets.view(-1, 1)                                      # [B, 1]
    target_scores = scores.gather(1, target_col)                          # [B, 1]
    # One [B, V+1] bool: "scores at least the target's", then the non-candidates are cleared
    # in place (padding column, history, the target itself, which never competes with itself
    # and is ranked even if it is in the history).
    counted = scores >= target_scores                                     # [B, V+1]
    counted[:, 0] = False
    if exclude is not None and exclude.numel():
        counted.scatter_(1, exclude, False)
    counted.scatter_(1, target_col, False)
    return counted.sum(dim=1)                                             # [B]


def batch_target_ranks(scores: torch.Tensor, batch, exclude_history: bool = True) -> np.ndarray:
    """int64 [B]: :func:`target_ranks` of a :class:`~famekit.user_batches.UserBatch`'s held-out
    items under ``scores`` [B, V+1], the users' whole inputs excluded when ``exclude_history``."""
    targets = torch.from_numpy(batch.targets).to(scores.device)                 # [B]
    exclude = (torch.from_numpy(_history_block(batch.inputs)).to(scores.device)  # [B, L]
               if exclude_history else None)
    return target_ranks(scores, targets, exclude).cpu().numpy()


# ------------------------------------------------------------------------------------- evaluate
def _check_model(model) -> None:
    if not callable(getattr(model, "score_last", None)):
        raise ParameterError(
            f"model ({type(model).__name__}) has no score_last(input_ids) method. Fix: pass a "
            "famekit model (build_model / load_run().model) or a baseline such as "
            "famekit.baselines.Popularity"
        )


def _history_block(inputs: Sequence[np.ndarray]) -> np.ndarray:
    """int64 [B, longest input]: each user's whole input sequence, right-padded with 0."""
    width = max((len(s) for s in inputs), default=0)
    out = np.zeros((len(inputs), width), dtype=np.int64)
    for row, seq in enumerate(inputs):
        out[row, : len(seq)] = seq
    return out


def evaluate(
    model,
    dataset: SeqDataset,
    split: str = "test",
    batch_size: int = 256,
    exclude_history: bool = True,
    device=None,
    progress: bool = True,
    return_ranks: bool = False,
):
    """Full-ranking leave-one-out metrics of ``model`` on ``dataset`` (see the module docstring).

    Args:
        model: anything with ``score_last(input_ids [B, n]) -> [B, V+1]`` and ``config.max_len``
            (FAME, SASRec, :class:`famekit.baselines.Popularity`). An ``nn.Module`` is put in
            eval mode for the call and restored afterwards.
        dataset: the :class:`SeqDataset` the model was trained on.
        split: ``"valid"`` or ``"test"``.
        batch_size: users scored at once; memory is O(batch_size x V).
        exclude_history: drop the user's whole input sequence from the candidates (the
            target itself is always ranked). False: only the padding id is dropped.
        device: where to score. None: the model's device. Given: an ``nn.Module`` model is
            moved there (like ``model.to(device)``).
        progress: show a tqdm bar over users.
        return_ranks: also return a DataFrame with one row per evaluated user: ``user``
            (0-based dataset row), ``target``, ``rank`` (0-based, pessimistic), ``input_length``
            (whole input, not truncated). Feed groups of it to :func:`metrics_from_ranks`.

    Returns:
        ``{"HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR", "users"}`` (floats,
        ``users`` an int), or ``(metrics, ranks_frame)`` with ``return_ranks=True``.
    """
    _check_model(model)
    n_columns = dataset.n_items + 1
    with UserBatches(model, dataset, split, batch_size=batch_size, device=device,
                     progress=progress, desc=f"evaluate {split}") as batches:
        ranks = np.empty(len(batches), dtype=np.int64)  # [U]
        for batch in batches:
            scores = model.score_last(batch.input_ids)                                  # [B, V+1]
            n_rows = len(batch.index)
            if scores.ndim != 2 or scores.shape != (n_rows, n_columns):
                raise ParameterError(
                    f"model.score_last returned shape {tuple(scores.shape)} for {n_rows} "
                    f"users, expected ({n_rows}, {n_columns}) = (users, n_items + 1) for "
                    f"dataset {dataset.name!r}. Fix: evaluate the model on the dataset it was "
                    "trained on (same n_items)"
                )
            ranks[batch.index] = batch_target_ranks(scores, batch, exclude_history)

    metrics = metrics_from_ranks(ranks)
    if not return_ranks:
        return metrics
    frame = pd.DataFrame({"user": batches.users, "target": batches.targets, "rank": ranks,
                          "input_length": batches.lengths})
    return metrics, frame
