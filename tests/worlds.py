"""Small datasets and archives that several test files build (``from worlds import ...``).

The synthetic facet worlds with planted truth come from ``famekit.datasets.synthetic.generate``
(and the session fixtures ``tiny_world`` / ``tiny_fame_run`` in ``conftest.py``); the datasets
here have no structure at all: uniformly random items, for tests of the machinery (training,
checkpoints, evaluation) where what the model learns does not matter.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from famekit.datasets import SeqDataset


def random_dataset(name: str = "tiny", n_users: int = 12, n_items: int = 20,
                   longest: int = 10, seed: int = 0) -> SeqDataset:
    """``n_users`` sequences of 3..``longest - 1`` uniformly random items out of 1..``n_items``
    (the same dataset for the same arguments, on every machine)."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, n_items + 1, size=rng.integers(3, longest))
                 for _ in range(n_users)]
    return SeqDataset.from_sequences(name, sequences, n_items=n_items)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip archive holding ``members`` (name -> bytes), built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
