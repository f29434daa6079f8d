"""Item and user labels derived from a dataset's metadata, for grouping and alignment.

Analyses compare model internals with *categorical* labels: one label per item (or user).
Datasets differ in what they have, so this module names the fields an analysis can use:

* single-valued columns are used as they are (``brand``, ``top_category``, ``leaf_category``,
  and the planted facets ``genre``, ``brand``, ``price_tier`` of the synthetic world);
* list columns give their **first** element (``genres`` -> ``genre``: MovieLens lists genres
  alphabetically in the source, so the first is arbitrary but stable; ``categories`` ->
  ``top_category`` when the dataset has no such column).

Missing values stay missing (``None``); analyses skip unlabelled items rather than invent a class.
A label is a non-missing string; placeholder words such as Amazon's ``"Unknown"`` brand are
missing here (:func:`famekit.datasets.missing.is_missing_label` with ``placeholders=True``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from famekit.datasets import SeqDataset
from famekit.datasets.missing import is_missing_label
from famekit.errors import ParameterError

__all__ = ["encode_labels", "item_labels", "label_fields", "user_majority_labels", "value_order"]

# Preferred order of the fields analyses look at, when a dataset has them.
_CANDIDATES = ("genre", "brand", "price_tier", "top_category", "leaf_category")


def value_order(field: str | None, values) -> list[str] | None:
    """The natural order of an ordinal field's ``values`` (cheapest first), or None when the
    field is categorical. Known ordinal fields: the synthetic world's ``price_tier``."""
    from famekit.datasets.synthetic import PRICE_TIERS

    if field != "price_tier":
        return None

    def rank(value: str) -> tuple:
        if value in PRICE_TIERS:
            return (0, PRICE_TIERS.index(value), "")
        number = value.rsplit(" ", 1)[-1]  # "Tier 7" beyond the named tiers
        return (1, int(number), "") if number.isdigit() else (2, 0, value)

    return sorted({str(v) for v in values}, key=rank)


def _derived_column(dataset: SeqDataset, field: str) -> pd.Series | None:
    items = dataset.items
    if field in items.columns:
        return items[field]
    if field == "genre" and "genres" in items.columns:
        return items["genres"].map(lambda v: v[0] if isinstance(v, list) and v else None)
    if field == "top_category" and "categories" in items.columns:
        return items["categories"].map(lambda v: v[0] if isinstance(v, list) and v else None)
    return None


def _is_label(value) -> bool:
    """A usable class label: a string that is not missing and not a placeholder word."""
    return isinstance(value, str) and not is_missing_label(value, placeholders=True)


def label_fields(dataset: SeqDataset, min_classes: int = 2) -> list[str]:
    """The categorical fields of ``dataset`` with at least ``min_classes`` distinct values."""
    fields = []
    for field in _CANDIDATES:
        column = _derived_column(dataset, field)
        if column is None:
            continue
        values = column.map(lambda v: v if _is_label(v) else None)
        if values.dropna().nunique() >= min_classes:
            fields.append(field)
    return fields


def item_labels(dataset: SeqDataset, field: str) -> np.ndarray:
    """object [n_items + 1]: the ``field`` label of every item id (index 0 and missing = None)."""
    column = _derived_column(dataset, field)
    if column is None:
        raise ParameterError(
            f"dataset {dataset.name!r} has no metadata field {field!r}. "
            f"Fix: use one of {label_fields(dataset) or '(none: this dataset has no labels)'}"
        )
    labels = np.full(dataset.n_items + 1, None, dtype=object)
    for item, value in column.items():
        if _is_label(value) and 1 <= item <= dataset.n_items:
            labels[item] = value
    return labels


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """object labels -> (int64 codes with -1 for missing, sorted class names)."""
    present = np.array([v is not None for v in labels])
    classes = sorted({v for v in labels[present]})
    index = {c: i for i, c in enumerate(classes)}
    codes = np.fromiter((index[v] if v is not None else -1 for v in labels), dtype=np.int64,
                        count=len(labels))
    return codes, classes


def user_majority_labels(
    dataset: SeqDataset, field: str, sequences: list[np.ndarray]
) -> np.ndarray:
    """object [len(sequences)]: the most frequent ``field`` label of each item sequence.

    Ties go to the label seen most recently (the user's current taste); a sequence without
    labelled items gets None.
    """
    labels = item_labels(dataset, field)
    out = np.full(len(sequences), None, dtype=object)
    for i, seq in enumerate(sequences):
        counts: dict[str, int] = {}
        last_seen: dict[str, int] = {}
        for pos, item in enumerate(seq):
            label = labels[item]
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
                last_seen[label] = pos
        if counts:
            out[i] = max(counts, key=lambda c: (counts[c], last_seen[c]))
    return out
