"""Plain-file formats: the sequence file and the item-metadata TSV.

* Sequence file: one user per line, ``user_id item_id item_id ...`` (whitespace separated,
  1-based positive integers, chronological). Blank lines and Windows line ends are tolerated;
  anything else that is not a positive integer is an error naming the file and line.
* Item TSV: tab separated, UTF-8, a header row with an ``item_id`` column; every other column
  becomes metadata. Columns named ``categories``/``genres`` (or any column whose values use
  ``|``) listed in ``LIST_COLUMNS`` are split into Python lists.

These parsers are what :func:`famekit.datasets.load_files` uses for users' own data, and what
the real-data sources use after download, so every source gets the same validation.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from famekit.datasets.core import SeqDataset
from famekit.errors import DataFormatError

__all__ = ["LIST_COLUMNS", "MAX_ITEM_ID", "load_files", "read_items_tsv", "read_sequences"]

# Columns whose cells are "|"-separated lists.
LIST_COLUMNS = ("categories", "genres")
# Ids above this would make the embedding table absurd (and int32 overflow): reject them early.
MAX_ITEM_ID = 50_000_000
MAX_USER_ID = 2**63 - 1  # user ids are labels (int64), not table rows


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw:
        raise DataFormatError(
            path, None, "the file contains NUL bytes (binary, not text)",
            "pass a plain-text file (UTF-8)",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(
            path, line, f"not valid UTF-8 (byte {raw[e.start]:#04x})",
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def _read_text(path: Path) -> str:
    """The file's text, or a DataFormatError saying why it cannot be read or decoded."""
    try:
        if path.exists() and not path.is_file():  # /dev/zero or a FIFO would be read forever
            raise DataFormatError(path, None, "cannot read it: not a regular file (a folder, "
                                  "device or pipe)",
                                  "pass the path of a text file")
        raw = path.read_bytes()
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read the file ({e.strerror})",
                              "check the path and its permissions") from None
    return _decode(path, raw)


