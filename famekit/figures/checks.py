"""Input checks shared by the figure builders, and item hover texts.

Views take the DataFrames of :mod:`famekit.analysis`; when a frame lacks a column, a head does
not exist or labels do not match the points, the builder raises a
:class:`~famekit.errors.ParameterError` that names the argument and says which analysis
function produces the right input, instead of a KeyError deep inside plotly.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from famekit.datasets.missing import is_missing_label
from famekit.errors import DataFormatError, ParameterError
from famekit.figures.style import shorten
from famekit.validation import is_whole_number

__all__ = [
    "choice",
    "head_columns",
    "item_hover",
    "item_label",
    "one_of",
    "positive_int",
    "read_csv_file",
    "require_frame",
    "select",
]


def read_csv_file(path, missing_fix: str, unreadable_fix: str) -> pd.DataFrame:
    """A CSV file as a DataFrame; a missing or unreadable file is a famekit error with a fix."""
    if not path.is_file():
        raise ParameterError(f"{path} does not exist. Fix: {missing_fix}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataFormatError(path, None, f"cannot be read as CSV ({err})",
                              unreadable_fix) from err


def require_frame(frame, arg: str, columns: Iterable[str], producer: str,
                  allow_empty: bool = False) -> pd.DataFrame:
    """``frame`` itself, after checking it is a DataFrame with ``columns`` (and rows)."""
    if not isinstance(frame, pd.DataFrame):
        raise ParameterError(
            f"{arg} must be a pandas DataFrame, got {type(frame).__name__}. "
            f"Fix: pass the result of {producer}"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParameterError(
            f"{arg} lacks the column(s) {missing} (it has {list(frame.columns)[:12]}). "
            f"Fix: pass the result of {producer}"
        )
    if frame.empty and not allow_empty:
        raise ParameterError(f"{arg} has no rows, so there is nothing to draw. "
                             f"Fix: pass a non-empty result of {producer}")
    return frame


def head_columns(frame: pd.DataFrame, arg: str, producer: str) -> list[int]:
    """The head numbers of a frame's ``"head 0"``, ``"head 1"``, ... columns (at least one)."""
    heads = []
    for column in frame.columns:
        if isinstance(column, str) and column.startswith("head "):
            suffix = column[len("head "):]
            if suffix.isdigit():
                heads.append(int(suffix))
    if not heads:
        raise ParameterError(
            f"{arg} has no 'head <h>' columns (it has {list(frame.columns)[:12]}). "
            f"Fix: pass the result of {producer}"
        )
    return sorted(heads)


def select(requested, available: Sequence, arg: str, what: str = "value") -> list:
    """``available`` filtered by ``requested`` (None = all; one value or a list), in the
    requested order, with a clear error for values that do not exist."""
    # numpy scalars -> Python values, so that messages read [0, 1] and not [np.int64(0), ...]
    available = [v.item() if isinstance(v, np.generic) else v for v in available]
    if requested is None:
        return available
    original = requested
    if isinstance(requested, (str, numbers.Integral)) or not isinstance(requested, Iterable):
        requested = [requested]
    requested = list(requested)
    if not requested:
        raise ParameterError(f"{arg} is empty. Fix: pass None (all) or some of {available}")
    normalised = []
    for value in requested:
        if is_whole_number(value):
            value = int(value)
        if value not in available:
            raise ParameterError(
                f"{arg}={original!r}: {what} {value!r} does not exist. "
                f"Fix: choose from {available}"
            )
        if value not in normalised:
            normalised.append(value)
    return normalised


def one_of(value, available: Sequence, arg: str, what: str = "value"):
    """A single ``value`` that must be in ``available`` (e.g. one head)."""
    if isinstance(value, (list, tuple, set, np.ndarray)):
        raise ParameterError(f"{arg}={value!r} must be a single {what}, not a list. "
                             f"Fix: pass one of {list(available)}")
    return select(value, available, arg, what)[0]


def positive_int(value, arg: str, allow_none: bool = True) -> int | None:
    """``value`` as an int >= 1 (None passes when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not is_whole_number(value) or value < 1:
        raise ParameterError(f"{arg}={value!r} is invalid. Fix: pass a positive integer")
    return int(value)


def choice(value, arg: str, choices: Sequence):
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ParameterError(f"{arg}={value!r} is invalid. Fix: use one of {list(choices)}")
    return value


def _as_text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return " > ".join(str(v) for v in list(value)[:3])
    return str(value)


def _check_items(items, arg: str = "items") -> None:
    if items is not None and not isinstance(items, (pd.DataFrame, Mapping, pd.Series)):
        raise ParameterError(
            f"{arg} must be the dataset's item table (dataset.items, a DataFrame indexed by "
            f"item id), a Series or a dict of item id -> text, got {type(items).__name__}. "
            "Fix: pass items=dataset.items"
        )


def item_label(items, item_id: int, field: str = "title", limit: int = 40) -> str:
    """A short label for one item: its ``field`` (e.g. title) when known, else ``item <id>``."""
    _check_items(items)
    item_id = int(item_id)
    value = None
    if isinstance(items, pd.DataFrame):
        if field in items.columns and item_id in items.index:
            value = items.at[item_id, field]
    elif items is not None:
        value = items.get(item_id)
    if is_missing_label(value):
        return f"item {item_id}"
    return shorten(_as_text(value), limit)


def item_hover(items, item_ids, fields: Sequence[str] = ("title", "brand", "top_category",
                                                         "genre")) -> list[str]:
    """One hover text per id: ``item <id>`` plus the first few known metadata ``fields``.

    ``items`` is ``dataset.items`` (a DataFrame indexed by item id), a Series/dict of item id
    -> text, or None (ids only). Lists (``categories``) show their first entries.
    """
    _check_items(items)
    ids = np.asarray(item_ids).astype(np.int64)
    if isinstance(items, pd.DataFrame):
        present = [f for f in fields if f in items.columns]
        table = items.reindex(ids)[present] if present else None
    texts = []
    for row, item in enumerate(ids):
        parts = [f"item {int(item)}"]
        if isinstance(items, pd.DataFrame) and table is not None:
            for field in present:
                value = table.iat[row, present.index(field)]
                if not is_missing_label(value):
                    parts.append(f"{field}: {shorten(_as_text(value), 60)}")
        elif items is not None:
            value = items.get(int(item))
            if not is_missing_label(value):
                parts.append(shorten(_as_text(value), 60))
        texts.append("<br>".join(parts))
    return texts
