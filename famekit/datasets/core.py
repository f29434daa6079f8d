"""`SeqDataset`: the one in-memory form every dataset source produces.

Sequences are stored flat (CSR style) so that ML-20m's 20M interactions cost two numpy arrays,
not 138k Python lists: user ``u`` (0-based row) owns ``item_ids[offsets[u]:offsets[u + 1]]``,
in chronological order. Item ids are 1-based; 0 is reserved for padding everywhere in famekit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from famekit.datasets.missing import missing_mask
from famekit.errors import ParameterError

__all__ = ["EVAL_SPLITS", "MIN_SEQUENCE_LENGTH", "LeaveOneOutSplit", "SeqDataset"]

# A user needs one training item, one validation target and one test target.
MIN_SEQUENCE_LENGTH = 3
# The held-out splits: "valid" predicts the second-to-last item, "test" the last.
EVAL_SPLITS = ("valid", "test")


@dataclass
class SeqDataset:
    """Chronological item sequences of every user, plus item metadata.

    Attributes:
        name: registry name (``"beauty"``, ``"synthetic"``, ...) or ``"files"``.
        item_ids: int32 [total interactions], every user's items concatenated, 1-based.
        offsets: int64 [n_users + 1], user ``u`` owns ``item_ids[offsets[u]:offsets[u+1]]``.
        n_items: number of items ``V`` (ids run 1..V; some may never occur).
        items: DataFrame indexed by ``item_id`` (1..V) with the metadata columns the source
            has (``title``, ``brand``, ``top_category``, ``leaf_category``, ``categories``
            (lists), ``genres`` (lists), ``year``, ...). May have no columns.
        user_ids: int64 [n_users], the user ids of the source file (row ``u`` is user
            ``user_ids[u]``).
        users: optional DataFrame of user attributes indexed by the source user id.
        ground_truth: planted truth of a synthetic world (empty for real data).
        info: free-form provenance notes (source URLs, tie rule, ...).
    """

    name: str
    item_ids: np.ndarray
    offsets: np.ndarray
    n_items: int
    items: pd.DataFrame
    user_ids: np.ndarray
    users: pd.DataFrame | None = None
    ground_truth: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.item_ids = np.ascontiguousarray(self.item_ids, dtype=np.int32)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        self.user_ids = np.ascontiguousarray(self.user_ids, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) != len(self.user_ids) + 1:
            raise ValueError("offsets must have n_users + 1 entries")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.item_ids):
            raise ValueError("offsets must start at 0 and end at len(item_ids)")
        if len(self.item_ids) and (self.item_ids.min() < 1 or self.item_ids.max() > self.n_items):
            raise ValueError("item ids must lie in 1..n_items")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sequences(
        cls,
        name: str,
        sequences: list[np.ndarray] | list[list[int]],
        n_items: int | None = None,
        items: pd.DataFrame | None = None,
        user_ids=None,
        **kwargs,
    ) -> SeqDataset:
        """Build from a list of per-user item-id sequences (chronological, 1-based)."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = (
            np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences])
            if len(sequences)
            else np.zeros(0, dtype=np.int32)
        )
        if n_items is None:
            n_items = int(flat.max()) if len(flat) else 0
        if items is None:
            items = pd.DataFrame(index=pd.RangeIndex(1, n_items + 1, name="item_id"))
        if user_ids is None:
            user_ids = np.arange(1, len(sequences) + 1)
        return cls(name, flat, offsets, int(n_items), items, np.asarray(user_ids), **kwargs)

    # ------------------------------------------------------------------ access
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.item_ids)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n_users]: sequence length of every user."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """Items of user row ``user`` (0-based row, not the source user id), a view."""
        return self.item_ids[self.offsets[user] : self.offsets[user + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for u in range(self.n_users):
            yield self.sequence(u)

    def __len__(self) -> int:
        return self.n_users

    def item_popularity(self) -> np.ndarray:
        """int64 [n_items + 1]: interaction count of every item id (index 0 = padding = 0)."""
        return np.bincount(self.item_ids, minlength=self.n_items + 1).astype(np.int64)

    @property
    def fingerprint(self) -> str:
        """A short content hash of the interactions (not the metadata).

        Checkpoints record it so that a model is never evaluated on data it was not trained
        for; two loads of the same files give the same fingerprint on every machine.
        """
        h = hashlib.sha256()
        h.update(f"famekit-seq-v1|{self.n_items}|{self.n_users}|".encode())
        h.update(self.offsets.astype("<i8").tobytes())
        h.update(self.item_ids.astype("<i4").tobytes())
        return h.hexdigest()[:16]

    def split(self) -> LeaveOneOutSplit:
        """The leave-one-out split used everywhere in famekit (docs/fame-spec.md §5); one
        object per dataset, so its evaluation inputs are cut once."""
        split = self.__dict__.get("_split")
        if split is None or split.dataset is not self:
            split = self.__dict__["_split"] = LeaveOneOutSplit(self)
        return split

    def statistics(self) -> dict[str, Any]:
        """Users, items, interactions, length summary, density and metadata coverage."""
        lengths = self.lengths
        stats: dict[str, Any] = {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "len_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "len_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "len_min": int(lengths.min()) if len(lengths) else 0,
            "len_max": int(lengths.max()) if len(lengths) else 0,
            "density_pct": 100.0 * self.n_interactions / max(1, self.n_users * self.n_items),
        }
        for col in self.items.columns:
            stats[f"with_{col}"] = int((~missing_mask(self.items[col])).sum())
        return stats


class LeaveOneOutSplit:
    """Leave-one-out: last item = test target, second-to-last = validation target.

    * training sequence of a user = all but the last two items;
    * validation: input = training sequence, target = second-to-last item;
    * test: input = all but the last item (the validation item is history by then),
      target = last item.

    Users with fewer than ``MIN_SEQUENCE_LENGTH`` (3) items cannot give all three parts: they
    keep their items for training (all but the last two, possibly none) and are left out of
    validation and test. ``eval_users`` lists the users that are evaluated.
    """

    def __init__(self, dataset: SeqDataset):
        self.dataset = dataset
        lengths = dataset.lengths
        self.eval_users = np.flatnonzero(lengths >= MIN_SEQUENCE_LENGTH)
        self._eval_inputs: dict[str, tuple] = {}  # split -> (inputs, targets, rows), cut once

    def train_sequence(self, user: int) -> np.ndarray:
        """All but the last two items of user row ``user``."""
        seq = self.dataset.sequence(user)
        return seq[: max(0, len(seq) - 2)]

    def train_sequences(self) -> list[np.ndarray]:
        return [self.train_sequence(u) for u in range(self.dataset.n_users)]

    def eval_inputs(self, split: str) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """(input sequences, targets int64 [U], user rows int64 [U]) of ``split``."""
        if split not in EVAL_SPLITS:
            raise ParameterError(
                f"split must be 'valid' or 'test', got {split!r}. Fix: pass --split valid|test"
            )
        if split not in self._eval_inputs:
            cut = 2 if split == "valid" else 1
            inputs, targets = [], []
            for u in self.eval_users:
                seq = self.dataset.sequence(u)
                inputs.append(seq[: len(seq) - cut])
                targets.append(seq[len(seq) - cut])
            self._eval_inputs[split] = (inputs, np.asarray(targets, dtype=np.int64),
                                        self.eval_users.astype(np.int64))
        inputs, targets, rows = self._eval_inputs[split]
        # new containers each call: callers may filter or reorder them
        return list(inputs), targets.copy(), rows.copy()
