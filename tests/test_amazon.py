"""Amazon sources: the joins, rebuilt from downloaded files, against the shared reference tables.

Offline tests serve a miniature Beauty in the exact upstream formats through the mirror; the
``real_data`` tests fetch the real files from the mirror of the shared data folder and compare
every row of every column with ``items.tsv`` (run them with
``FAMEKIT_SHARED_DATA=../shared/data .venv/bin/pytest tests/test_amazon.py -q``).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from famekit import datasets
from famekit.datasets import amazon
from famekit.errors import DataFormatError


# ------------------------------------------------------------------ pure helpers
def test_align_counts_skips_extra_entries_on_both_sides():
    # S3: [5, 9(root, no P5 twin), 3, 7 (also a root: S3 count above P5's 4), 2]
    # P5: [5, 3, 6 (dropped by S3), 4, 2]
    assert amazon.align_counts([5, 9, 3, 7, 2], [5, 3, 6, 4, 2]) == [0, None, 1, 3, 4]
    assert amazon.align_counts([2, 2, 2], [2, 2, 2]) == [0, 1, 2]
    # An S3 count below the P5 count never matches.
    assert amazon.align_counts([1], [4]) == [None]


def test_match_numberings_recovers_a_hidden_permutation():
    rng = np.random.default_rng(7)
    n_items = 60
    first = [rng.choice(np.arange(1, n_items + 1), size=rng.integers(5, 15), replace=False)
             for _ in range(80)]
    relabel = rng.permutation(n_items) + 1  # item i -> relabel[i - 1]
    second = [relabel[s - 1] for s in first]
    second = [second[k] for k in rng.permutation(len(second))]  # users in another order too
    mapping = amazon.match_numberings(first, second)
    assert mapping is not None
    used = {int(i) for s in first for i in s}
    assert mapping == {i: int(relabel[i - 1]) for i in used}
    # Different data: no bijection is claimed.
    altered = [s.copy() for s in second]
    altered[0][0], altered[0][1] = altered[0][1], altered[0][0]
    assert amazon.match_numberings(first, altered) is None


# ------------------------------------------------------------------ a miniature Beauty, offline
MINI_SEQUENCES = "1 1 2 3\n2 2 3 4\n3 4 1\n"
MINI_ITEM2ATTRIBUTES = {"1": [3, 1, 2], "2": [3, 1, 2], "3": [6, 4, 5], "4": [6, 4, 4, 5]}
# P5 vocabulary in first-appearance order; count-1 strings are what S3-Rec's cut drops.
MINI_P5 = [("Rare Brand", 1), ("Makeup", 2), ("Nails", 2), ("OPI", 2), ("Skin Care", 3),
           ("Face", 2), ("Other Rare", 1), ("Crabtree &amp;  Evelyn", 2)]


def _mini_files(p5=MINI_P5) -> dict[str, bytes]:
    datamaps = {
        "id2item": {"1": "A1", "2": "A2", "3": "A3", "4": "A4"},
        "id2attribute": {str(k): name for k, (name, _) in enumerate(p5, start=1)},
        "attributeid2num": {str(k): count for k, (_, count) in enumerate(p5, start=1)},
    }
    lookup = ',global_product_id,name\n0,10,"OPI Nail Lacquer,  Simmer &amp; Shimmer"\n' \
             "1,11,OPI Red\n2,12,Crabtree Hand Cream\n3,13,\n"
    return {
        "Beauty.txt": MINI_SEQUENCES.encode(),
        "Beauty_item2attributes.json": json.dumps(MINI_ITEM2ATTRIBUTES).encode(),
        "datamaps.json": json.dumps(datamaps).encode(),
        "item_id_to_int.json": json.dumps({"A1": 10, "A2": 11, "A3": 12, "A4": 13}).encode(),
        "products_lookup.csv": lookup.encode(),
    }


@pytest.fixture
def mini_beauty(mirror_env, monkeypatch):
    """Serve the miniature files at Beauty's upstream URLs, with their hashes in the table."""

    def serve(files: dict[str, bytes]) -> None:
        remotes = []
        for remote in amazon.SOURCES["beauty"].files:
            data = files[remote.filename]
            mirror_env.add(remote.url, data)
            remotes.append(dataclasses.replace(
                remote, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        source = dataclasses.replace(amazon.SOURCES["beauty"], files=tuple(remotes))
        monkeypatch.setitem(amazon.SOURCES, "beauty", source)

    monkeypatch.setitem(amazon.EXPECTED_COUNTS, "beauty", (3, 4, 8))
    monkeypatch.setattr(amazon, "BEAUTY_MIN_COUNT", 2)
    return serve


def test_mini_beauty_join(mini_beauty, tmp_path):
    mini_beauty(_mini_files())
    ds = datasets.load("beauty", cache_dir=tmp_path, progress=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 8)
    assert ds.sequence(1).tolist() == [2, 3, 4]
    items = ds.items
    assert items.loc[1, "brand"] == "OPI"
    assert items.loc[1, "title"] == "OPI Nail Lacquer, Simmer & Shimmer"
    assert (items.loc[1, "top_category"], items.loc[1, "leaf_category"]) == ("Makeup", "Nails")
    assert items.loc[1, "categories"] == ["Makeup", "Nails"]
    # Item 4: a brand with an HTML entity, and two paths (Skin Care | Skin Care > Face).
    assert items.loc[4, "brand"] == "Crabtree & Evelyn"
    assert items.loc[4, "category_paths"] == "Skin Care | Skin Care > Face"
    assert items.loc[4, "leaf_category"] == "Skin Care"
    assert items.loc[4, "categories"] == ["Skin Care", "Face"]
    assert pd.isna(items.loc[4, "title"])
    assert items["asin"].tolist() == ["A1", "A2", "A3", "A4"]
    assert ds.info["licence"].startswith("Amazon product data")


def test_mini_beauty_with_misaligned_vocabulary_fails_and_caches_nothing(mini_beauty, tmp_path):
    p5 = list(MINI_P5)
    p5[2] = ("Nails", 3)  # counts no longer line up with item2attributes
    mini_beauty(_mini_files(p5))
    with pytest.raises(DataFormatError, match="datamaps.json") as err:
        datasets.load("beauty", cache_dir=tmp_path, progress=False)
    assert "Fix:" in str(err.value)
    assert not list(tmp_path.rglob("*.npz"))  # nothing cached from a failed build
    assert not list(tmp_path.rglob("*.part"))


def test_mini_beauty_wrong_interaction_count_is_rejected(mini_beauty, monkeypatch, tmp_path):
    mini_beauty(_mini_files())
    monkeypatch.setitem(amazon.EXPECTED_COUNTS, "beauty", (3, 4, 9))
    with pytest.raises(DataFormatError, match="Beauty.txt"):
        datasets.load("beauty", cache_dir=tmp_path, progress=False)


# ------------------------------------------------------------------ real data
def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _as_text(value, separator: str = " ") -> str:
    """A loaded cell in items.tsv's text form ('' = missing, lists joined)."""
    if isinstance(value, list):
        return separator.join(str(v) for v in value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _compare_columns(ds, reference: list[dict[str, str]], columns: dict[str, str]
                     ) -> dict[str, list]:
    """{our column: [(item_id, ours, theirs), ...]} for every row where they differ."""
    assert len(reference) == ds.n_items
    assert [int(r["item_id"]) for r in reference] == list(range(1, ds.n_items + 1))
    mismatches = {}
    for ours, theirs in columns.items():
        separator = "|" if ours == "categories" else " "
        values = ds.items[ours].tolist()
        mismatches[ours] = [(r["item_id"], _as_text(v, separator), r[theirs])
                            for v, r in zip(values, reference)
                            if _as_text(v, separator) != r[theirs]]
    return mismatches


def _sequence_lines(path: Path) -> list[list[int]]:
    return [[int(x) for x in line.split()] for line in path.read_text().splitlines() if line]


def _assert_sequences_equal(ds, path: Path) -> None:
    lines = _sequence_lines(path)
    assert ds.user_ids.tolist() == [line[0] for line in lines]
    assert all(ds.sequence(u).tolist() == line[1:] for u, line in enumerate(lines))


@pytest.mark.real_data
def test_beauty_equals_shared_items_tsv_every_row(shared_data, mirror_env):
    ds = datasets.load("beauty", progress=False)
    columns = ["asin", "title", "brand", "top_category", "leaf_category", "categories",
               "category_paths", "s3_attribute_ids"]
    mismatches = _compare_columns(ds, _tsv(shared_data / "beauty" / "items.tsv"),
                                  {c: c for c in columns})
    assert {c: m[:3] for c, m in mismatches.items() if m} == {}
    _assert_sequences_equal(ds, shared_data / "beauty" / "Beauty.txt")


@pytest.mark.real_data
def test_beauty_statistics_and_named_joins(shared_data, mirror_env):
    ds = datasets.load("beauty", progress=False)
    lengths = ds.lengths
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (22363, 12101, 198502)
    assert (round(lengths.mean(), 2), np.median(lengths), lengths.min(), lengths.max()) == \
        (8.88, 6, 5, 204)
    items = ds.items
    assert items["title"].notna().sum() == 12094
    assert items["brand"].notna().sum() == 7476
    assert items["brand"].nunique() == 436
    assert len({c for cats in items["categories"] for c in cats}) == 202
    assert items["top_category"].value_counts().to_dict() == {
        "Skin Care": 3814, "Hair Care": 3262, "Makeup": 2627, "Tools & Accessories": 1222,
        "Bath & Body": 684, "Fragrance": 492}
    assert items["brand"].value_counts().head(3).to_dict() == {
        "L'Oreal Paris": 291, "OPI": 203, "Maybelline": 191}
    first = items.loc[1]
    assert first["asin"] == "B004756YJA" and first["brand"] == "OPI"
    assert first["title"].startswith("OPI Nail Lacquer, Simmer and Shimmer")
    assert first["category_paths"] == "Makeup > Nails > Nail Polish"


@pytest.mark.real_data
def test_beauty_warm_load_reads_only_the_processed_cache(shared_data, mirror_env, tmp_path):
    cold = datasets.load("beauty", cache_dir=tmp_path, progress=False)
    requests = len(mirror_env.log)
    assert requests == len(amazon.SOURCES["beauty"].files)
    warm = datasets.load("beauty", cache_dir=tmp_path)
    assert len(mirror_env.log) == requests  # nothing fetched, nothing re-verified online
    assert warm.fingerprint == cold.fingerprint
    pd.testing.assert_frame_equal(warm.items, cold.items)
    assert len(list((tmp_path / "processed").glob("beauty-*.npz"))) == 1
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.real_data
def test_sports_equals_shared_items_tsv_every_row(shared_data, mirror_env):
    ds = datasets.load("sports", progress=False)
    columns = {c: c for c in ["asin", "brand", "top_category", "leaf_category", "categories",
                              "category_paths", "s3_attribute_ids"]}
    columns["text_id"] = "idgenrec_text_id"
    mismatches = _compare_columns(ds, _tsv(shared_data / "sports" / "items.tsv"), columns)
    # Every row of every column agrees (the 11 inferred names included).
    assert {c: m[:3] for c, m in mismatches.items() if m} == {}
    _assert_sequences_equal(ds, shared_data / "sports" / "Sports_and_Outdoors.txt")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (35598, 18357, 296337)
    items = ds.items
    assert items["brand"].notna().sum() == 11040 and items["brand"].nunique() == 1173
    assert len({c for cats in items["categories"] for c in cats if c}) == 1122
    # 18 distinct values (the provenance's count), the bare root on 245 items among them.
    assert items["top_category"].nunique() == 18
    assert items["top_category"].value_counts().head(4).to_dict() == {
        "Hunting & Fishing": 7137, "Outdoor Gear": 3061, "Cycling": 2612,
        "Exercise & Fitness": 1096}
    assert (items["top_category"] == "Sports & Outdoors").sum() == 245
    assert "title" not in items.columns  # text_id is not a title, and not named like one


@pytest.mark.real_data
def test_toys_ids_and_anonymised_attributes(shared_data, mirror_env):
    ds = datasets.load("toys", progress=False)
    reference = _tsv(shared_data / "toys" / "items.tsv")
    mismatches = _compare_columns(ds, reference, {
        "asin": "asin", "text_id": "idgenrec_text_id", "p5_item_id": "p5_item_id",
        "s3_attribute_ids": "s3_attribute_ids"})
    assert {c: m[:3] for c, m in mismatches.items() if m} == {}
    expected_brand = [f"brand#{r['brand_attr_id']}" if r["brand_attr_id"] else ""
                      for r in reference]
    assert [_as_text(b) for b in ds.items["brand"]] == expected_brand
    expected_categories = [
        list(dict.fromkeys(f"cat#{a}" for a in r["category_attr_ids"].split() if a != "2"))
        for r in reference]
    assert ds.items["categories"].tolist() == expected_categories
    _assert_sequences_equal(ds, shared_data / "toys" / "Toys_and_Games.txt")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (19412, 11924, 167597)
    assert ds.items["brand"].notna().sum() == 9549
    assert "anonymised" in ds.info["metadata"].lower()
    counts = collections.Counter(ds.items["top_category"].dropna())
    assert counts.most_common(1)[0][1] > 0 and all(k.startswith("cat#") for k in counts)


# ------------------------------------------------------------------ statistics table and CLI
def test_statistics_table_and_info_command(mini_beauty, tmp_path, capsys):
    from famekit.datasets.__main__ import main
    from famekit.datasets.stats import default_info_names, statistics_table

    mini_beauty(_mini_files())
    cache = tmp_path / "cache"
    assert default_info_names(cache) == ["synthetic"]  # nothing downloaded yet
    table = statistics_table(["beauty"], cache_dir=cache, progress=False)
    row = table.loc["beauty"]
    assert (row["users"], row["items"], row["interactions"], row["len_max"]) == (3, 4, 8, 3)
    assert row["density_pct"] == pytest.approx(100 * 8 / 12)
    assert row["title_pct"] == pytest.approx(75.0)  # item 4 has an empty title
    assert row["brand_pct"] == pytest.approx(100.0)
    assert np.isnan(row["genres_pct"])  # no such column, which is not 0 %
    assert default_info_names(cache) == ["synthetic", "beauty"]

    assert main(["info", "beauty", "--cache-dir", str(cache), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["users", "items", "interactions", "len_mean"]
    assert "beauty" in out and "75.00" in out
    assert main(["info", "beauty", "--cache-dir", str(cache), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("dataset,users,items,interactions")
    assert main(["info", "beuty"]) == 2
    assert "unknown dataset 'beuty'" in capsys.readouterr().err


@pytest.mark.real_data
def test_statistics_table_matches_provenance(shared_data, mirror_env):
    from famekit.datasets.stats import statistics_table

    table = statistics_table(["beauty", "sports", "toys", "ml-100k"], progress=False)
    assert table["users"].tolist() == [22363, 35598, 19412, 943]
    assert table["items"].tolist() == [12101, 18357, 11924, 1682]
    assert table["interactions"].tolist() == [198502, 296337, 167597, 100000]
    assert table["density_pct"].round(3).tolist() == [0.073, 0.045, 0.072, 6.305]
    assert table.loc["beauty", "title_pct"] == pytest.approx(100 * 12094 / 12101)
    assert table.loc["ml-100k", "year_pct"] == pytest.approx(100 * 1680 / 1682)
    assert np.isnan(table.loc["sports", "title_pct"])  # text_id is not a title
