"""The one rule for missing metadata values, and the places that must follow it."""

import numpy as np
import pandas as pd
import pytest

from famekit.analysis.metadata import item_labels, label_fields
from famekit.datasets import SeqDataset
from famekit.datasets.missing import is_missing_label, missing_mask
from famekit.datasets.stats import dataset_statistics
from famekit.figures.checks import item_hover, item_label

MISSING = [None, float("nan"), np.float32("nan"), pd.NA, pd.NaT, "", [], (), np.array([])]
VALUES = [0, 0.0, False, "x", "Unknown", [1], ("a",), np.array([1, 2]), {}]


@pytest.mark.parametrize("value", MISSING, ids=repr)
def test_missing_values(value):
    assert is_missing_label(value) and is_missing_label(value, placeholders=True)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_are_not_missing(value):
    assert not is_missing_label(value)


def test_placeholder_words_are_missing_only_when_asked():
    for word in ("Unknown", "unknown", "nan"):
        assert not is_missing_label(word) and is_missing_label(word, placeholders=True)


@pytest.mark.parametrize("series", [
    pd.Series(["a", "", None, "Unknown"], dtype=object),
    pd.Series(["a", "", None, "Unknown"], dtype="string"),
    pd.Series([[], ["a"], None, np.nan], dtype=object),
    pd.Series([1.0, np.nan, 0.0, 2.0]),
    pd.Series([1, None, 0, 3], dtype="Int64"),
    pd.Series([], dtype=object),
])
def test_the_mask_is_the_rule_element_by_element(series):
    for placeholders in (False, True):
        expected = [is_missing_label(v, placeholders=placeholders) for v in series]
        mask = missing_mask(series, placeholders=placeholders)
        assert mask.dtype == bool and mask.tolist() == expected


def _shop() -> SeqDataset:
    items = pd.DataFrame({"brand": ["A", "", None, "Unknown", np.nan, "B"],
                          "categories": [["x"], [], ["y"], None, ["x"], ["y"]]},
                         index=pd.RangeIndex(1, 7, name="item_id"))
    return SeqDataset.from_sequences("shop", [[1, 2, 3], [4, 5, 6]], n_items=6, items=items)


def test_statistics_coverage_and_views_count_the_same_items():
    ds = _shop()
    # "", None and NaN are missing everywhere; "Unknown" is a value in counts and views
    assert ds.statistics()["with_brand"] == 3 and ds.statistics()["with_categories"] == 4
    row = dataset_statistics(ds)
    assert row["brand_pct"] == pytest.approx(50.0) and row["categories_pct"] == pytest.approx(
        100 * 4 / 6)
    hovers = item_hover(ds.items, range(1, 7), fields=("brand",))
    assert [h.count("brand:") for h in hovers] == [1, 0, 0, 1, 0, 1]
    assert [item_label(ds.items, i, "brand") for i in (2, 4)] == ["item 2", "Unknown"]


def test_analysis_labels_also_drop_placeholder_words():
    ds = _shop()
    assert list(item_labels(ds, "brand")) == [None, "A", None, None, None, None, "B"]
    assert label_fields(ds) == ["brand", "top_category"]  # top_category: first of categories
