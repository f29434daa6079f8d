"""Users' own files: the sequence format, the item TSV, and every malformed-input error."""

import numpy as np
import pytest

from famekit.datasets import SeqDataset, load_files, read_items_tsv, read_sequences
from famekit.errors import DataFormatError


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def test_round_trip_with_metadata(tmp_path):
    seqs = write(tmp_path, "s.txt", "1 1 2 3 4\r\n\n2 3 4 5\n3 5 1 2\n")
    items = write(
        tmp_path, "i.tsv",
        "item_id\ttitle\tgenres\n1\tOne\tA|B\n3\tThree\t\n5\tFive\tC\n",
    )
    ds = load_files(seqs, items)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 5, 10)
    assert ds.user_ids.tolist() == [1, 2, 3]
    assert ds.sequence(1).tolist() == [3, 4, 5]
    assert ds.items.loc[1, "genres"] == ["A", "B"] and ds.items.loc[3, "genres"] == []
    assert ds.items.loc[2, "genres"] == []  # item without a row: empty list
    assert ds.items.loc[5, "title"] == "Five" and ds.items["title"].isna().sum() == 2


@pytest.mark.parametrize(
    "content, line, words",
    [
        ("1 1 2\n2 3 x\n", 2, "'x' is not an integer"),
        ("1 1 2\n2 0 3\n", 2, "not positive"),
        ("1 1 2\n2 -4 3\n", 2, "not positive"),
        ("1 1 2\n2\n", 2, "has no items"),
        ("1 1 2\n1 3 4\n", 2, "already appeared on line 1"),
        ("1 1 99999999999\n", 1, "exceeds the limit"),
        ("1 1 2.5\n", 1, "not an integer"),
    ],
)
def test_malformed_sequence_lines_name_file_line_and_fix(tmp_path, content, line, words):
    path = write(tmp_path, "seq.txt", content)
    with pytest.raises(DataFormatError) as err:
        read_sequences(path)
    msg = str(err.value)
    assert str(path) in msg and f"line {line}" in msg and words in msg and "Fix:" in msg
    assert err.value.line == line


@pytest.mark.parametrize(
    "content, words",
    [(b"", "no sequences"), (b"\n\n  \n", "no sequences"), (b"\x00\x01\x02junk", "NUL bytes"),
     (b"1 2 3\n2 \xff\xfe 4\n", "not valid UTF-8")],
)
def test_empty_or_binary_sequence_files(tmp_path, content, words):
    path = write(tmp_path, "seq.txt", content)
    with pytest.raises(DataFormatError, match=words):
        read_sequences(path)


def test_missing_file_is_a_format_error_naming_the_path(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read"):
        read_sequences(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    "content, line, words",
    [
        ("title\n1\tx\n", 1, "no 'item_id' column"),
        ("item_id\ttitle\n1\tA\n2\n", 3, "1 fields, the header has 2"),
        ("item_id\ttitle\n1\tA\tB\n", 2, "3 fields"),
        ("item_id\ttitle\nabc\tA\n", 2, "is not an integer"),
        ("item_id\ttitle\n1\tA\n1\tB\n", 3, "repeats line 2"),
        ("item_id\ttitle\n9\tA\n", 2, "not an item of the sequences"),
        ("item_id\ttitle\ttitle\n1\tA\tB\n", 1, "repeats a column"),
    ],
)
def test_malformed_item_rows(tmp_path, content, line, words):
    path = write(tmp_path, "items.tsv", content)
    with pytest.raises(DataFormatError) as err:
        read_items_tsv(path, n_items=5)
    msg = str(err.value)
    assert f"line {line}" in msg and words in msg and "Fix:" in msg


def test_items_naming_unknown_items_are_rejected_by_load_files(tmp_path):
    seqs = write(tmp_path, "s.txt", "1 1 2 3\n")
    items = write(tmp_path, "i.tsv", "item_id\ttitle\n1\ta\n7\tb\n")
    with pytest.raises(DataFormatError, match=r"item_id 7 .*1\.\.3"):
        load_files(seqs, items)


def test_fingerprint_depends_on_order_and_content():
    a = SeqDataset.from_sequences("a", [[1, 2, 3], [2, 3, 1]])
    b = SeqDataset.from_sequences("b", [[1, 2, 3], [2, 1, 3]])
    c = SeqDataset.from_sequences("c", [np.array([1, 2, 3]), np.array([2, 3, 1])])
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint  # the name is not content


def test_short_users_are_trained_on_but_not_evaluated():
    ds = SeqDataset.from_sequences("x", [[1, 2], [1, 2, 3], [3, 2, 1, 4]])
    split = ds.split()
    assert split.eval_users.tolist() == [1, 2]
    assert split.train_sequence(0).tolist() == []
    assert split.train_sequence(2).tolist() == [3, 2]
    _, targets, _ = split.eval_inputs("valid")
    assert targets.tolist() == [2, 1]