def read_sequences(path: str | os.PathLike) -> tuple[np.ndarray, list[np.ndarray]]:
    """Parse a sequence file into (user ids int64 [U], per-user item arrays).

    Raises :class:`DataFormatError` naming the line for a non-integer token, an id <= 0, an id
    above ``MAX_ITEM_ID``, a user line with no items, a repeated user id, or an empty file.
    """
    path = Path(path)
    text = _read_text(path)
    users: list[int] = []
    sequences: list[np.ndarray] = []
    seen: dict[int, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [int(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_int(t))
            raise DataFormatError(
                path, lineno, f"{bad[:40]!r} is not an integer id",
                "each line must be 'user_id item_id item_id ...' with whole numbers",
            ) from None
        low = min(values)
        if low <= 0:
            raise DataFormatError(
                path, lineno, f"id {low} is not positive (0 is reserved for padding)",
                "renumber users and items from 1",
            )
        if len(values) > 1 and max(values[1:]) > MAX_ITEM_ID:
            raise DataFormatError(
                path, lineno, f"item id {max(values[1:])} exceeds the limit {MAX_ITEM_ID}",
                "renumber items densely from 1 (ids index an embedding table)",
            )
        if values[0] > MAX_USER_ID:  # users are only labels, kept as int64
            raise DataFormatError(
                path, lineno, f"user id {values[0]} exceeds the limit {MAX_USER_ID}",
                "renumber users (any positive 64-bit integer is accepted)",
            )
        if len(values) < 2:
            raise DataFormatError(
                path, lineno, f"user {values[0]} has no items",
                "drop the line or add the user's items after the user id",
            )
        user = values[0]
        if user in seen:
            raise DataFormatError(
                path, lineno, f"user {user} already appeared on line {seen[user]}",
                "put each user's whole sequence on one line",
            )
        seen[user] = lineno
        users.append(user)
        sequences.append(np.asarray(values[1:], dtype=np.int32))
    if not sequences:
        raise DataFormatError(path, None, "the file has no sequences",
                              "pass a file with lines 'user_id item_id item_id ...'")
    return np.asarray(users, dtype=np.int64), sequences


def _is_int(token: str) -> bool:
    try:
        int(token)
        return True
    except ValueError:
        return False


def read_items_tsv(
    path: str | os.PathLike, n_items: int | None = None, list_columns=LIST_COLUMNS
) -> pd.DataFrame:
    """Parse an item-metadata TSV keyed by ``item_id`` into a DataFrame indexed by item id.

    With ``n_items`` given, the frame is reindexed to 1..n_items (items without a row get
    missing values) and rows naming an id outside 1..n_items are an error.
    """
    path = Path(path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        rows = list(reader)
    except csv.Error as e:  # e.g. a field over csv.field_size_limit() (128 KiB)
        raise DataFormatError(path, reader.line_num, f"unreadable row ({e})",
                              "keep each field short and on one line (tab-separated)") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataFormatError(path, 1, "the file is empty",
                              "add a header row with an 'item_id' column")
    header = [h.strip() for h in rows[0]]
    if "item_id" not in header:
        raise DataFormatError(
            path, 1, f"no 'item_id' column in the header {header[:8]}",
            "name the column holding the item ids 'item_id' (tab-separated header)",
        )
    if len(set(header)) != len(header):
        raise DataFormatError(path, 1, "the header repeats a column name",
                              "give every column a unique name")
    key = header.index("item_id")
    ids, records = [], []
    seen: dict[int, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataFormatError(
                path, lineno, f"{len(row)} fields, the header has {len(header)}",
                "use exactly one tab between fields and no tabs inside values",
            )
        token = row[key].strip()
        try:
            item = int(token)
        except ValueError:
            raise DataFormatError(path, lineno, f"item_id {token[:40]!r} is not an integer",
                                  "item ids are whole numbers from 1") from None
        if item <= 0 or (n_items is not None and item > n_items):
            upper = f"..{n_items}" if n_items is not None else ""
            raise DataFormatError(
                path, lineno, f"item_id {item} is not an item of the sequences (1{upper})",
                "remove the row or fix the id so it matches the sequence file",
            )
        if item in seen:
            raise DataFormatError(path, lineno, f"item_id {item} repeats line {seen[item]}",
                                  "keep one row per item")
        seen[item] = lineno
        ids.append(item)
        records.append(row)
    frame = pd.DataFrame(records, columns=header).drop(columns="item_id")
    frame.index = pd.Index(ids, name="item_id")
    for col in frame.columns:
        frame[col] = frame[col].str.strip()
        if col in list_columns:
            frame[col] = frame[col].map(lambda v: [p for p in v.split("|") if p] if v else [])
        else:
            frame[col] = frame[col].replace("", np.nan)
    if n_items is not None:
        frame = frame.reindex(pd.RangeIndex(1, n_items + 1, name="item_id"))
        for col in list_columns:
            if col in frame.columns:
                frame[col] = frame[col].map(lambda v: v if isinstance(v, list) else [])
    return frame.sort_index()


def load_files(
    sequences_path: str | os.PathLike, items_path: str | os.PathLike | None = None,
    name: str = "files",
) -> SeqDataset:
    """Load users' own data: a sequence file and, optionally, an item-metadata TSV.

    The number of items is the largest item id of the sequence file; an item row naming an id
    outside 1..n_items is an error (metadata for items nobody interacted with cannot be
    learned and usually means the two files use different id spaces).
    """
    users, sequences = read_sequences(sequences_path)
    n_items = max(int(s.max()) for s in sequences)
    items = read_items_tsv(items_path, n_items=n_items) if items_path is not None else None
    info = {"sequences_path": str(sequences_path),
            "items_path": str(items_path) if items_path else None}
    return SeqDataset.from_sequences(name, sequences, n_items, items, users, info=info)
