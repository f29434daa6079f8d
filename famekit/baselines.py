"""Non-neural reference points that share the model interface of :mod:`famekit.evaluation`.

:class:`Popularity` recommends the items seen most often in the training sequences, the same
list for every user. Any sequential model worth reporting must beat it; the gap says how much
the model learns from the order of a user's items rather than from item frequency alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from famekit.datasets.core import SeqDataset
from famekit.errors import ParameterError

__all__ = ["Popularity", "PopularityConfig"]


@dataclass
class PopularityConfig:
    """What :func:`famekit.evaluation.evaluate` reads from a model's ``config``."""

    n_items: int  # V; scores have V + 1 columns (column 0 = padding)
    # Popularity ignores the input, so evaluation only needs the last item of each row; the
    # history exclusion in `evaluate` always uses the whole input, whatever max_len is.
    max_len: int = 1
    kind: str = "popularity"


class Popularity(torch.nn.Module):
    """Score every item by its number of occurrences in the training sequences.

    >>> pop = Popularity.fit(dataset)
    >>> evaluate(pop, dataset)          # same call as for FAME / SASRec

    Only the training part of the leave-one-out split is counted (validation and test targets
    are not), so the baseline never sees the items it is evaluated on. Many items share a
    count: evaluation ranks ties pessimistically, which is the honest reading for this model.
    The counts are a buffer, so ``.to(device)`` moves them like any module's weights.
    """

    def __init__(self, counts: torch.Tensor):
        super().__init__()
        if counts.ndim != 1 or len(counts) < 1:
            raise ParameterError(f"counts must be a 1-D tensor of V + 1 entries, got shape "
                                 f"{tuple(counts.shape)}. Fix: build it with Popularity.fit")
        self.config = PopularityConfig(n_items=len(counts) - 1)
        self.register_buffer("counts", counts.to(torch.float32))  # [V+1]; index 0 = padding = 0

    @classmethod
    def fit(cls, dataset: SeqDataset) -> Popularity:
        """Count items over ``dataset.split().train_sequences()``."""
        train = dataset.split().train_sequences()
        flat = np.concatenate(train) if train else np.zeros(0, dtype=np.int32)
        counts = np.bincount(flat.astype(np.int64), minlength=dataset.n_items + 1)  # [V+1]
        counts[0] = 0  # padding is never a recommendation
        return cls(torch.from_numpy(counts.astype(np.float32)))

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, V+1]: the item counts, the same row for every sequence of ``input_ids`` [B, n]."""
        return self.counts.unsqueeze(0).expand(input_ids.shape[0], -1)  # [B, V+1]
