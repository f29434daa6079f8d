"""Turning variable-length sequences into padded batches.

famekit pads on the **left** (sequences are right-aligned, 0 = padding), so the most recent item
of every row sits at position -1 and "score the next item" is always ``hidden[:, -1]``. Batches
are trimmed to their longest row: models give position ids counted from each row's first real
item, so trimming never changes a row's result.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["pad_left"]


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
