"""Collect FAME's routing internals for many users at once, as flat numpy arrays.

Every analysis of gates and routing starts here: one batched pass over the users of a split,
reading the hook points ``fame.hook_gate_weights`` and ``fame.hook_router_probs`` (and, on
request, ``fame.hook_head_repr``) at every real (non-padding) position. Results are stored flat,
like :class:`~famekit.datasets.SeqDataset`: user ``i`` of the collection owns positions
``offsets[i]:offsets[i+1]``, in chronological order, the last one being the state the model
uses to predict the split's target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from famekit.datasets import SeqDataset
from famekit.errors import ParameterError
from famekit.user_batches import UserBatches

__all__ = ["Activations", "collect_activations", "require_fame"]

GATES = "fame.hook_gate_weights"
ROUTER = "fame.hook_router_probs"
HEAD_REPR = "fame.hook_head_repr"


def require_fame(model) -> None:
    """Raise a clear error when ``model`` has no FAME layer (e.g. a SASRec run)."""
    names = getattr(model, "hook_dict", {})
    if GATES not in names:
        kind = getattr(getattr(model, "config", None), "kind", type(model).__name__)
        raise ParameterError(
            f"this analysis needs a FAME model, got {kind!r}. "
            "Fix: load a run trained with --model fame"
        )


@dataclass
class Activations:
    """Gate weights and router probabilities of many users, flat over positions.

    Attributes:
        users: int64 [U], dataset rows of the users collected.
        offsets: int64 [U + 1], user ``i`` owns positions ``offsets[i]:offsets[i+1]``.
        items: int64 [T], the input item at every position.
        flat_index: int64 [T], index of that item in ``dataset.item_ids`` (to join planted
            ground truth, which is aligned with ``item_ids``).
        gates: float32 [T, H], gate weights (sum to 1 over heads).
        router: float32 [T, H, N], router probabilities (sum to 1 over experts).
        head_repr: float32 [T, H, d'] or None, the head representations F^h.
        targets: int64 [U], the split's target item of each user.
        split: which split's inputs were used ("valid" or "test").
    """

    users: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    flat_index: np.ndarray
    gates: np.ndarray
    router: np.ndarray
    head_repr: np.ndarray | None
    targets: np.ndarray
    split: str

    @property
    def n_heads(self) -> int:
        return self.gates.shape[1]

    @property
    def n_experts(self) -> int:
        return self.router.shape[2]

    @property
    def last_positions(self) -> np.ndarray:
        """int64 [U]: the flat position of each user's most recent input item."""
        return self.offsets[1:] - 1

    @property
    def last_gates(self) -> np.ndarray:
        """float32 [U, H]: gate weights at each user's last position."""
        return self.gates[self.last_positions]

    def user_slice(self, i: int) -> slice:
        """Positions of the ``i``-th collected user (an index into ``users``)."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def index_of(self, user_row: int) -> int:
        """Index into ``users`` of dataset row ``user_row`` (clear error when not collected)."""
        hits = np.flatnonzero(self.users == user_row)
        if not len(hits):
            raise ParameterError(
                f"user row {user_row} is not in this collection ({len(self.users)} users of "
                f"split {self.split!r}). Fix: pick a user with at least 3 interactions"
            )
        return int(hits[0])


def collect_activations(
    model,
    dataset: SeqDataset,
    split: str = "test",
    users=None,
    batch_size: int = 256,
    head_repr: bool = False,
    device=None,
) -> Activations:
    """Run ``model`` over the ``split`` inputs of ``users`` (default: all) and keep its routing.

    Only the last ``max_len`` items of each input are seen by the model, so only those
    positions are collected. ``users`` that are not in the split (fewer than 3 items, or no
    such row) are refused with a :class:`ParameterError`; ``device`` works as in
    :func:`famekit.evaluation.evaluate` (None: the model's device).
    """
    require_fame(model)
    with UserBatches(model, dataset, split, users=users, batch_size=batch_size, device=device,
                     desc=f"activations {split}") as batches:
        cfg = model.config
        H, N = cfg.n_heads, cfg.n_experts
        # The model sees only the last max_len items of each input: only those are collected.
        lengths = np.minimum(batches.lengths, cfg.max_len)  # [U]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)  # [U + 1]
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        gates = np.empty((total, H), dtype=np.float32)
        router = np.empty((total, H, N), dtype=np.float32)
        reprs = np.empty((total, H, cfg.d_model // H), dtype=np.float32) if head_repr else None
        items = np.empty(total, dtype=np.int64)
        flat_index = np.empty(total, dtype=np.int64)
        for i, (row, seq) in enumerate(zip(batches.users, batches.inputs)):
            start = dataset.offsets[row] + len(seq) - lengths[i]
            flat_index[offsets[i] : offsets[i + 1]] = np.arange(start, start + lengths[i])
            items[offsets[i] : offsets[i + 1]] = seq[len(seq) - lengths[i] :]

        names = [GATES, ROUTER] + ([HEAD_REPR] if head_repr else [])
        for batch in batches:
            _, cache = model.run_with_cache(batch.input_ids, names_filter=names)
            real = (batch.input_ids != 0).cpu().numpy()  # [B, n]
            # Boolean indexing walks rows in order and positions left to right, i.e. each
            # user's positions chronologically, concatenated in batch order.
            dest = np.concatenate([np.arange(offsets[b], offsets[b + 1]) for b in batch.index])
            gates[dest] = cache[GATES].float().cpu().numpy()[real]  # [R, H]
            router[dest] = cache[ROUTER].float().cpu().numpy()[real]  # [R, H, N]
            if reprs is not None:
                reprs[dest] = cache[HEAD_REPR].float().cpu().numpy()[real]  # [R, H, d']
    return Activations(batches.users, offsets, items, flat_index, gates, router, reprs,
                       batches.targets, split)
