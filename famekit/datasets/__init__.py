"""Datasets: one module per source, one registry.

>>> from famekit import datasets
>>> ds = datasets.load("synthetic")          # the embedded default, no network needed
>>> ds.n_users, ds.n_items, ds.items.columns
>>> train, valid, test = ds.split(), ...     # leave-one-out (see SeqDataset.split)

Real sources (``beauty``, ``sports``, ``toys``, ``ml-100k``, ``ml-1m``, ``ml-20m``) are fetched
from their public locations on first use, verified and cached (see :mod:`famekit.datasets.fetch`).
"""

from __future__ import annotations

import importlib

from famekit.datasets.core import EVAL_SPLITS, MIN_SEQUENCE_LENGTH, LeaveOneOutSplit, SeqDataset
from famekit.datasets.files import load_files, read_items_tsv, read_sequences
from famekit.errors import UnknownNameError

__all__ = [
    "DEFAULT_DATASET",
    "EVAL_SPLITS",
    "MIN_SEQUENCE_LENGTH",
    "LeaveOneOutSplit",
    "SeqDataset",
    "load",
    "load_files",
    "names",
    "read_items_tsv",
    "read_sequences",
]

DEFAULT_DATASET = "synthetic"

# name -> "module:function"; modules are imported on first use so that `import famekit` stays
# fast and a broken optional source cannot break the others.
_REGISTRY: dict[str, str] = {
    "synthetic": "famekit.datasets.synthetic:load",
    "beauty": "famekit.datasets.amazon:load_beauty",
    "sports": "famekit.datasets.amazon:load_sports",
    "toys": "famekit.datasets.amazon:load_toys",
    "ml-100k": "famekit.datasets.movielens:load_ml100k",
    "ml-1m": "famekit.datasets.movielens:load_ml1m",
    "ml-20m": "famekit.datasets.movielens:load_ml20m",
}


def names() -> list[str]:
    """Every dataset name :func:`load` accepts."""
    return sorted(_REGISTRY)


def load(name: str, cache_dir=None, **options) -> SeqDataset:
    """Load dataset ``name`` (fetching and caching it first if needed).

    ``cache_dir`` overrides the cache root (default ``$FAMEKIT_CACHE`` or ``~/.cache/famekit``).
    ``options`` go to the source (e.g. ``synthetic`` takes ``n_users``, ``seed``, ...).
    """
    if name not in _REGISTRY:
        raise UnknownNameError("dataset", name, _REGISTRY)
    module_name, func = _REGISTRY[name].split(":")
    loader = getattr(importlib.import_module(module_name), func)
    return loader(cache_dir=cache_dir, **options)
