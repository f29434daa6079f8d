"""Cross-check (no RecBole needed): the bridge ranks exactly as famekit's evaluator does.

``recbole_bridge.famekit_ranks`` re-implements famekit's rank definition inside the RecBole venv
(which cannot import famekit). This script feeds it a stand-in model with integer-valued
embeddings (so exact ties occur) and a permuted famekit->internal id mapping, and compares its
masked and unmasked ranks with :func:`famekit.evaluation.target_ranks` on the same scores.
Exit status 1 on any difference.

    .venv/bin/python benchmarks/check_recbole_bridge.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recbole_bridge import SplitInputs, famekit_ranks

from famekit.batching import pad_left
from famekit.evaluation import target_ranks

N_ITEMS, N_USERS = 300, 97


class LastItemModel(torch.nn.Module):
    """RecBole-shaped stand-in: ``forward(item_seq right-padded, lengths)`` -> [B, d] state."""

    def __init__(self):
        super().__init__()
        self.item_embedding = torch.nn.Embedding(N_ITEMS + 1, 8)
        with torch.no_grad():  # small integers: many exact score ties
            self.item_embedding.weight.copy_(torch.randint(-2, 3, (N_ITEMS + 1, 8)).float())

    def forward(self, item_seq, item_seq_len):
        rows = torch.arange(len(item_seq_len))
        return self.item_embedding(item_seq[rows, item_seq_len - 1])  # [B, d]


def main() -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    to_internal = torch.zeros(N_ITEMS + 1, dtype=torch.long)                # [V+1]
    to_internal[1:] = torch.from_numpy(rng.permutation(N_ITEMS) + 1)
    model = LastItemModel()
    seqs = [rng.integers(1, N_ITEMS + 1, rng.integers(1, 80)) for _ in range(N_USERS)]
    targets = rng.integers(1, N_ITEMS + 1, N_USERS)
    lengths = np.array([len(s) for s in seqs])
    arrays = {"t_flat": np.concatenate(seqs),
              "t_offsets": np.concatenate([[0], np.cumsum(lengths)]),
              "t_targets": targets, "t_users": np.arange(N_USERS)}
    masked, unmasked = famekit_ranks(model, SplitInputs(arrays, "t"), to_internal, max_len=50,
                                     batch_size=32)

    last = torch.tensor([s[-1] for s in seqs])
    with torch.no_grad():
        states = model.item_embedding(to_internal[last])                    # [U, d]
        scores = (states @ model.item_embedding.weight.T)[:, to_internal]   # [U, V+1]
    target_t = torch.from_numpy(targets)
    expected_masked = target_ranks(scores, target_t, torch.from_numpy(pad_left(seqs, 200)))
    expected_unmasked = target_ranks(scores, target_t)
    ties = int((scores == scores.gather(1, target_t.view(-1, 1))).sum()) - N_USERS
    ok_masked = np.array_equal(masked, expected_masked.numpy())
    ok_unmasked = np.array_equal(unmasked, expected_unmasked.numpy())
    print(f"masked ranks equal: {ok_masked}; unmasked ranks equal: {ok_unmasked}; "
          f"tied candidates: {ties}")
    return 0 if ok_masked and ok_unmasked and ties > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
