"""The dataset statistics table (``python -m famekit.datasets info``, ``famekit data info``).

One row per dataset: users, items, interactions, sequence length (mean / median / max),
density, and metadata coverage: the percentage of items that have a title, a ``text_id``, a
brand, at least one category or genre, a year. A coverage column is empty (NaN) where the
source has no such column at all, which is different from 0 %.
"""

from __future__ import annotations

import pandas as pd

from famekit.datasets import DEFAULT_DATASET, load
from famekit.datasets import names as dataset_names
from famekit.datasets.amazon import SOURCES as AMAZON_SOURCES
from famekit.datasets.core import SeqDataset
from famekit.datasets.fetch import is_downloaded
from famekit.datasets.missing import missing_mask
from famekit.datasets.movielens import SOURCES as MOVIELENS_SOURCES
from famekit.errors import UnknownNameError

__all__ = [
    "COVERAGE_COLUMNS",
    "dataset_statistics",
    "default_info_names",
    "format_table",
    "statistics_table",
]

# Metadata columns whose coverage the table reports, in this order.
COVERAGE_COLUMNS = ("title", "text_id", "brand", "categories", "genres", "year")


def dataset_statistics(dataset: SeqDataset) -> dict[str, object]:
    """The table row of one loaded dataset."""
    lengths = dataset.lengths
    row: dict[str, object] = {
        "users": dataset.n_users,
        "items": dataset.n_items,
        "interactions": dataset.n_interactions,
        "len_mean": float(lengths.mean()) if len(lengths) else 0.0,
        "len_median": float(pd.Series(lengths).median()) if len(lengths) else 0.0,
        "len_max": int(lengths.max()) if len(lengths) else 0,
        "density_pct": 100.0 * dataset.n_interactions / max(1, dataset.n_users * dataset.n_items),
    }
    for column in COVERAGE_COLUMNS:
        if column in dataset.items.columns and dataset.n_items:
            row[f"{column}_pct"] = 100.0 * float((~missing_mask(dataset.items[column])).mean())
        else:
            row[f"{column}_pct"] = float("nan")
    return row


_DOWNLOADED_SOURCES = {**AMAZON_SOURCES, **MOVIELENS_SOURCES}


def statistics_table(names: list[str] | tuple[str, ...], cache_dir=None,
                     progress: bool = True) -> pd.DataFrame:
    """Load each dataset (fetching it if needed) and return one statistics row per name.

    Raises :class:`~famekit.errors.UnknownNameError` for a name :func:`famekit.datasets.load`
    does not know, before anything is downloaded.
    """
    known = dataset_names()
    for name in names:
        if name not in known:
            raise UnknownNameError("dataset", name, known)
    rows = {}
    for name in names:
        options = {"progress": progress} if name in _DOWNLOADED_SOURCES else {}
        rows[name] = dataset_statistics(load(name, cache_dir=cache_dir, **options))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "dataset"
    return table


def default_info_names(cache_dir=None) -> list[str]:
    """What ``info`` shows without names: the embedded default plus every downloaded source."""
    cached = [name for name in dataset_names() if name in _DOWNLOADED_SOURCES
              and is_downloaded(_DOWNLOADED_SOURCES[name], cache_dir)]
    return [DEFAULT_DATASET, *cached]


def format_table(table: pd.DataFrame) -> str:
    """A plain-text rendering: thousands separators, two decimals, '-' for no such column."""
    formatters = {}
    for column in table.columns:
        if column in ("users", "items", "interactions", "len_max"):
            formatters[column] = lambda v: f"{int(v):,}"
        elif column == "density_pct":
            formatters[column] = lambda v: f"{v:.3f}"
        else:
            formatters[column] = lambda v: f"{v:.2f}"
    return table.to_string(formatters=formatters, na_rep="-")


def add_info_arguments(info) -> None:
    """The options of ``info`` (shared with ``famekit data info``)."""
    info.add_argument("names", nargs="*", metavar="NAME",
                      help="datasets to show (default: synthetic + already downloaded ones)")
    info.add_argument("--cache-dir", metavar="DIR",
                      help="cache root (default $FAMEKIT_CACHE or ~/.cache/famekit)")
    info.add_argument("--csv", action="store_true", help="print CSV instead of a text table")
    info.add_argument("--no-progress", action="store_true", help="no download progress bars")
