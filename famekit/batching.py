"""Turning variable-length sequences into padded batches.

famekit pads on the **left** (sequences are right-aligned, 0 = padding), so the most recent item
of every row sits at position -1 and "score the next item" is always ``hidden[:, -1]``. Batches
are trimmed to their longest row: models give position ids counted from each row's first real
item, so trimming never changes a row's result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NextItemBatches", "bucketed_batches", "next_item_pairs", "pad_left"]


def pad_left(sequences: Sequence[np.ndarray], max_len: int, width: int | None = None) -> np.ndarray:
    """Right-align the last ``max_len`` items of each sequence in an int64 [B, width] array.

    ``width`` defaults to the longest (truncated) sequence of the batch, so a batch of short
    sequences costs only as much as its longest member.
    """
    lengths = [min(len(s), max_len) for s in sequences]
    if width is None:
        width = max(lengths, default=0)
    out = np.zeros((len(sequences), width), dtype=np.int64)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        n = min(n, width)
        if n:
            out[row, width - n :] = seq[len(seq) - n :]
    return out


# ---------------------------------------------------------------------------------- training


def next_item_pairs(sequence: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one training sequence: ``s[:-1]`` predicts ``s[1:]``, last ``max_len``.

    Every position of the input predicts the item that follows it (docs/fame-spec.md §4), so a
    sequence of length L gives L - 1 training targets; both halves keep their last ``max_len``
    items so that position ``t`` of ``inputs`` is always followed by position ``t`` of
    ``targets``.
    """
    inputs, targets = sequence[:-1], sequence[1:]
    return inputs[-max_len:], targets[-max_len:]


def bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    noise: float = 0.1,
    min_rows: int = 1,
) -> list[np.ndarray]:
    """Group row indices into length-bucketed batches, in a random batch order.

    Rows are sorted by ``length * (1 + noise * u)`` with ``u ~ U(-1, 1)`` drawn from ``rng``
    (so equal lengths are shuffled and neighbouring lengths mix a little from epoch to epoch),
    cut into consecutive chunks of ``batch_size`` and the chunks are shuffled. A batch of rows
    of similar length trims to a narrow width: with Beauty's short sequences this is what
    brings a padded [256, 50] batch (89 % padding) down to a few columns (docs/fame-spec.md §4).

    A final chunk with fewer than ``min_rows`` rows is merged into the one before it (the
    distributed loop needs one row per rank). Returns a list of int64 index arrays.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(lengths) == 0:
        return []
    keys = lengths * (1.0 + noise * rng.uniform(-1.0, 1.0, size=len(lengths)))
    order = np.argsort(keys, kind="stable").astype(np.int64)
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < min_rows:
        tail = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], tail])
    return [chunks[i] for i in rng.permutation(len(chunks))]


class NextItemBatches:
    """Next-item training batches over a set of sequences, length-bucketed and trimmed.

    ``sequences`` are the users' training sequences (chronological, 1-based ids); rows with
    fewer than two items have no (input, target) pair and are left out. Each epoch draws its
    batch composition and order from the generator passed to :meth:`epoch`, so an epoch is a
    pure function of that generator's seed (what makes resumed runs equal uninterrupted ones).
    """

    def __init__(self, sequences: Sequence[np.ndarray], max_len: int, batch_size: int):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self.batch_size = batch_size
        keep = [s for s in sequences if len(s) >= 2]
        self.sequences = keep
        # Number of (input, target) pairs each row contributes: its trimmed input length.
        self.n_targets = np.fromiter(
            (min(len(s) - 1, max_len) for s in keep), dtype=np.int64, count=len(keep)
        )

    def __len__(self) -> int:
        """Number of usable rows (sequences with at least one target)."""
        return len(self.sequences)

    @property
    def total_targets(self) -> int:
        """Training targets per epoch: the number of non-padding target positions."""
        return int(self.n_targets.sum())

    def epoch(self, rng: np.random.Generator, min_rows: int = 1) -> list[np.ndarray]:
        """The row-index batches of one epoch (see :func:`bucketed_batches`)."""
        return bucketed_batches(self.n_targets, self.batch_size, rng, min_rows=min_rows)

    def materialise(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets), both int64 [len(rows), w] left-padded, w = longest row's length."""
        pairs = [next_item_pairs(self.sequences[r], self.max_len) for r in rows]
        inputs = pad_left([p[0] for p in pairs], self.max_len)  # [b, w]
        targets = pad_left([p[1] for p in pairs], self.max_len)  # [b, w]
        return inputs, targets
