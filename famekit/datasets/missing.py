"""The one rule for "this metadata value is missing", shared by statistics, labels and views.

A value is **missing** when it is None, a NaN / NA / NaT scalar, or an empty string, list,
tuple or array. Everything else is a value, including ``0``, ``False`` and placeholder words.

Placeholder words (:data:`PLACEHOLDERS`: Amazon's brand ``"Unknown"``, MovieLens-100K's genre
and title ``"unknown"``) count as missing only where ``placeholders=True`` asks for it: the
categorical labels analyses group items by (:mod:`famekit.analysis.metadata`). Statistics,
coverage tables and hover texts show them as values. Why the two differ, and what unifying
them would change: docs/decisions.md, "2026-12-01 · What counts as a missing metadata value".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PLACEHOLDERS", "is_missing_label", "missing_mask"]

# Words the sources write where they have no value.
PLACEHOLDERS = frozenset({"Unknown", "unknown", "nan"})


def is_missing_label(value, *, placeholders: bool = False) -> bool:
    """True when ``value`` is missing (see the module docstring); ``placeholders=True`` also
    counts the words of :data:`PLACEHOLDERS` as missing."""
    if isinstance(value, str):
        return value == "" or (placeholders and value in PLACEHOLDERS)
    if isinstance(value, (list, tuple, np.ndarray)):
        return np.size(value) == 0
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # an object pandas cannot test: it is a value
        return False


def missing_mask(values: pd.Series, *, placeholders: bool = False) -> pd.Series:
    """bool Series: :func:`is_missing_label` of every element of ``values``.

    Numeric, bool and datetime columns are tested at once (missing = NA); other columns
    (objects, strings, lists) element by element.
    """
    dtype = values.dtype
    if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            or pd.api.types.is_datetime64_any_dtype(dtype)):
        return values.isna().astype(bool)
    return values.map(lambda v: is_missing_label(v, placeholders=placeholders)).astype(bool)
